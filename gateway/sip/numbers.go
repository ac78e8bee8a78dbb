package sip

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/routing"
)

// uriNumber extracts the number part of a sip:, sips: or tel: URI as
// written in a header (name-addr or addr-spec), dropping display name,
// parameters and URI headers.
func uriNumber(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	} else if j := strings.IndexByte(v, ';'); j >= 0 && !strings.HasPrefix(strings.ToLower(v), "tel:") {
		v = v[:j]
	}
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '?'); i >= 0 {
		v = v[:i]
	}
	l := strings.ToLower(v)
	switch {
	case strings.HasPrefix(l, "tel:"):
		v = v[4:]
		if i := strings.IndexByte(v, ';'); i >= 0 {
			v = v[:i]
		}
		return v
	case strings.HasPrefix(l, "sip:"):
		v = v[4:]
	case strings.HasPrefix(l, "sips:"):
		v = v[5:]
	default:
		return ""
	}
	at := strings.IndexByte(v, '@')
	if at < 0 {
		return ""
	}
	v = v[:at]
	if i := strings.IndexByte(v, ';'); i >= 0 { // user parameters (;isub=, ;npdi)
		v = v[:i]
	}
	if i := strings.IndexByte(v, ':'); i >= 0 { // user:password
		v = v[:i]
	}
	return v
}

// splitHeaderValues splits a comma-joined header value, ignoring commas
// inside <...> and quotes.
func splitHeaderValues(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"' && (i == 0 || v[i-1] != '\\'):
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			if depth > 0 {
				depth--
			}
		case c == ',' && depth == 0:
			if s := strings.TrimSpace(v[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// headerNumbers appends to dst the number part (uriNumber) of every
// value of the named header, in message order.
func headerNumbers(dst []string, req *sip.Request, name string) []string {
	for _, h := range req.GetHeaders(name) {
		for _, v := range splitHeaderValues(h.Value()) {
			if n := uriNumber(v); n != "" {
				dst = append(dst, n)
			}
		}
	}
	return dst
}

// callOf is what the SIP edge knows about an INVITE, for routing.Decide:
// the called number from the Request-URI (sip user or tel:), else To;
// the forwarding chain from Diversion (RFC 5806, topmost = newest) and
// History-Info (RFC 7044, index order).
func callOf(req *sip.Request, trunk *Trunk) routing.Call {
	c := routing.Call{Source: "sip", Direction: "inbound"}
	if trunk != nil {
		c.Country, c.Carrier, c.Trunk = trunk.Country, trunk.Carrier, trunk.Name
	}
	if strings.EqualFold(req.Recipient.Scheme, "tel") {
		c.Called = req.Recipient.Raw()
		if i := strings.IndexByte(c.Called, ';'); i >= 0 {
			c.Called = c.Called[:i]
		}
	} else {
		c.Called = req.Recipient.User
	}
	if to := req.To(); to != nil {
		c.To = to.Address.User
		if strings.EqualFold(to.Address.Scheme, "tel") {
			c.To = uriNumber("tel:" + to.Address.Raw())
		}
	}
	if from := req.From(); from != nil {
		c.Calling = from.Address.User
	}
	if headerNamed(req.Headers(), "diversion") != nil {
		c.Diversion = headerNumbers(nil, req, "diversion")
	}
	if headerNamed(req.Headers(), "history-info") != nil {
		c.History = headerNumbers(nil, req, "history-info")
	}
	return c
}
