package sip

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/routing"
)

// The header policy (issue 18 "Headers"): between the caller and the
// agent pass the standard SIP headers the dialog needs (RFC 3261 and its
// extensions, standardHeaders) and the custom headers the workspace's
// sip_headers allow-list names (routing.SIPHeaders; default X-* and
// User-to-User). Every other header is removed when callgate forwards a
// message toward the other side: the INVITE, its provisional and final
// responses, and every in-dialog request (BYE, REFER, re-INVITE, UPDATE,
// INFO, ...) and response. Custom values over maxCustomValue bytes, and
// custom headers past maxCustomTotal bytes in one message, are removed
// too. Every removal is counted in headers_dropped_total{reason}.
//
// A message of a dialog this node has no record of (another node routed
// it, or it restarted) and an early-dialog request (PRACK, UPDATE before
// the answer) follow the default allow-list.
//
// The routing hook's headers (gateway/hook) are held to the same
// allow-list and limits. The custom headers the workspace marks to keep
// (sip_headers.keep) are on the call's started event (from the caller's
// INVITE) and its ended event (also the hook's, the answer's, a REFER's
// and the BYE's), and so in call history.

// Limits of custom headers.
const (
	maxCustomValue = 1024 // bytes of one value
	maxCustomTotal = 4096 // bytes (names and values) of one message's custom headers
	maxKept        = 32   // header names a call keeps for history
)

// standardHeaders are the headers (lower case, compact forms too) that the
// policy never removes: RFC 3261, 3262 (RSeq, RAck), 3311, 3323
// (Privacy), 3325 (P-Asserted/Preferred-Identity), 3326 (Reason), 3265/6665
// (events), 3327 (Path), 3329, 3515/3892/4488 (REFER), 3608, 3841, 3891,
// 3903, 3911, 4028 (Session-Expires, Min-SE), 4412, 4538, 4474/8224
// (Identity), 5009, 5373, 5626, 5806 (Diversion), 6086, 6442, 7044
// (History-Info), 7989 (Session-ID) and the 3GPP P- headers of RFC 7315,
// plus Remote-Party-ID (carriers' caller ID before RFC 3325).
// User-to-User (RFC 7433) is a custom header here: the allow-list decides.
var standardHeaders = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, n := range []string{
		// RFC 3261
		"accept", "accept-encoding", "accept-language", "alert-info", "allow", "authentication-info",
		"authorization", "call-id", "call-info", "contact", "content-disposition", "content-encoding",
		"content-language", "content-length", "content-type", "cseq", "date", "error-info", "expires",
		"from", "in-reply-to", "max-forwards", "mime-version", "min-expires", "organization", "priority",
		"proxy-authenticate", "proxy-authorization", "proxy-require", "record-route", "reply-to", "require",
		"retry-after", "route", "server", "subject", "supported", "timestamp", "to", "unsupported",
		"user-agent", "via", "warning", "www-authenticate",
		"i", "m", "e", "l", "c", "f", "s", "k", "t", "v",
		// extensions
		"rseq", "rack", "session-expires", "x", "min-se", "refer-to", "r", "referred-by", "b", "refer-sub",
		"reason", "p-asserted-identity", "p-preferred-identity", "privacy", "remote-party-id",
		"event", "o", "allow-events", "u", "subscription-state", "path", "service-route",
		"security-client", "security-server", "security-verify", "accept-contact", "a", "reject-contact", "j",
		"request-disposition", "d", "replaces", "join", "sip-etag", "sip-if-match", "target-dialog",
		"identity", "y", "identity-info", "n", "resource-priority", "accept-resource-priority",
		"p-early-media", "answer-mode", "priv-answer-mode", "flow-timer", "diversion", "history-info",
		"recv-info", "info-package", "geolocation", "geolocation-routing", "geolocation-error",
		"session-id", "p-access-network-info", "p-charging-vector", "p-charging-function-addresses",
		"p-called-party-id", "p-visited-network-id", "p-associated-uri", "p-served-user",
		"p-media-authorization", "p-charge-info", "feature-caps", "max-breadth", "suppress-if-match",
		"policy-id", "policy-contact", "encryption", "hide", "response-key",
		"content-id", "p-preferred-service", "p-asserted-service", "trigger-consent", "permission-missing",
		"p-refused-uri-list", "p-profile-key", "p-user-database", "p-answer-state",
	} {
		m[n] = struct{}{}
	}
	return m
}()

// isStandardHeader reports whether name is a standard header (any case).
func isStandardHeader(name string) bool {
	var b [32]byte
	if len(name) > len(b) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	_, ok := standardHeaders[string(b[:len(name)])] // no allocation: map lookup of a converted []byte
	return ok
}

var defaultHeaderPolicy = &routing.SIPHeaders{}

// headerMsg is a request or a response.
type headerMsg interface {
	Headers() []sip.Header
	RemoveHeader(name string) bool
	AppendHeader(h sip.Header)
}

// headerPolicy is the call's sip_headers (the default for nil or a call
// whose workspace is unknown).
func (c *call) headerPolicy() *routing.SIPHeaders {
	if c == nil {
		return defaultHeaderPolicy
	}
	if p := c.hp.Load(); p != nil {
		return p
	}
	return defaultHeaderPolicy
}

// customVerdict is why a custom header is removed ("" when it passes);
// total is the custom bytes the message kept so far.
func customVerdict(pol *routing.SIPHeaders, name, value string, total int) string {
	switch {
	case !pol.Allowed(name):
		return "not_allowed"
	case len(value) > maxCustomValue:
		return "too_long"
	case total+len(name)+len(value) > maxCustomTotal:
		return "over_total"
	}
	return ""
}

// filterHeaders removes from m the headers the policy does not let pass
// (counted by reason) and returns the custom bytes kept. Messages with
// no custom header cost one pass and no allocation.
func (s *Server) filterHeaders(m headerMsg, pol *routing.SIPHeaders) int {
	total, dirty := 0, false
	for _, h := range m.Headers() {
		name := h.Name()
		if isStandardHeader(name) {
			continue
		}
		v := h.Value()
		if why := customVerdict(pol, name, v, total); why != "" {
			s.xm.HeadersDropped.WithLabelValues(why).Inc()
			dirty = true
			continue
		}
		total += len(name) + len(v)
	}
	if !dirty {
		return total
	}
	// Rebuild: remove every custom header, append back those that pass
	// (in their order; the order of different names carries no meaning).
	var keep []sip.Header
	var names []string
	total = 0
	for _, h := range m.Headers() {
		name := h.Name()
		if isStandardHeader(name) {
			continue
		}
		names = append(names, name)
		v := h.Value()
		if customVerdict(pol, name, v, total) == "" {
			total += len(name) + len(v)
			keep = append(keep, h)
		}
	}
	for _, n := range names {
		for m.RemoveHeader(n) {
		}
	}
	for _, h := range keep {
		m.AppendHeader(h)
	}
	return total
}

// policeHeaders applies the call's policy (c nil: the default) to a
// message forwarded inside a dialog or to a response to the INVITE, and
// keeps for history the kept headers of a BYE or a 2xx to the INVITE.
// c.mu not held.
func (s *Server) policeHeaders(m headerMsg, c *call) {
	s.filterHeaders(m, c.headerPolicy())
	if c == nil {
		return
	}
	keep := false
	switch x := m.(type) {
	case *sip.Request:
		keep = x.Method == sip.BYE || x.Method == sip.REFER
	case *sip.Response:
		if cs := x.CSeq(); cs != nil {
			keep = cs.MethodName == sip.INVITE && x.StatusCode >= 200 && x.StatusCode < 300
		}
	}
	if keep && len(c.headerPolicy().Keep) > 0 {
		c.mu.Lock()
		c.keepHeaders(m.Headers())
		c.mu.Unlock()
	}
}

// policeUp applies the call's policy to a response to the INVITE sent
// to the caller, and keeps a 2xx's kept headers. c.mu held.
func (c *call) policeUp(res *sip.Response) {
	c.s.filterHeaders(res, c.headerPolicy())
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		c.keepHeaders(res.Headers())
	}
}

// admitHeaders sets the call's policy from its workspace, keeps the
// INVITE's headers the workspace keeps and removes from the INVITE what
// may not pass. Run once, when the call starts (publish of started).
// c.mu held or the call not yet visible.
func (c *call) admitHeaders() {
	if c.hp.Load() != nil || c.inv == nil {
		return
	}
	pol := defaultHeaderPolicy
	if ws := c.s.table.Load().Workspace(c.workspace()); ws != nil {
		h := ws.Headers
		pol = &h
	}
	c.hp.Store(pol)
	c.customBytes = c.s.filterHeaders(c.inv, pol)
	c.keepHeaders(c.inv.Headers())
}

// workspace is the call's workspace id.
func (c *call) workspace() string {
	if c.out != nil {
		return c.out.ws
	}
	if c.rt.route != nil {
		return c.rt.route.Number.Workspace
	}
	return ""
}

// keepHeaders adds to the call's kept headers those of hs the workspace
// keeps (custom headers that passed). c.mu held.
func (c *call) keepHeaders(hs []sip.Header) {
	pol := c.headerPolicy()
	if len(pol.Keep) == 0 {
		return
	}
	for _, h := range hs {
		name := h.Name()
		if isStandardHeader(name) || !pol.Kept(name) || !pol.Allowed(name) || len(h.Value()) > maxCustomValue {
			continue
		}
		c.keep(name, h.Value())
	}
}

func (c *call) keep(name, value string) {
	if c.kept == nil {
		c.kept = map[string]string{}
	}
	for k := range c.kept { // one entry per name, whatever its case
		if strings.EqualFold(k, name) {
			name = k
			break
		}
	}
	if _, ok := c.kept[name]; !ok && len(c.kept) >= maxKept {
		return
	}
	c.kept[name] = value
}

// keptHeaders is a copy of the call's kept headers for an event (nil: none).
func (c *call) keptHeaders() map[string]string {
	if len(c.kept) == 0 {
		return nil
	}
	m := make(map[string]string, len(c.kept))
	for k, v := range c.kept {
		m[k] = v
	}
	return m
}

// hookHeaders holds the routing hook's headers to the call's policy: a
// name the allow-list does not have, or past the INVITE's custom bytes
// limit, is dropped (counted, logged); one the INVITE has too replaces
// the caller's; kept ones go to history. c.mu held.
func (c *call) hookHeaders(hs []hook.Header) []hook.Header {
	pol := c.headerPolicy()
	out := hs[:0:0]
	total := c.customBytes
	for _, h := range hs {
		if why := customVerdict(pol, h.Name, h.Value, total); why != "" {
			c.s.xm.HeadersDropped.WithLabelValues(why).Inc()
			c.logger().Info("sip: routing hook header dropped", "header", h.Name, "reason", why)
			continue
		}
		total += len(h.Name) + len(h.Value)
		if c.inv != nil {
			for _, x := range c.inv.Headers() {
				if strings.EqualFold(x.Name(), h.Name) {
					for c.inv.RemoveHeader(x.Name()) {
					}
					break
				}
			}
		}
		if pol.Kept(h.Name) {
			c.keep(h.Name, h.Value)
		}
		out = append(out, h)
	}
	return out
}
