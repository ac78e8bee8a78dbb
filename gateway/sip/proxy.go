package sip

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// The proxy: an INVITE from an allowed source is routed by
// routing.Decide and forwarded with our Via and Record-Route (the
// transaction layer, transaction.go, carries it from there).

func (s *Server) handleInvite(req *sip.Request, from peer) {
	var kb [128]byte
	key := appendServerTxKey(kb[:0], req) // a retransmission is looked up without a string made
	if c, ok := s.serverTx.getBytes(key); ok {
		// retransmission: resend the last final response, if any
		c.mu.Lock()
		if c.lastUp != nil {
			_ = s.tp.Send(c.up, c.lastUp)
		}
		c.mu.Unlock()
		return
	}
	if s.pikeRefused(req, from) {
		return
	}
	if s.draining.Load() {
		s.refuse(req, from, "", refuseDraining)
		return
	}
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		s.refuse(req, from, "", refuseTooManyHops)
		return
	}
	trunk := s.trunkFor(from.Addr.Addr())
	if trunk == nil {
		trunk = s.anyAuth
	}
	if trunk == nil {
		// an agent endpoint may send in-dialog requests, not new calls
		s.refuse(req, from, "", refuseUnknownSource)
		return
	}
	if trunk.Username != "" && !s.checkDigest(req, from, trunk) {
		return
	}
	snap := s.table.Load()
	if snap == nil {
		s.refuse(req, from, "", refuseNoSnapshot)
		return
	}
	txKey := string(key)
	in := callOf(req, trunk)
	in.CallID = string(*req.CallID())
	pol := routing.Policy{Health: s.prober, Media: routing.MediaDirect}
	if s.relayByDefault {
		pol.Media = routing.MediaRelay
	}
	dec := routing.Decide(snap, &in, pol)
	if dec.Outcome == routing.OutcomeNotOurs {
		s.refuse(req, from, dec.Called, refuseUnknownNumber)
		return
	}
	if s.controlled(&dec) { // a routing hook or a fallback chain: hookcall.go
		s.inviteControlled(req, from, txKey, trunk, snap, &in, &dec, pol)
		return
	}
	c := &call{
		s: s, id: string(*req.CallID()), inv: req, up: replyPeer(req, from), upBranch: txKey,
		rt: routedOf(&dec), trunk: trunk, start: time.Now(),
	}
	c.fromTag, _ = req.From().Params.Get("tag")
	c.rt.from, c.rt.to = callingNumber(&in), dec.Called
	if dec.Outcome == routing.OutcomeReject {
		c.refuse(from, refusalFor(dec.Reason))
		return
	}
	c.cands = dec.Candidates
	c.fwdBody = req.Body()
	sp := s.srtpPolicy(trunk, snap, &dec, from.Proto == protoTLS) // srtp.go
	if s.media != nil && dec.Media == routing.MediaRelay {
		sess, err := s.newMediaFor(c) // in each party's address family (dualstack_media.go)
		if err != nil {
			s.refuse(req, from, dec.Number, refuseNoMediaPorts)
			return
		}
		c.secureMedia(sess, sp)
		if len(c.fwdBody) > 0 {
			nb, err := sess.RewriteOffer(c.fwdBody)
			if err != nil {
				sess.Close()
				s.refuse(req, from, dec.Number, sdpRefusal(err))
				return
			}
			c.fwdBody = nb
		}
		c.media = sess
		c.attachMedia() // incall.go
	} else if rf, bad := srtpDirectRefusal(c.fwdBody, sp); bad {
		s.refuse(req, from, dec.Number, rf)
		return
	}
	if !c.admitLimits(snap, from) {
		return
	}
	// Locked before it is visible: a CANCEL handled by the other read
	// loop waits until the INVITE is forwarded (call.mu before shard locks).
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.serverTx.putNew(txKey, c) {
		// the same INVITE, handled concurrently by the other read loop
		c.releaseLimits()
		if c.media != nil {
			c.media.Close()
		}
		return
	}
	s.active.Add(1)
	s.metrics.ActiveCalls.Inc()
	// 100 Trying at once: the carrier stops retransmitting.
	s.replyStateless(req, from, 100, "Trying")
	c.publish(calls.Started, 0, "")
	c.ring = time.AfterFunc(s.cfg.RingTimeout, c.onCallTimer)
	c.earlyMedia() // 180 at once for agents that ask (ringback.go)
	c.startBranch()
}

// buildForward serialises the INVITE sent to an endpoint straight from
// the caller's parsed INVITE (no clone of the request): our Via and
// Record-Route on top, leading Route entries naming us removed,
// Max-Forwards decremented, incoming X-Callgate-* dropped and ours added.
func (c *call) buildForward(target *sip.Uri, branchID string, to peer, ep routing.Endpoint) []byte {
	p := to.Proto
	s := c.s
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<16 {
			bufPool.Put(buf)
		}
	}()
	buf.WriteString("INVITE ")
	writeURI(buf, target)
	buf.WriteString(" SIP/2.0\r\n")
	down := s.fam(c.downSide(), to.Addr.Addr()) // with its address family (dualstack.go)
	up := s.fam(c.up.Side, c.up.Addr.Addr())
	s.writeVia(buf, down, p, branchID)
	// Record-Route: one entry, or two when the legs use different
	// transports (RFC 5658): the callee-facing one on top. Each carries
	// the MACs that let any node of ours verify the dialog and its peers.
	var tb [3 * macChars]byte
	tok := s.rrToken(tb[:0], c.id, s.callerHop(c.inv, c.up), target.Host)
	// A call crossing from one listener to the other (agent side,
	// carrier side) is record-routed on both, callee side on top.
	buf.WriteString("Record-Route: ")
	s.writeRR(buf, down, p, tok)
	buf.WriteString("\r\n")
	if p != c.up.Proto || down != up {
		buf.WriteString("Record-Route: ")
		s.writeRR(buf, up, c.up.Proto, tok)
		buf.WriteString("\r\n")
	}
	leadingRoute, haveMF := true, false
	carrierLeg, asserts := c.carrierLeg(), c.assertsGateway() // a fallback leg to a phone number (fallbackid.go)
	for _, h := range c.inv.Headers() {
		switch hv := h.(type) {
		case *sip.RouteHeader:
			if leadingRoute && s.isUs(&hv.Address) {
				continue
			}
			leadingRoute = false
		case *sip.MaxForwardsHeader:
			haveMF = true
			buf.WriteString("Max-Forwards: ")
			buf.Write(strconv.AppendInt(buf.AvailableBuffer(), int64(*hv)-1, 10))
			buf.WriteString("\r\n")
			continue
		case *sip.ContentLengthHeader:
			continue // ours below
		case *sip.CSeqHeader:
			if c.cseqDelta != 0 { // re-sent with the carrier's credentials (egressauth.go)
				buf.WriteString("CSeq: ")
				buf.WriteString(strconv.FormatUint(uint64(hv.SeqNo+c.cseqDelta), 10))
				buf.WriteString(" INVITE\r\n")
				continue
			}
		default:
			if n := h.Name(); len(n) > 11 && strings.EqualFold(n[:11], "x-callgate-") {
				continue // callgate's own headers are never taken from the outside
			}
			if n := h.Name(); len(n) == 5 && strings.EqualFold(n, "route") {
				leadingRoute = false
			}
			if c.out != nil && isAgentOnlyHeader(h.Name()) {
				continue // the agent's credentials stop here
			}
			if asserts && isIdentityHeader(h.Name()) {
				continue // replaced by the gateway number's (fallbackid.go)
			}
		}
		writeHdr(buf, h)
	}
	if !haveMF {
		buf.WriteString("Max-Forwards: 69\r\n")
	}
	c.writeDefaultSessionExpires(buf) // sip.session_timers.default_interval (sessiontimer.go)
	if c.out != nil && c.out.authz != "" && c.out.authzCI == c.ci {
		buf.WriteString(c.out.authz) // the carrier's challenge answered (egressauth.go)
	}
	if asserts {
		c.writeGatewayIdentity(buf, target)
	}
	if c.out == nil && !carrierLeg { // an outbound call (or a fallback leg) tells the carrier nothing of ours
		writeHeader(buf, "X-Callgate-Number", c.rt.route.Number.E164)
		if c.rt.route.Agent != nil { // nil: a routing hook sent an unassigned number's call to an endpoint
			writeHeader(buf, "X-Callgate-Agent", c.rt.route.Agent.ID)
		}
		writeHeader(buf, "X-Callgate-Region", ep.Region)
		if c.rt.forwardedFrom != "" {
			writeHeader(buf, "X-Callgate-Forwarded-From", c.rt.forwardedFrom)
		}
		if c.rt.originalCalled != "" {
			writeHeader(buf, "X-Callgate-Original-Called", c.rt.originalCalled)
		}
	}
	if c.ctl != nil && !carrierLeg {
		for _, h := range c.ctl.hdrs { // the routing hook's X- headers (validated)
			writeHeader(buf, h.Name, h.Value)
		}
	}
	buf.WriteString("Content-Length: ")
	buf.Write(strconv.AppendInt(buf.AvailableBuffer(), int64(len(c.fwdBody)), 10))
	buf.WriteString("\r\n\r\n")
	buf.Write(c.fwdBody)
	return append([]byte(nil), buf.Bytes()...)
}

func writeHeader(buf *bytes.Buffer, name, value string) {
	buf.WriteString(name)
	buf.WriteString(": ")
	buf.WriteString(value)
	buf.WriteString("\r\n")
}

// writeVia writes our Via line (what via returns, without allocating it).
func (s *Server) writeVia(buf *bytes.Buffer, side uint8, p proto, branchID string) {
	buf.WriteString("Via: SIP/2.0/")
	buf.WriteString(p.String())
	buf.WriteByte(' ')
	buf.WriteString(s.viaHostOn(side))
	buf.WriteByte(':')
	buf.Write(strconv.AppendInt(buf.AvailableBuffer(), int64(s.viaPortOn(side, p)), 10)) // no string: Itoa allocates from 100 up
	buf.WriteString(";branch=")
	buf.WriteString(branchID)
	buf.WriteString("\r\n")
}

func (s *Server) rr(side uint8, p proto) string {
	if n := s.on6(side); n != nil {
		return n.rr(p)
	}
	side &^= sideV6
	if side == sideAgent && s.ag != nil {
		return s.ag.rr(p)
	}
	switch p {
	case protoTCP:
		return s.rrTCP
	case protoTLS:
		if s.rrTLS != "" {
			return s.rrTLS
		}
		return s.rrTCP
	}
	return s.rrUDP
}

func (s *Server) via(side uint8, p proto, branchID string) *sip.ViaHeader {
	return &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: p.String(),
		Host: trimBrackets(s.viaHostOn(side)), Port: s.viaPortOn(side, p), Params: sip.HeaderParams{{K: "branch", V: branchID}}}
}

func (s *Server) viaPort(p proto) int {
	port := s.tp.UDPAddr().Port()
	switch p {
	case protoTCP:
		port = s.tp.TCPAddr().Port()
	case protoTLS:
		if s.tp.HasTLS() {
			port = s.tp.TLSAddr().Port()
		} else {
			port = s.tp.TCPAddr().Port()
		}
	}
	return int(port)
}

// epURI is an agent endpoint's URI parsed once: startBranch and the SRTP
// policy would otherwise parse it (sipgo's ParseUri allocates) for every
// call. Shared by every call to the endpoint: read only.
type epURI struct {
	u   sip.Uri
	err error  // the URI does not parse
	tls bool   // endpointTLS
	lit []peer // an IP literal's one target (Locate without DNS); nil for host names
}

// epURICap bounds the cache per shard (64 shards): a shard that fills is
// emptied (the URIs of a routing hook's answers are not bounded).
const epURICap = 64

// endpointURI is uri parsed, from the cache.
func (s *Server) endpointURI(uri string) *epURI {
	sh := &s.epURIs.s[shardOf(uri)]
	sh.mu.Lock()
	e := sh.m[uri]
	sh.mu.Unlock()
	if e != nil {
		return e
	}
	e = &epURI{}
	if e.err = sip.ParseUri(uri, &e.u); e.err == nil {
		e.tls = endpointTLS(uri)
		if _, err := netip.ParseAddr(trimBrackets(e.u.Host)); err == nil {
			if ps, err := s.tp.Locate(&e.u, resolveCached); err == nil && len(ps) == 1 {
				e.lit = ps
			}
		}
	}
	sh.mu.Lock()
	if sh.m == nil || len(sh.m) >= epURICap {
		sh.m = make(map[string]*epURI, 8)
	}
	sh.m[uri] = e
	sh.mu.Unlock()
	return e
}
