package sip

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"hash"
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

// macChars is the length of one encoded MAC (unpadded base64url).
const macChars = (macLen*8 + 5) / 6

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

// macPool holds keyed HMAC states for one key with a buffer each (an
// HMAC is not safe for concurrent use; a pooled one costs no allocation).
type macPool struct {
	p sync.Pool
}

type macState struct {
	h   hash.Hash
	msg []byte
	sum [sha256.Size]byte
}

func newMacPool(key []byte) *macPool {
	return &macPool{p: sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, key)} }}}
}

// mac appends to dst the encoded MAC of (callID, part, host).
func (s *Server) mac(dst []byte, callID, part, host string) []byte {
	m := s.macs.p.Get().(*macState)
	m.msg = append(append(append(append(append(m.msg[:0], callID...), 0), part...), 0), host...)
	m.h.Reset()
	m.h.Write(m.msg)
	dst = macB64.AppendEncode(dst, m.h.Sum(m.sum[:0])[:macLen])
	if cap(m.msg) <= 1024 {
		s.macs.p.Put(m)
	}
	return dst
}

// rrToken appends to dst the rrParam value for a call forwarded to
// agentHost whose caller side is reached through callerHop.
func (s *Server) rrToken(dst []byte, callID, callerHop, agentHost string) []byte {
	dst = s.mac(dst, callID, macCall, "")
	dst = s.mac(dst, callID, macCaller, hostKey(callerHop))
	return s.mac(dst, callID, macAgent, hostKey(agentHost))
}

// writeRR writes our Record-Route value for transport p with the token.
func (s *Server) writeRR(buf *bytes.Buffer, side uint8, p proto, token []byte) {
	rr := s.rr(side, p)
	buf.WriteString(rr[:len(rr)-1])
	buf.WriteString(";" + rrParam + "=")
	buf.Write(token)
	buf.WriteByte('>')
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
	for _, h := range inv.Headers() {
		if rr, ok := h.(*sip.RecordRouteHeader); ok && !s.isUs(&rr.Address) {
			return rr.Address.Host
		}
	}
	if ct := inv.Contact(); ct != nil && ct.Address.Host != "" {
		return ct.Address.Host
	}
	return up.Addr.Addr().String()
}

// hostKey is a host as MACed: lower case, no brackets, an IP in its
// canonical form.
func hostKey(h string) string {
	h = trimBrackets(h)
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Is4() {
			return h // ParseAddr takes only the canonical IPv4 form
		}
		return a.Unmap().String()
	}
	return strings.ToLower(h)
}

// hostRef is a request target's host: its name (lower case; "" for an
// IP) and its address (the IP, or the name's cached resolution: no DNS
// on this path).
type hostRef struct {
	name string
	addr netip.Addr
}

func (s *Server) targetRef(u *sip.Uri) hostRef {
	h := trimBrackets(u.Host)
	if a, err := netip.ParseAddr(h); err == nil {
		return hostRef{addr: a.Unmap()}
	}
	r := hostRef{name: strings.ToLower(h)}
	if a, err := s.tp.ResolveOpt(h, resolveLast); err == nil {
		r.addr = a
	}
	return r
}

// is reports whether host h (a name or an IP) names the target.
func (r hostRef) is(h string) bool {
	h = trimBrackets(h)
	if a, err := netip.ParseAddr(h); err == nil {
		return r.addr.IsValid() && a.Unmap() == r.addr
	}
	return r.name != "" && strings.EqualFold(h, r.name)
}

func (r hostRef) isAddr(a netip.Addr) bool { return r.addr.IsValid() && a.Unmap() == r.addr }

// keys are the target's forms as MACed.
func (r hostRef) keys() []string {
	var k []string
	if r.name != "" {
		k = append(k, r.name)
	}
	if r.addr.IsValid() {
		k = append(k, r.addr.String())
	}
	return k
}

// inDialogAllowed decides whether a request from `from` inside dialog
// callID (c its record, nil if none here) may be forwarded to target.
// ours are the Route entries naming us that the request carried.
// It returns the refusal reason ("" when allowed).
func (s *Server) inDialogAllowed(c *call, callID string, ours []sip.Uri, target *sip.Uri, from peer) string {
	t := s.targetRef(target)
	if c != nil {
		c.mu.Lock()
		ok, live := c.peerAllowed(t, from)
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
	for _, h := range t.keys() {
		if s.tokenMatch(tok, 1, callID, macCaller, h) || s.tokenMatch(tok, 2, callID, macAgent, h) {
			return ""
		}
	}
	// The agent's Contact may name another host than its endpoint: a
	// carrier (a trunk source) may still reach an agent address in a
	// dialog we routed.
	if t.addr.IsValid() && s.trunkFor(from.Addr.Addr()) != nil && s.isAgentAddr(t.addr) {
		return ""
	}
	return "relay_denied"
}

// peerAllowed reports whether target t is a peer of the dialog that a
// request from `from` may go to; live is false when the record has ended
// (then the Record-Route decides). c.mu held.
//
// Caller side peers: the caller's source address, its Contact, the
// hosts of its INVITE's Record-Route. Agent side: the endpoint the call
// went to (host and address) and the agent's 2xx Contact. The agent's
// Contact is the agent's own word, so it counts only for a request from
// the caller side (the caller's address or a trunk): an agent cannot
// name a third party as its Contact and then send requests there itself.
func (c *call) peerAllowed(t hostRef, from peer) (ok, live bool) {
	if c.ended || c.inv == nil || c.cur == nil {
		return false, false
	}
	s := c.s
	if t.isAddr(c.up.Addr.Addr()) || t.is(c.cur.target.Host) || t.isAddr(c.cur.to.Addr.Addr()) {
		return true, true
	}
	if ct := c.inv.Contact(); ct != nil && t.is(ct.Address.Host) {
		return true, true
	}
	for _, h := range c.inv.Headers() {
		if rr, ok := h.(*sip.RecordRouteHeader); ok && !s.isUs(&rr.Address) && t.is(rr.Address.Host) {
			return true, true
		}
	}
	if c.agentTarget != nil && t.is(c.agentTarget.Host) {
		fa := from.Addr.Addr()
		return fa == c.up.Addr.Addr() || s.trunkFor(fa) != nil, true
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
		if !strings.HasPrefix(br, branchOurs) {
			continue
		}
		if (s.ag != nil && s.ag.ownVia(v)) || s.ownVia6(v) {
			return true
		}
		if !strings.EqualFold(trimBrackets(v.Host), trimBrackets(s.viaHost)) {
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
		"from", from.Addr.String(), "max_forwards", maxForwards(req))
}

// isOwnAddr reports whether a is this edge's listening or advertised
// address: a request we forwarded to an endpoint that resolves back to us
// comes from there, and must reach the loop check rather than the source
// filter (which would leave the call's branch waiting for an answer).
func (s *Server) isOwnAddr(a netip.Addr) bool {
	if l := s.tp.UDPAddr().Addr(); !l.IsUnspecified() && a == l {
		return true
	}
	adv, err := netip.ParseAddr(trimBrackets(s.advHost))
	return (err == nil && a == adv.Unmap()) || s.six.isAddr(a)
}

func maxForwards(req *sip.Request) string {
	if mf := req.MaxForwards(); mf != nil {
		return strconv.Itoa(int(*mf))
	}
	return ""
}
