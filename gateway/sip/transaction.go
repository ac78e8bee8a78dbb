package sip

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/sip/transport"
	"github.com/callgate/callgate/routing"
)

// The transaction layer: the caller's INVITE server transaction (final
// responses, their retransmission until the ACK, CANCEL) and our INVITE
// client transactions toward the endpoints (branches, timers A/B/F,
// failover to the next endpoint), and responses matched to them by Via.

// branch is one forwarded INVITE (client transaction).
type branch struct {
	id      string
	ep      routing.Endpoint
	to      peer
	target  sip.Uri      // Request-URI of the forwarded INVITE
	inv     *sip.Request // the caller's INVITE (CANCEL, ACK); nil once not needed
	raw     []byte       // serialised forwarded INVITE (retransmissions)
	gotResp bool
	gotProv bool
	final   bool
	cancel  bool   // CANCEL sent
	cseqAdd uint32 // added to the caller's CSeq in this branch (egressauth.go)
	// timer is Timers A and F in one (branchTimer): Timer A
	// (retransmission, UDP only) and Timer F (invite_timeout) both end
	// with the branch's first response, so one runtime timer serves both.
	timer *time.Timer
	aInt  time.Duration // Timer A's interval (0: no retransmission)
	fAt   time.Time     // Timer F's deadline
}

// serverTxKey matches an INVITE with its retransmissions, CANCEL and
// non-2xx ACK: the top Via branch and sent-by (RFC 3261 17.2.3), or for
// pre-RFC 3261 peers without the magic cookie, Call-ID, CSeq number,
// From tag and sent-by.
func serverTxKey(req *sip.Request) string {
	var b [128]byte
	return string(appendServerTxKey(b[:0], req))
}

// appendServerTxKey appends serverTxKey(req) to dst (a lookup of it in a
// table allocates nothing).
func appendServerTxKey(dst []byte, req *sip.Request) []byte {
	v := req.Via()
	br, _ := v.Params.Get("branch")
	if strings.HasPrefix(br, "z9hG4bK") {
		dst = append(dst, br...)
		dst = append(dst, '|')
		return appendSentBy(dst, v)
	}
	tag, _ := req.From().Params.Get("tag")
	dst = append(dst, "2543|"...)
	dst = append(dst, *req.CallID()...)
	dst = append(dst, '|')
	dst = strconv.AppendUint(dst, uint64(req.CSeq().SeqNo), 10)
	dst = append(dst, '|')
	dst = append(dst, tag...)
	dst = append(dst, '|')
	return appendSentBy(dst, v)
}

// appendSentBy appends v.SentBy(): host, and ":port" when there is one.
func appendSentBy(dst []byte, v *sip.ViaHeader) []byte {
	dst = append(dst, v.Host...)
	if v.Port > 0 {
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, int64(v.Port), 10)
	}
	return dst
}

// startBranch forwards the INVITE to the next candidate endpoint. c.mu held.
func (c *call) startBranch() {
	s := c.s
	if c.resolving {
		return // lookupThenBranch goes on
	}
	for c.ci < len(c.cands) {
		ep := c.cands[c.ci]
		e := s.endpointURI(ep.URI) // parsed once (proxy.go): read only
		if e.err != nil {
			c.ci++
			continue
		}
		u := &e.u
		to, err := c.endpointTarget(u, e.lit) // RFC 3263: the endpoint's next target (targets.go)
		to.Side = c.downSide()
		if err == errNeedLookup {
			if c.lookupThenBranch(u, ep) {
				return // startBranch goes on once the name is resolved
			}
			err = transport.LookupBusy(u.Host)
		}
		if err != nil {
			if isResolveErr(err) {
				c.resolveFailed(ep, to.Proto, err)
			}
			c.ci++
			continue
		}
		c.mediaFamilyFor(to) // a failover to the other address family (dualstack_media.go)
		b := c.newBranchState()
		*b = branch{id: newBranch(branchStateful), ep: ep, to: to, target: *u, inv: c.inv, cseqAdd: c.cseqDelta}
		b.raw = c.buildForward(&b.target, b.id, to, ep)
		c.cur = b
		c.branches = append(c.branches, b)
		s.clientTx.put(b.id, c)
		if c.out != nil {
			s.egressSeen(to.Addr.Addr())
		}
		var then func(error) // a UDP send never calls it back
		if to.Proto != protoUDP {
			then = func(err error) {
				if err != nil {
					c.branchUnreachable(b)
				}
			}
		}
		if err := s.tpFor(to).SendThen(to, b.raw, then); err != nil && err != errPending {
			s.log.Debug("sip: endpoint unreachable", "endpoint", c.ci, "region", ep.Region, "err", err)
			b.final = true
			s.metrics.Failovers.WithLabelValues(s.metrics.regions.label(ep.Region)).Inc()
			c.nextTarget(true)
			continue
		}
		d := s.cfg.InviteTimeout
		b.fAt = time.Now().Add(d)
		if to.Proto == protoUDP {
			b.aInt = t1
			d = min(d, t1)
		}
		b.timer = time.AfterFunc(d, func() { c.branchTimer(b) })
		return
	}
	if c.nextFallback() { // every endpoint down, timed out or 5xx: the next fallback step (fallback.go)
		c.startBranch()
		return
	}
	c.replyUp(503, "Service Unavailable", s.retryAfter())
	c.finish(503, "no_endpoint")
}

// lookupThenBranch resolves host (the endpoint ep's, not in the cache) in
// another goroutine, off the read loop and without c.mu, then goes on
// with startBranch for the same candidate unless the call moved on
// meanwhile (cancelled, timed out). false when too many lookups are
// running. c.mu held.
func (c *call) lookupThenBranch(u *sip.Uri, ep routing.Endpoint) bool {
	s := c.s
	ci := c.ci
	c.resolving = true
	ok := s.tp.LocateThen(u, func(err error) { // nil: the cache startBranch reads has the name
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.resolving || c.ci != ci {
			return
		}
		c.resolving = false
		if c.ended || c.cancelled || c.state >= stAccepted {
			return
		}
		if err != nil {
			var u sip.Uri
			pr := protoUDP
			if sip.ParseUri(ep.URI, &u) == nil {
				pr, _ = uriProto(&u)
			}
			c.resolveFailed(ep, pr, err)
			c.ci++
		}
		c.startBranch()
	})
	if !ok {
		c.resolving = false
	}
	return ok
}

// resolveFailed: the endpoint's host name did not resolve → counted like
// a dial failure (the caller moves on to the next endpoint). c.mu held.
func (c *call) resolveFailed(ep routing.Endpoint, p proto, err error) {
	s := c.s
	stage := "resolve"
	if errors.Is(err, errBusy) {
		stage = "busy" // too many lookups and dials running
	}
	s.metrics.SendErrors.WithLabelValues(p.Label(), stage).Inc()
	s.log.Debug("sip: endpoint unreachable", "call_id", c.id, "endpoint", c.ci, "region", ep.Region,
		"stage", stage, "err", err)
	s.metrics.Failovers.WithLabelValues(s.metrics.regions.label(ep.Region)).Inc()
	s.prober.passiveMiss(ep.URI)
}

// newBranchState is where the call's next branch lives: the first in
// the call itself (with the first entry of c.branches), later ones apart.
// c.mu held.
func (c *call) newBranchState() *branch {
	if c.branches == nil {
		c.branches = c.br0[:0]
	}
	if len(c.branches) == 0 && c.b0.id == "" {
		return &c.b0
	}
	return new(branch)
}

// branchTimer is the branch's Timer A (retransmit the INVITE on UDP, at
// T1, 2*T1, ... at most T2 apart) and Timer F (invite_timeout: no
// response at all → next endpoint).
func (c *call) branchTimer(b *branch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != b || b.gotResp || b.final || c.ended {
		return
	}
	now := time.Now()
	left := b.fAt.Sub(now)
	if left <= 0 {
		c.branchTimeout(b)
		return
	}
	if b.aInt == 0 { // no Timer A (TCP, TLS): F not due yet
		b.timer.Reset(left)
		return
	}
	_ = c.s.tpFor(b.to).Send(b.to, b.raw)
	b.aInt *= 2
	if b.aInt > t2 {
		b.aInt = t2
	}
	b.timer.Reset(min(b.aInt, left))
}

// branchTimeout: no response at all from the endpoint → next endpoint.
// c.mu held.
func (c *call) branchTimeout(b *branch) {
	if c.state >= stAccepted || c.cancelled {
		return
	}
	b.final = true
	c.s.metrics.Failovers.WithLabelValues(c.s.metrics.regions.label(b.ep.Region)).Inc()
	c.s.prober.passiveMiss(b.ep.URI)
	c.nextTarget(true)
	c.startBranch()
}

// branchUnreachable: the endpoint could not be connected to (TCP/TLS
// dial or handshake failed) → next endpoint at once.
func (c *call) branchUnreachable(b *branch) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != b || b.gotResp || b.final || c.ended || c.state >= stAccepted || c.cancelled {
		return
	}
	b.final = true
	stop(b.timer)
	c.s.metrics.Failovers.WithLabelValues(c.s.metrics.regions.label(b.ep.Region)).Inc()
	c.s.prober.passiveMiss(b.ep.URI)
	c.nextTarget(true)
	c.startBranch()
}

// onCallTimer is c.ring's function: the ring timeout until the call is
// answered, then the no-ACK timeout (onNoAck).
func (c *call) onCallTimer() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state >= stAccepted {
		c.onNoAck()
		return
	}
	c.onRingTimeout()
}

// onRingTimeout: no answer within ring_timeout. c.mu held.
func (c *call) onRingTimeout() {
	if c.ended || c.state >= stAccepted {
		return
	}
	c.cancelBranches()
	c.replyUp(408, "Request Timeout")
	c.finish(408, "ring_timeout")
}

// cancelBranches sends CANCEL on every branch that had a provisional
// response and no final one; the others are abandoned (RFC 3261 9.1).
func (c *call) cancelBranches() {
	for _, b := range c.branches {
		stop(b.timer)
		if b.gotProv && !b.final && !b.cancel {
			c.sendCancel(b)
		}
	}
}

// sendCancel: same Request-URI, top Via (branch), Call-ID, From, To and
// CSeq number as the forwarded INVITE, method CANCEL.
func (c *call) sendCancel(b *branch) {
	b.cancel = true
	if b.inv == nil {
		return
	}
	cr := c.hopRequest(b, sip.CANCEL, nil)
	_ = c.s.tpFor(b.to).SendMsg(b.to, cr)
}

// hopRequest builds a CANCEL or non-2xx ACK for branch b (hop by hop).
func (c *call) hopRequest(b *branch, m sip.RequestMethod, res *sip.Response) *sip.Request {
	inv := b.inv
	r := sip.NewRequest(m, b.target)
	r.AppendHeader(c.s.via(c.s.fam(b.to.Side, b.to.Addr.Addr()), b.to.Proto, b.id))
	leading := true
	for _, h := range inv.GetHeaders("Route") {
		if rh, ok := h.(*sip.RouteHeader); ok && leading && c.s.isUs(&rh.Address) {
			continue
		}
		leading = false
		r.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(sip.HeaderClone(inv.From()))
	if res != nil && res.To() != nil {
		r.AppendHeader(sip.HeaderClone(res.To()))
	} else {
		r.AppendHeader(sip.HeaderClone(inv.To()))
	}
	r.AppendHeader(sip.HeaderClone(inv.CallID()))
	r.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo + b.cseqAdd, MethodName: m})
	cl := sip.ContentLengthHeader(0)
	r.AppendHeader(&cl)
	return r
}

// onInviteResponse handles a response to one of the call's forwarded
// INVITEs. c.mu is taken here. Its state changes for a 1xx or 2xx are
// inviteProvisional and inviteAnswer, shared with the fast path
// (fastpath.go: fastInviteResponse), which forwards from the datagram's
// bytes what needs no rewriting.
func (c *call) onInviteResponse(res *sip.Response, br string) {
	s := c.s
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.branchByID(br)
	if b == nil {
		return
	}
	if b.cseqAdd != 0 { // back to the caller's numbering
		if cs := res.CSeq(); cs != nil {
			cs.SeqNo -= b.cseqAdd
		}
	}
	code := res.StatusCode
	c.inviteResponseSeen(b, code)
	switch {
	case code < 200:
		if !c.inviteProvisional(b, code, parsedResp{res}) {
			return
		}
		if c.media != nil && len(res.Body()) > 0 {
			nb, err := c.media.RewriteAnswer(res.Body())
			if err != nil {
				return // a broken early-media SDP is not forwarded
			}
			res.SetBody(nb)
		}
		c.forwardUp(res)
	case code < 300:
		if c.media != nil && len(res.Body()) > 0 {
			if c.answerIn != nil && bytes.Equal(res.Body(), c.answerIn) {
				res.SetBody(c.answerOut)
			} else if nb, err := c.media.RewriteAnswer(res.Body()); err == nil {
				c.answerIn, c.answerOut = res.Body(), nb
				res.SetBody(nb)
			}
		}
		c.inviteAnswer(b, code, parsedResp{res})
		if c.state == stAccepted {
			c.sessionAnswer(res) // RFC 4028 session timer (sessiontimer.go)
		}
		c.forwardUp(res) // every 2xx, retransmissions included
	default:
		// final non-2xx: ACK it hop by hop, then fail over or forward
		if b.inv != nil {
			_ = s.tpFor(b.to).SendMsg(b.to, c.hopRequest(b, sip.ACK, res))
		}
		if b.final {
			return // retransmission
		}
		b.final = true
		if b != c.cur || c.ended || c.state >= stAccepted || c.cancelled {
			return
		}
		if (code == 401 || code == 407) && c.out != nil && c.retryWithAuth(b, res) {
			return // re-sent with the carrier's credentials
		}
		if (code >= 500 && code < 600) || code == 408 {
			s.metrics.Failovers.WithLabelValues(s.metrics.regions.label(b.ep.Region)).Inc()
			c.nextTarget(code == 503) // RFC 3263 4.3: 503 → the endpoint's next target
			c.startBranch()
			return
		}
		stop(c.ring)
		res.RemoveHeader("Via")
		c.policeUp(res) // header policy (headers.go)
		c.state = stCompleted
		c.lastUp = []byte(res.String())
		c.sendUpRaw(string(sip.INVITE), code)
		reason := "rejected"
		if code == 482 {
			reason = "loop_detected" // the endpoint routes back to us (or a loop past it)
		}
		c.finish(code, reason)
	}
}

// branchByID is the call's branch with that id (nil: none). c.mu held.
func (c *call) branchByID(id string) *branch {
	var b *branch
	for _, x := range c.branches {
		if x.id == id {
			b = x
		}
	}
	return b
}

// inviteResp is what the state changes of a 1xx or 2xx to a forwarded
// INVITE read of it: sipgo's parse (parsedResp) or the fast path's scan
// (fastpath.go: scannedResp).
type inviteResp interface {
	toTag() (tag string, hasTo bool)
	hasToTag() bool
	contactURI() (sip.Uri, bool) // the Contact's address (sipgo: the last Contact header)
	body() []byte                // kept by the call: not the read buffer's bytes
}

// parsedResp is a response parsed by sipgo.
type parsedResp struct{ res *sip.Response }

func (r parsedResp) toTag() (string, bool) {
	to := r.res.To()
	if to == nil {
		return "", false
	}
	tag, _ := to.Params.Get("tag")
	return tag, true
}

func (r parsedResp) hasToTag() bool {
	tag, _ := r.toTag()
	return tag != ""
}

func (r parsedResp) contactURI() (sip.Uri, bool) {
	if ct := r.res.Contact(); ct != nil {
		return ct.Address, true
	}
	return sip.Uri{}, false
}

func (r parsedResp) body() []byte { return r.res.Body() }

// inviteResponseSeen: any response of branch b (passive health, Timers
// A and F stopped: after a 1xx the ring timeout takes over). c.mu held.
func (c *call) inviteResponseSeen(b *branch, code int) {
	if code != 503 {
		c.s.prober.aliveURI(b.ep.URI) // passive health: any answer is a sign of life
	}
	b.gotResp = true
	stop(b.timer)
}

// inviteProvisional makes the state changes of a 1xx of branch b and
// reports whether it goes on to the caller. c.mu held.
func (c *call) inviteProvisional(b *branch, code int, r inviteResp) bool {
	s := c.s
	if code == 100 {
		return false
	}
	b.gotProv = true
	if c.cancelled || c.ended || b != c.cur {
		if !b.cancel && !b.final {
			c.sendCancel(b)
		}
		return false
	}
	if c.state > stProceeding {
		return false
	}
	if !c.provSeen {
		c.provSeen = true
		c.observeSetup(s.metrics.SetupProvisional, s.metrics.OutboundSetupProvisional, time.Since(c.start))
	}
	c.state = stProceeding
	c.earlyDialog(r.hasToTag()) // PRACK, UPDATE before the answer (early.go)
	return true
}

// inviteAnswer makes the state changes of a 2xx of branch b (every one,
// retransmissions too; the SDP of a relayed call already rewritten by
// the caller); the 2xx goes on to the caller. c.mu held.
func (c *call) inviteAnswer(b *branch, code int, r inviteResp) {
	s := c.s
	b.final = true
	if c.media == nil && c.state < stAccepted {
		if body := r.body(); len(body) > 0 {
			// direct media: kept for a bridged transfer's re-INVITE (bridge3pcc.go)
			c.answerIn, c.answerOut = body, body
		}
	}
	if c.state < stAccepted && !c.ended {
		c.state = stAccepted
		c.cur = b // a late answer from an abandoned branch wins too
		c.answeredAt = time.Now()
		stop(c.ring)
		c.observeSetup(s.metrics.SetupAnswer, s.metrics.OutboundSetupAnswer, c.answeredAt.Sub(c.start))
		if tag, ok := r.toTag(); ok {
			c.agentTag = tag
		}
		if u, ok := r.contactURI(); ok {
			c.agentTarget = &u
		}
		s.dialogs.put(c.id, c)
		if c.ring != nil { // stopped above; a run under way finds the deadline not reached (onNoAck)
			c.ring.Reset(s.noAckTimeout)
		} else {
			c.ring = time.AfterFunc(s.noAckTimeout, c.onCallTimer)
		}
		c.publish(calls.Answered, code, "")
		c.outboundAnswered()
		// other branches (abandoned) are cancelled
		for _, x := range c.branches {
			if x != b && x.gotProv && !x.final && !x.cancel {
				c.sendCancel(x)
			}
		}
		c.scheduleRelease(linger) // serverTx no longer needed after a short while
	}
}

// forwardUp pops our Via and sends a downstream response to the caller.
func (c *call) forwardUp(res *sip.Response) {
	res.RemoveHeader("Via")
	c.policeUp(res) // header policy (headers.go)
	c.s.metrics.Responses.WithLabelValues("INVITE", codeLabel(res.StatusCode)).Inc()
	_ = c.s.tpFor(c.up).SendMsg(c.up, res)
}

// replyUp sends a final response generated here to the caller and keeps
// it for retransmission until the ACK (Timer G/H on UDP).
func (c *call) replyUp(code int, reason string, hdrs ...sip.Header) {
	if c.state >= stAccepted || c.lastUp != nil {
		return
	}
	if c.inv == nil {
		return
	}
	res := sip.NewResponseFromRequest(c.inv, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	c.state = stCompleted
	c.lastUp = []byte(res.String())
	c.sendUpRaw(string(sip.INVITE), code)
}

func (c *call) sendUpRaw(method string, code int) {
	c.s.metrics.response(method, code).Inc()
	_ = c.s.tpFor(c.up).Send(c.up, c.lastUp)
	if c.up.Proto == protoUDP {
		c.gInt = t1
		c.timerG = time.AfterFunc(t1, c.retransmitFinal)
	}
}

func (c *call) retransmitFinal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastUp == nil || c.timerG == nil || time.Since(c.start) > c.s.cfg.RingTimeout+timerH {
		return
	}
	_ = c.s.tpFor(c.up).Send(c.up, c.lastUp)
	c.gInt *= 2
	if c.gInt > t2 {
		c.gInt = t2
	}
	c.timerG.Reset(c.gInt)
}

func (s *Server) handleCancel(req *sip.Request, from peer) {
	var kb [128]byte
	c, ok := s.serverTx.getBytes(appendServerTxKey(kb[:0], req))
	if !ok {
		if tag, _ := req.To().Params.Get("tag"); tag != "" && s.routeIsUs(req) {
			// CANCEL of a re-INVITE: forwarded like the re-INVITE was
			s.forwardInDialog(req, from)
			return
		}
		s.replyStateless(req, from, 481, "Call/Transaction Does Not Exist")
		return
	}
	s.replyStateless(req, from, 200, "OK")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.state >= stAccepted || c.cancelled {
		return
	}
	c.cancelled = true
	c.cancelBranches()
	c.replyUp(487, "Request Terminated")
	c.finish(487, "cancel")
}

// handleResponse routes a response: our probes, our stateful INVITE
// branches, or statelessly by the next Via.
func (s *Server) handleResponse(res *sip.Response, from peer) {
	v := res.Via()
	if v == nil {
		s.metrics.Dropped.WithLabelValues("malformed").Inc()
		return
	}
	br, _ := v.Params.Get("branch")
	if !strings.HasPrefix(br, branchOurs) || (trimBrackets(v.Host) != trimBrackets(s.viaHost) && (s.ag == nil || !s.ag.ownVia(v)) && !s.ownVia6(v)) {
		s.metrics.Dropped.WithLabelValues("not_ours").Inc()
		return
	}
	cseq := res.CSeq()
	if cseq == nil || res.CallID() == nil {
		s.metrics.Dropped.WithLabelValues("malformed").Inc()
		return
	}
	switch {
	case strings.HasPrefix(br, branchProbe):
		s.prober.onResponse(br, res.StatusCode)
		return
	case strings.HasPrefix(br, branchDTMF):
		return // to an INFO callgate sent (dtmf.go)
	case strings.HasPrefix(br, branchTransfer):
		s.onOurReferResponse(res) // transferapi.go
		return
	case strings.HasPrefix(br, branchBridge):
		s.onBridgeResponse(res) // bridge.go
		return
	case strings.HasPrefix(br, branchReinvite):
		s.onReinviteResponse(res) // bridge3pcc.go
		return
	case strings.HasPrefix(br, branchStateful):
		c, ok := s.clientTx.get(br)
		if !ok {
			if res.StatusCode >= 200 && res.StatusCode < 300 && cseq.MethodName == sip.INVITE {
				break // late 2xx retransmission: forward statelessly
			}
			s.metrics.Dropped.WithLabelValues("stray_response").Inc()
			return
		}
		if cseq.MethodName == sip.INVITE {
			c.onInviteResponse(res, br)
		}
		return // responses to our CANCELs end here
	}
	if res.StatusCode != 503 {
		s.prober.aliveAddr(from.Addr) // passive health (BYE, re-INVITE, ... answers)
	}
	// stateless: pop our Via, send by the next one
	res.RemoveHeader("Via")
	nv := res.Via()
	if nv == nil {
		if cseq.MethodName == sip.BYE {
			return // the answer to a BYE of ours (session_expired, media_timeout, EndCall): done
		}
		s.metrics.Dropped.WithLabelValues("malformed").Inc()
		return
	}
	out := s.crossSide(from.Side)
	c, ok := s.dialogs.get(string(*res.CallID()))
	if ok && s.ag != nil && !c.crosses() {
		out = from.Side // a dialog on one listener (a fallback leg to a phone number)
	}
	if ok {
		c.unshiftCSeq(res) // numbered as its request was before callgate's INFOs (dtmf.go)
	}
	if ok && (len(res.Body()) > 0 || c.cseqDelta != 0) {
		fromTag, _ := res.From().Params.Get("tag")
		if c.cseqDelta != 0 && fromTag == c.fromTag {
			res.CSeq().SeqNo -= c.cseqDelta // a request of the caller's, renumbered toward the carrier
		}
		c.mu.Lock()
		if c.media != nil && isSDPBody(res) {
			var nb []byte
			var err error
			if fromTag == c.fromTag { // request from the caller: answer from the agent
				nb, err = c.media.RewriteAnswer(res.Body())
			} else {
				nb, err = c.media.RewriteOffer(res.Body())
			}
			if err == nil {
				res.SetBody(nb)
			}
		} else if c.media == nil && isSDPBody(res) {
			c.directSDP(res.Body(), fromTag != c.fromTag) // bridge3pcc.go
		}
		c.mu.Unlock()
	}
	var after func()
	if ok {
		c.sessionResponse(res, cseq)       // a session refresh (sessiontimer.go)
		after = s.transferResponse(c, res) // transfer.go: REFER answers (bridge.go: a refusal bridged)
	}
	s.policeHeaders(res, c) // header policy (headers.go); c nil: the default
	s.metrics.Responses.WithLabelValues(methodLabel(string(cseq.MethodName)), codeLabel(res.StatusCode)).Inc()
	_ = s.tpSide(out).SendVia(nv, res)
	if after != nil {
		after() // a bridged transfer starts once the agent has its 202 (bridge.go)
	}
}
