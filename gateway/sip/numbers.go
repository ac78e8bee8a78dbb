package sip

import (
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/nyaruka/phonenumbers"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// callInfo is what routing learnt about an INVITE.
type callInfo struct {
	called         string // E.164 of the Request-URI/To (what the carrier delivered)
	route          *routing.Route
	origin         string
	forwardedFrom  string // registered business line the call came through
	originalCalled string // first number the caller dialled (Diversion/History-Info)
}

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

// headerValues returns every value of the named header, comma-joined
// values split, in message order.
func headerValues(req *sip.Request, name string) []string {
	var out []string
	for _, h := range req.GetHeaders(name) {
		out = append(out, splitHeaderValues(h.Value())...)
	}
	return out
}

// normalize turns a number as found in a header into E.164.
func normalize(n, country string) (string, bool) {
	if n == "" {
		return "", false
	}
	if n[0] == '+' {
		if _, ok := routing.Key(n); ok {
			return n, true
		}
	}
	e, err := phone.Normalize(n, country)
	return e, err == nil
}

// lookup finds a number's route, fast path first (a "+digits" user is
// looked up without parsing or allocating).
func lookup(snap *routing.Snapshot, n, country string) (string, *routing.Route, bool) {
	if len(n) > 1 && n[0] == '+' {
		if k, ok := routing.Key(n); ok {
			r, ok := snap.LookupKey(k)
			if ok {
				return n, r, true
			}
			return n, nil, false
		}
	}
	if k, ok := nanpKey(n, country); ok {
		// a NANP number in digits only: a hit in the snapshot (valid
		// numbers only) is what phone.Normalize would return; a miss
		// falls through to full normalisation
		if r, ok := snap.LookupKey(k); ok {
			return r.Number.E164, r, true
		}
	}
	e, ok := normalize(n, country)
	if !ok {
		return "", nil, false
	}
	r, ok := snap.Lookup(e)
	return e, r, ok
}

// nanpKey is the routing key of a called number written in digits only,
// "1NXXNXXXXXX" or national "NXXNXXXXXX", on a trunk whose country is in
// the North American Numbering Plan (calling code 1, fixed ten-digit
// national numbers, so the reading is unambiguous). It does not allocate.
func nanpKey(n, country string) (uint64, bool) {
	switch {
	case len(n) == 11 && n[0] == '1' && n[1] >= '2' && n[1] <= '9':
	case len(n) == 10 && n[0] >= '2' && n[0] <= '9':
	default:
		return 0, false
	}
	if !nanpCountry(country) {
		return 0, false
	}
	k, ok := routing.Key(n)
	if !ok {
		return 0, false
	}
	if len(n) == 10 {
		k += 1e10
	}
	return k, true
}

// nanpCountry: the country's calling code is 1 (US, CA, PR, most of the
// Caribbean).
func nanpCountry(c string) bool {
	if len(c) != 2 {
		return false
	}
	if c == "US" || c == "us" || c == "CA" || c == "ca" {
		return true
	}
	return phonenumbers.GetCountryCodeForRegion(strings.ToUpper(c)) == 1
}

// resolve finds the route of an INVITE: the called number from the
// Request-URI (sip user or tel:), else To; forwarding attribution from
// Diversion (RFC 5806, topmost = newest) and History-Info (RFC 7044,
// last = newest).
func resolve(req *sip.Request, snap *routing.Snapshot, country string) (callInfo, bool) {
	var ci callInfo
	called := ""
	if strings.EqualFold(req.Recipient.Scheme, "tel") {
		called = req.Recipient.Raw()
		if i := strings.IndexByte(called, ';'); i >= 0 {
			called = called[:i]
		}
	} else {
		called = req.Recipient.User
	}
	e, r, ok := lookup(snap, called, country)
	if !ok && req.To() != nil {
		toUser := req.To().Address.User
		if strings.EqualFold(req.To().Address.Scheme, "tel") {
			toUser = uriNumber("tel:" + req.To().Address.Raw())
		}
		if toUser != "" && toUser != called {
			if e2, r2, ok2 := lookup(snap, toUser, country); ok2 || e == "" {
				e, r, ok = e2, r2, ok2
			}
		}
	}
	ci.called = e

	// Diversion: every header, every comma-joined value, topmost first.
	var hist []string // newest first
	for _, v := range headerValues(req, "diversion") {
		if n, ok := normalize(uriNumber(v), country); ok {
			hist = append(hist, n)
		}
	}
	if len(hist) > 0 {
		ci.originalCalled = hist[len(hist)-1]
	}
	// History-Info: entries in index order; the first is the original
	// target, the last the current one.
	hi := headerValues(req, "history-info")
	var hiNums []string
	for _, v := range hi {
		if n, ok := normalize(uriNumber(v), country); ok {
			hiNums = append(hiNums, n)
		}
	}
	if ci.originalCalled == "" && len(hiNums) > 0 && hiNums[0] != e {
		ci.originalCalled = hiNums[0]
	}
	for i := len(hiNums) - 1; i >= 0; i-- {
		hist = append(hist, hiNums[i])
	}

	// The called number itself may be a registered business line (a
	// carrier that keeps the original Request-URI).
	if !ok && e != "" {
		if f, fok := snap.ForwardFrom(e); fok {
			if r2, ok2 := snap.Lookup(f.GatewayNumber); ok2 {
				r, ok = r2, true
				ci.forwardedFrom = e
				if ci.originalCalled == "" {
					ci.originalCalled = e
				}
			}
		}
	}
	for _, n := range hist {
		if ci.forwardedFrom != "" {
			break
		}
		if ok && n == r.Number.E164 {
			continue
		}
		f, fok := snap.ForwardFrom(n)
		if !fok {
			continue
		}
		if ok && f.GatewayNumber == r.Number.E164 {
			ci.forwardedFrom = n
		} else if !ok {
			if r2, ok2 := snap.Lookup(f.GatewayNumber); ok2 {
				r, ok = r2, true
				ci.forwardedFrom = n
			}
		}
	}
	if !ok {
		return ci, false
	}
	ci.route = r
	ci.origin = r.Number.Origin
	if ci.forwardedFrom != "" {
		ci.origin = routing.OriginForwarded
		if ci.originalCalled == "" {
			ci.originalCalled = ci.forwardedFrom
		}
	}
	return ci, true
}
