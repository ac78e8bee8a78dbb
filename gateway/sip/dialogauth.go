package sip

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// No open relay (design.md "Two sides of the SIP edge"): an in-dialog
// request is forwarded only inside a dialog this edge routed, and only
// toward that dialog's peers.
//
// With the dialog record (this node, since it routed the call), the
// record says who the peers are. Without it (another node of ours, or
// after a restart) the Record-Route we wrote says it: its URI carries
// rrParam, three MACs keyed from the node's secret, over
//
//	the Call-ID                                   (we routed this dialog)
//	the Call-ID and the caller side's next hop    (its top Record-Route, else its Contact)
//	the Call-ID and the agent endpoint's host
//
// so that any node sharing the secret can check both that the dialog is
// ours and that the target is one of its peers, with no shared state.

// rrParam is the Record-Route URI parameter carrying the MACs.
const rrParam = "cg"

// macLen is the bytes kept of each HMAC-SHA256 (an online forgery of
// 64 bits per Call-ID and host is out of reach).
const macLen = 8

var macB64 = base64.RawURLEncoding

// macChars is the length of one encoded MAC.
var macChars = macB64.EncodedLen(macLen)

// deriveRRKey derives the Record-Route MAC key from the node's secret
// (nil: a random key, so that record-routes verify only in this process).
func deriveRRKey(secret []byte) []byte {
	if len(secret) == 0 {
		secret = make([]byte, 32)
		_, _ = rand.Read(secret)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("callgate sip record-route v1"))
	return m.Sum(nil)
}

// Parts of the token, in order.
const (
	macCall   = "d"
	macCaller = "c"
	macAgent  = "a"
)

// macPool holds keyed HMAC states for one key (an HMAC is not safe for
// concurrent use; a pooled one saves its allocations per call).
type macPool struct {
	p sync.Pool
}

func newMacPool(key []byte) *macPool {
	return &macPool{p: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }}}
}

func (s *Server) mac(dst []byte, callID, part, host string) []byte {
	m := s.macs.p.Get().(hash.Hash)
	m.Reset()
	_, _ = io.WriteString(m, callID)
	m.Write([]byte{0})
	_, _ = io.WriteString(m, part)
	m.Write([]byte{0})
	_, _ = io.WriteString(m, host)
	var sum [sha256.Size]byte
	out := m.Sum(sum[:0])
	s.macs.p.Put(m)
	return macB64.AppendEncode(dst, out[:macLen])
}

// rrToken is the rrParam value for a call forwarded to agentHost whose
// caller side is reached through callerHop.
func (s *Server) rrToken(callID, callerHop, agentHost string) string {
	b := make([]byte, 0, 3*macChars)
	b = s.mac(b, callID, macCall, "")
	b = s.mac(b, callID, macCaller, hostKey(callerHop))
	b = s.mac(b, callID, macAgent, hostKey(agentHost))
	return string(b)
}

// rrWithToken is our Record-Route value for transport p with the token.
func (s *Server) rrWithToken(p proto, token string) string {
	rr := s.rr(p)
	return rr[:len(rr)-1] + ";" + rrParam + "=" + token + ">"
}

// tokenMatch reports whether the encoded MAC part i of tok is the MAC of
// (callID, part, host).
func (s *Server) tokenMatch(tok string, i int, callID, part, host string) bool {
	if len(tok) != 3*macChars {
		return false
	}
	want := s.mac(make([]byte, 0, macChars), callID, part, host)
	return subtle.ConstantTimeCompare(want, []byte(tok[i*macChars:(i+1)*macChars])) == 1
}

// routeToken is the token of the first Route entry naming us that has
// one and whose dialog MAC verifies for callID ("" when none does).
func (s *Server) routeToken(ours []sip.Uri, callID string) string {
	for i := range ours {
		if ours[i].UriParams == nil {
			continue
		}
		tok, _ := ours[i].UriParams.Get(rrParam)
		if s.tokenMatch(tok, 0, callID, macCall, "") {
			return tok
		}
	}
	return ""
}

// callerHop is the host the agent's in-dialog requests reach the caller
// side through: the caller's INVITE top Record-Route (the carrier's
// proxy next to us), else its Contact, else its source address.
func (s *Server) callerHop(inv *sip.Request, up peer) string {
	for _, h := range inv.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok && !s.isUs(&rr.Address) {
			return rr.Address.Host
		}
	}
	if ct := inv.Contact(); ct != nil && ct.Address.Host != "" {
		return ct.Address.Host
	}
	return up.addr.Addr().String()
}

// hostKey is a host compared by value: lower case, no brackets, an IP in
// its canonical form.
func hostKey(h string) string {
	h = trimBrackets(h)
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return strings.ToLower(h)
}

// targetKeys are the forms a request target's host is compared in: as
// written, and its address when it is a name already resolved (no DNS
// on this path).
func (s *Server) targetKeys(u *sip.Uri) (string, netip.Addr) {
	a, _ := s.tp.resolveOpt(u.Host, false)
	return hostKey(u.Host), a
}

// inDialogAllowed decides whether a request from `from` inside dialog
// callID (c its record, nil if none here) may be forwarded to target.
// ours are the Route entries naming us that the request carried.
// It returns the refusal reason ("" when allowed).
func (s *Server) inDialogAllowed(c *call, callID string, ours []sip.Uri, target *sip.Uri, from peer) string {
	k, a := s.targetKeys(target)
	ka := ""
	if a.IsValid() {
		ka = a.String()
	}
	if c != nil {
		c.mu.Lock()
		ok, live := c.peerAllowed(k, ka, from)
		c.mu.Unlock()
		if live {
			if ok {
				return ""
			}
			return "relay_denied"
		}
	}
	tok := s.routeToken(ours, callID)
	if tok == "" {
		return "relay_denied"
	}
	for _, h := range []string{k, ka} {
		if h != "" && (s.tokenMatch(tok, 1, callID, macCaller, h) || s.tokenMatch(tok, 2, callID, macAgent, h)) {
			return ""
		}
	}
	// The agent's Contact may name another host than its endpoint: a
	// carrier (a trunk source) may still reach an agent address in a
	// dialog we routed.
	if a.IsValid() && s.trunkFor(from.addr.Addr()) != nil && s.isAgentAddr(a) {
		return ""
	}
	return "relay_denied"
}

// peerAllowed reports whether target (host key k, resolved address ka)
// is a peer of the dialog that a request from `from` may go to; live is
// false when the record has ended (then the Record-Route decides).
// c.mu held.
//
// Caller side peers: the caller's source address, its Contact, the
// hosts of its INVITE's Record-Route. Agent side: the endpoint the call
// went to (host and address) and the agent's 2xx Contact. The agent's
// Contact is the agent's own word, so it counts only for a request from
// the caller side (the caller's address or a trunk): an agent cannot
// name a third party as its Contact and then send requests there itself.
func (c *call) peerAllowed(k, ka string, from peer) (ok, live bool) {
	if c.ended || c.inv == nil || c.cur == nil {
		return false, false
	}
	is := func(h string) bool { h = hostKey(h); return h != "" && (h == k || h == ka) }
	s := c.s
	if is(c.up.addr.Addr().String()) || is(c.cur.target.Host) || is(c.cur.to.addr.Addr().String()) {
		return true, true
	}
	if ct := c.inv.Contact(); ct != nil && is(ct.Address.Host) {
		return true, true
	}
	for _, h := range c.inv.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok && !s.isUs(&rr.Address) && is(rr.Address.Host) {
			return true, true
		}
	}
	if c.agentTarget != nil && is(c.agentTarget.Host) {
		fa := from.addr.Addr()
		return fa == c.up.addr.Addr() || s.trunkFor(fa) != nil, true
	}
	return false, true
}

// looped reports whether req already passed through this edge: one of
// its Via entries is ours (our sent-by and a branch of ours). A request
// forwarded by us that comes back is a loop (RFC 3261 16.3 item 4): the
// edge only routes a call to an agent, so a spiral back through us is
// never a legitimate route.
func (s *Server) looped(req *sip.Request) bool {
	for _, h := range req.Headers() {
		v, ok := h.(*sip.ViaHeader)
		if !ok {
			continue
		}
		br, _ := v.Params.Get("branch")
		if !strings.HasPrefix(br, branchOurs) || !strings.EqualFold(trimBrackets(v.Host), trimBrackets(s.viaHost)) {
			continue
		}
		port := v.Port
		if port == 0 {
			port = 5060
		}
		if port == s.viaPort(protoUDP) || port == s.viaPort(protoTCP) || port == s.viaPort(protoTLS) {
			return true
		}
	}
	return false
}

// refuseLoop answers a request that came back to us 482 (an ACK is
// dropped). The call it belongs to ends with the 482 and logs it there.
func (s *Server) refuseLoop(req *sip.Request, from peer) {
	if req.IsAck() {
		s.metrics.Dropped.WithLabelValues("loop").Inc()
		return
	}
	s.metrics.Rejected.WithLabelValues("loop_detected").Inc()
	s.replyStateless(req, from, 482, "Loop Detected")
	s.log.Debug("sip: loop detected", "method", string(req.Method), "call_id", string(*req.CallID()),
		"from", from.addr.String(), "max_forwards", maxForwards(req))
}

// isOwnAddr reports whether a is this edge's listening or advertised
// address: a request we forwarded to an endpoint that resolves back to us
// comes from there, and must reach the loop check rather than the source
// filter (which would leave the call's branch waiting for an answer).
func (s *Server) isOwnAddr(a netip.Addr) bool {
	if l := s.tp.udpAddr.Addr(); !l.IsUnspecified() && a == l {
		return true
	}
	adv, err := netip.ParseAddr(trimBrackets(s.advHost))
	return err == nil && a == adv.Unmap()
}

func maxForwards(req *sip.Request) string {
	if mf := req.MaxForwards(); mf != nil {
		return strconv.Itoa(int(*mf))
	}
	return ""
}
