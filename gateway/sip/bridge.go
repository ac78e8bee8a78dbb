package sip

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/netguard"
	"github.com/callgate/callgate/routing"
)

// Bridged transfers (issue 18): callgate carries a transfer out itself
// when the caller's carrier refuses REFER (501, 405, 403 or 603 to the
// agent's REFER or to the API's blind REFER), when the API asks for
// mode "bridge", and for agent targets (agent:<id>, which no carrier can
// reach).
//
//   - The new leg is a call callgate places as a user agent (its own
//     Call-ID, From tag and Contact): to a phone number through the
//     egress of the call's number's carrier (egress.go: the sandbox
//     termination, Twilio's or Telnyx's termination, with its digest
//     credentials), From the called gateway number (the caller ID the
//     destination policy and credits were checked with); to an agent
//     through its endpoints; to a SIP URI directly.
//   - Media, relayed calls (direct media: bridge3pcc.go, where the caller
//     is re-INVITEd to the new leg's media). The new leg is offered the caller's
//     SDP as the relay rewrote it for the agent (the agent-facing port),
//     restricted to the codec the caller and agent agreed on (the first
//     codec of the agent's answer) plus telephone-event. When it answers,
//     the relay's agent-facing leg is re-pointed at the new leg's media
//     (media.Session.RepointAgent, no latching); the caller keeps sending
//     to the same relay port in the same codec, so the caller is never
//     re-INVITEd. A new leg that cannot take that codec answers 488: the
//     transfer fails and the caller stays with the agent.
//   - Progress: "transfer" events with mode "bridge" (trying, ringing,
//     then completed, busy, no_answer or failed with the status); when
//     the agent asked by REFER, the agent's REFER is answered 202 and the
//     agent gets NOTIFYs (message/sipfrag) in the caller's name, numbered
//     above the caller's own requests toward the agent (ownCSeq,
//     dtmf.go: the caller's later requests and their answers are
//     renumbered after them).
//   - When the new leg answers: ACK, re-point the media, NOTIFY 200 to
//     the agent, BYE to the agent. From then on callgate is a B2BUA
//     between the caller's dialog and the new leg: the caller's BYE is
//     answered here and ends the new leg (BYE), the new leg's BYE is
//     answered here and ends the caller's dialog (BYE, reason
//     "bye_transfer_target"); the caller's re-INVITE or UPDATE is answered
//     200 with the SDP it already has (its new media address is
//     followed), INFO, OPTIONS, NOTIFY and MESSAGE 200, anything else 501;
//     the agent's late requests are answered (BYE 200, others 481). The
//     new leg to a phone number is metered like an outbound call
//     (calls.UsageMeter, its own Call-ID).
//   - A failed new leg (busy, refused, no answer within ring_timeout, no
//     response, unreachable) ends the attempt only: NOTIFY with its status
//     to the agent, the outcome in the transfer event, the call goes on
//     with the agent.
//   - An agent that hangs up while the new leg rings gets 200 (agentLeaves)
//     and the caller waits; if the new leg then fails, the caller is hung
//     up ("transfer_failed"): nobody is left to talk to it.
//
// Lock: everything here runs with the call's c.mu held, like the rest of
// the call; bridgeLeg has no lock of its own.

// branchBridge prefixes the Via branch of every request of a bridge: the
// new leg's INVITE, ACK, CANCEL and BYE, and the NOTIFYs and BYEs sent to
// the agent or the caller on its account.
const branchBridge = branchOurs + "b"

// bridgeLinger keeps a finished new leg's record to ACK retransmitted
// final responses and answer a late BYE.
const bridgeLinger = 32 * time.Second

// bridgeRefusal reports whether a carrier's answer to a REFER means it
// does not carry transfers out (callgate then bridges).
func bridgeRefusal(code int) bool {
	return code == 501 || code == 405 || code == 403 || code == 603
}

// bridgeLeg is the new leg of a bridged transfer (t.br, c.xs.br).
type bridgeLeg struct {
	c      *call
	t      *transfer
	id     string // the new leg's Call-ID
	tag    string // our From tag
	side   uint8  // listener it leaves from
	cands  []sip.Uri
	guard  bool // a sip: URI target: its resolved addresses must not be internal (netguard) nor us
	ci     int
	looked int // 1 + the candidate whose host name was looked up
	target sip.Uri
	to     peer
	branch string
	seq    uint32
	raw    []byte // the INVITE (UDP retransmissions)
	offer  []byte
	fromU  string // From user: the caller ID
	pai    bool   // assert fromU (P-Asserted-Identity): phone targets
	dest   string // E.164 of a phone target (metering), else ""
	notify bool   // the agent asked by REFER: NOTIFY it
	authz  string // header line answering the termination's challenge
	authed bool

	gotProv, gotFinal bool
	timerA, timerB    *time.Timer
	ring              *time.Timer
	aInt              time.Duration

	confirmed bool // a 2xx was ACKed: its dialog exists (BYE it to end it)
	answered  bool // 2xx and the media re-pointed: the caller is bridged to it
	ended     bool // over (failed, cancelled, hung up)
	remoteTag string
	remote    sip.Uri   // the new leg's Contact
	routes    []sip.Uri // its route set (Record-Route, reversed)
	dlg       peer      // where its in-dialog requests go (first route, else Contact)
	ack       []byte    // the ACK of its 2xx (for retransmitted 2xx)
	metered   bool
	// agentGone: the agent hung up while the new leg rang (a transferor
	// that leaves after 202); its BYE was answered here
	agentGone bool
	prevBr    string // the challenged INVITE's branch and the ACK of its
	prevAck   []byte // final response (retransmitted 401/407)

	// direct media (bridge3pcc.go): the caller is re-INVITEd to its SDP
	re        *callerReinvite
	answer    []byte // the new leg's SDP (its 2xx)
	callerSDP []byte // the caller's answer to the re-INVITE
	code      int    // the new leg's 2xx status and reason (the NOTIFY once bridged)
	reason    string
}

// bridgeRetx is a non-INVITE request of a bridge retransmitted over UDP
// until answered (timer E, up to timer F).
type bridgeRetx struct {
	timer *time.Timer
	start time.Time
	iv    time.Duration
}

// canBridge is "" when c can be bridged, else why not. c.mu held.
func (c *call) canBridge() string {
	switch {
	case c.out != nil:
		return "an agent's outbound call cannot be bridged by callgate"
	case c.inv == nil || c.fwdBody == nil || c.agentTarget == nil:
		return "the call has no SDP offer or agent Contact to bridge from"
	case c.direct3PCC() && (c.inv.Contact() == nil || c.answerIn == nil):
		// its media is not relayed: the caller is re-INVITEd (bridge3pcc.go)
		return "the call's media is not relayed and the caller has no Contact or the agent's answer no SDP to re-INVITE with"
	}
	return ""
}

// referRefused: the caller's carrier refused the agent's REFER of t
// (status code). When callgate can bridge, the refusal going to the
// agent becomes 202 (the caller passes it on), and the returned function,
// run once that 202 is sent, places the new leg: the agent sees 202
// before any NOTIFY. nil: the refusal stands. c.mu held.
func (c *call) referRefused(t *transfer, code int) func() {
	if t.done || t.br != nil || c.canBridge() != "" || !c.bridgeRoutable(t.target) {
		return nil
	}
	t.bridging = true
	c.inspect.Store(true) // every in-dialog request of the call is seen from now on (transferInDialog)
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.ended || t.done || t.br != nil || c.xs == nil || c.xs.cur != t {
			return
		}
		if !c.bridgeFallback(t) {
			// the agent got 202: it learns the failure by NOTIFY
			c.transferOutcome(t, code)
			c.notifyRefer(code, sipPhrase(code), true)
		}
	}
}

// bridgeFallback turns transfer t, whose REFER the caller's carrier
// refused, into a bridged one; false when the call cannot be bridged
// (the refusal stands). c.mu held.
func (c *call) bridgeFallback(t *transfer) bool {
	if t.done || t.br != nil || c.canBridge() != "" {
		return false
	}
	mode := t.info.Mode
	t.info.Mode, t.info.State, t.info.Status = TransferBridge, calls.TransferTrying, 0
	if code, _ := c.startBridge(t, t.target, !t.ours); code != 0 {
		t.info.Mode = mode
		return false
	}
	if !t.done {
		c.publishTransfer(t.info)
	}
	c.logger().Info("sip: transfer refused by the carrier, bridging", "via", t.info.Via, "to", maskTarget(t.target))
	return true
}

// startBridge places the new leg of transfer t to tg; notify: NOTIFY the
// agent (it asked by REFER and got 202). A non-zero status is why it
// could not start (the transfer is then over with that status). c.mu held.
func (c *call) startBridge(t *transfer, tg transferTarget, notify bool) (int, string) {
	s := c.s
	if why := c.canBridge(); why != "" {
		return 501, why
	}
	ws, callerID := c.transferScope()
	bl := &bridgeLeg{c: c, t: t, id: randHex(16) + "@callgate", tag: randHex(8), notify: notify, seq: 1,
		fromU: callerID}
	c.bridgeCands(bl, tg, ws)
	if len(bl.cands) == 0 {
		return 503, "no route for the new leg (no termination or endpoint)"
	}
	src := c.fwdBody
	if c.direct3PCC() && c.callerSDP != nil {
		src = c.callerSDP // its media moved since its INVITE (bridge3pcc.go)
	}
	bl.offer = bridgeOffer(src, c.answerIn)
	t.br = bl
	c.xstate().br = bl
	c.inspect.Store(true) // every in-dialog request of the call is seen from now on (transferInDialog)
	s.bridges.Store(bl.id, bl)
	bl.ring = time.AfterFunc(s.cfg.RingTimeout, bl.onRingTimeout)
	bl.next()
	return 0, ""
}

// bridgeCands fills in where bl's INVITE goes for target tg (of
// workspace ws): the listener, the candidates, the caller ID. c.mu held.
func (c *call) bridgeCands(bl *bridgeLeg, tg transferTarget, ws string) {
	s := c.s
	switch tg.kind {
	case targetPhone:
		bl.side, bl.pai, bl.dest = sideCarrier, true, tg.e164
		for _, ep := range s.egressTargets(c.rt.route, tg.e164) {
			var u sip.Uri
			if sip.ParseUri(ep.URI, &u) == nil {
				bl.cands = append(bl.cands, u)
			}
		}
	case targetAgent:
		bl.side = c.downSide()
		if snap := s.table.Load(); snap != nil {
			if a, ok := snap.Agent(ws, tg.agent); ok {
				// in the order an inbound call tries them: the number's
				// voice region first, healthy ones by RTT (routing)
				rt := &routing.Route{Number: c.rt.route.Number, Agent: a}
				for _, ep := range routing.Candidates(rt, s.prober) {
					var u sip.Uri
					if sip.ParseUri(ep.URI, &u) == nil {
						bl.cands = append(bl.cands, u)
					}
				}
			}
		}
		if c.rt.from != "" {
			bl.fromU = c.rt.from // an agent sees the caller, as on an inbound call
		}
	case targetSIP:
		bl.side, bl.guard = c.downSide(), true
		var u sip.Uri
		if sip.ParseUri(tg.uri, &u) == nil {
			bl.cands = append(bl.cands, u)
		}
	}
}

// bridgeRoutable reports whether a new leg to tg has somewhere to go (a
// termination or endpoint): a REFER the carrier refused is bridged only
// then, else the refusal reaches the agent. c.mu held.
func (c *call) bridgeRoutable(tg transferTarget) bool {
	ws, _ := c.transferScope()
	bl := &bridgeLeg{c: c}
	c.bridgeCands(bl, tg, ws)
	return len(bl.cands) > 0
}

// next sends the INVITE to the next candidate; none left: the transfer
// failed (503, or 408 when the last one never answered). c.mu held.
func (bl *bridgeLeg) next() {
	c := bl.c
	s := c.s
	for !bl.ended && bl.ci < len(bl.cands) {
		u := bl.cands[bl.ci]
		to, err := s.tp.URIPeerCached(&u)
		if err == errNeedLookup && bl.looked != bl.ci+1 {
			bl.looked = bl.ci + 1
			ci := bl.ci
			if s.tp.LookupThen(u.Host, func(error) {
				c.mu.Lock()
				defer c.mu.Unlock()
				if bl.ci == ci && !bl.ended && !c.ended {
					bl.next()
				}
			}) {
				return
			}
		}
		if err != nil {
			bl.ci++
			continue
		}
		if a := to.Addr.Addr().Unmap(); bl.guard && (netguard.InternalReason(a) != "" || s.isOwnAddr(a)) {
			// a host name the tenant chose that resolves inside: never sent
			c.logger().Info("sip: bridge target refused", "reason", "internal address", "why", netguard.InternalReason(a))
			bl.ci++
			continue
		}
		to.Side = bl.side
		bl.target, bl.to = u, to
		bl.branch = newBranch(branchBridge)
		bl.gotProv, bl.gotFinal = false, false
		bl.raw = []byte(bl.invite().String())
		if bl.side == sideCarrier {
			s.egressSeen(to.Addr.Addr())
		}
		ci := bl.ci
		if err := s.tpFor(to).SendThen(to, bl.raw, func(err error) {
			if err != nil {
				c.mu.Lock()
				defer c.mu.Unlock()
				if bl.ci == ci && !bl.gotProv && !bl.gotFinal && !bl.ended {
					bl.failover(503)
				}
			}
		}); err != nil && err != errPending {
			bl.ci++
			continue
		}
		if to.Proto == protoUDP {
			bl.aInt = t1
			bl.timerA = time.AfterFunc(t1, func() { bl.retransmit(ci) })
		}
		bl.timerB = time.AfterFunc(s.cfg.InviteTimeout, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if bl.ci == ci && !bl.gotProv && !bl.gotFinal && !bl.ended {
				bl.failover(408)
			}
		})
		return
	}
	if !bl.ended {
		bl.fail(503, "Service Unavailable")
	}
}

// failover gives up the current candidate (code: why) and tries the next.
// c.mu held.
func (bl *bridgeLeg) failover(code int) {
	stop(bl.timerA)
	stop(bl.timerB)
	bl.ci++
	if bl.ci >= len(bl.cands) {
		bl.fail(code, sipPhrase(code))
		return
	}
	bl.next()
}

func (bl *bridgeLeg) retransmit(ci int) {
	c := bl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if bl.ci != ci || bl.gotProv || bl.gotFinal || bl.ended || c.ended {
		return
	}
	_ = c.s.tpFor(bl.to).Send(bl.to, bl.raw)
	bl.aInt *= 2
	if bl.aInt > t2 {
		bl.aInt = t2
	}
	bl.timerA.Reset(bl.aInt)
}

// contact is callgate's Contact on the new leg's listener.
func (bl *bridgeLeg) contact() sip.Uri {
	s := bl.c.s
	u := sip.Uri{Scheme: "sip", User: "callgate", Host: trimBrackets(s.viaHostOn(bl.side)), Port: s.viaPortOn(bl.side, bl.to.Proto)}
	if bl.to.Proto != protoUDP {
		u.UriParams = sip.HeaderParams{{K: "transport", V: strings.ToLower(bl.to.Proto.String())}}
	}
	return u
}

// invite builds the new leg's INVITE. c.mu held.
func (bl *bridgeLeg) invite() *sip.Request {
	s := bl.c.s
	r := sip.NewRequest(sip.INVITE, bl.target)
	r.AppendHeader(s.via(bl.side, bl.to.Proto, bl.branch))
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	host := trimBrackets(s.viaHostOn(bl.side))
	from := sip.Uri{Scheme: "sip", User: bl.fromU, Host: host}
	r.AppendHeader(&sip.FromHeader{Address: from, Params: sip.HeaderParams{{K: "tag", V: bl.tag}}})
	to := sip.Uri{Scheme: "sip", User: bl.target.User, Host: bl.target.Host, Port: bl.target.Port}
	r.AppendHeader(&sip.ToHeader{Address: to})
	cid := sip.CallIDHeader(bl.id)
	r.AppendHeader(&cid)
	r.AppendHeader(&sip.CSeqHeader{SeqNo: bl.seq, MethodName: sip.INVITE})
	r.AppendHeader(&sip.ContactHeader{Address: bl.contact()})
	if bl.pai {
		r.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<"+from.String()+">"))
	}
	if bl.authz != "" {
		name, value, _ := strings.Cut(strings.TrimSpace(bl.authz), ": ")
		r.AppendHeader(sip.NewHeader(name, value))
	}
	r.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"))
	r.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	r.SetBody(bl.offer)
	return r
}

// onBridgeResponse: a response to a request of a bridge (branchBridge).
func (s *Server) onBridgeResponse(res *sip.Response) {
	br, _ := res.Via().Params.Get("branch")
	cs := res.CSeq()
	s.metrics.Responses.WithLabelValues(methodLabel(string(cs.MethodName)), codeLabel(res.StatusCode)).Inc()
	if cs.MethodName != sip.INVITE {
		if res.StatusCode >= 200 {
			s.stopRetx(br)
		}
		return // NOTIFY, BYE, CANCEL answered
	}
	v, ok := s.bridges.Load(string(*res.CallID()))
	if !ok {
		s.metrics.Dropped.WithLabelValues("stray_response").Inc()
		return
	}
	if res.To() == nil {
		s.metrics.Dropped.WithLabelValues("malformed").Inc()
		return
	}
	bl := v.(*bridgeLeg)
	c := bl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if br != bl.branch {
		if br == bl.prevBr && res.StatusCode >= 300 && bl.prevAck != nil {
			_ = s.tpFor(bl.to).Send(bl.to, bl.prevAck) // the challenge retransmitted
			return
		}
		if res.StatusCode >= 200 && res.StatusCode < 300 && bl.ack != nil {
			_ = s.tpFor(bl.dlg).Send(bl.dlg, bl.ack) // an earlier candidate's or transaction's 2xx
		}
		return
	}
	bl.onInviteResponse(res)
}

// onInviteResponse follows the new leg's answer. c.mu held.
func (bl *bridgeLeg) onInviteResponse(res *sip.Response) {
	c := bl.c
	s := c.s
	code := res.StatusCode
	stop(bl.timerA)
	if code < 200 {
		stop(bl.timerB)
		if code > 100 {
			bl.gotProv = true
		}
		if code >= 180 && !bl.ended && !c.ended && bl.t.info.State == calls.TransferTrying {
			bl.t.info.State, bl.t.info.Status = calls.TransferRinging, code
			c.publishTransfer(bl.t.info)
			bl.notifyAgent(code, res.Reason, false)
		}
		return
	}
	stop(bl.timerB)
	if code < 300 {
		if bl.confirmed {
			if bl.ack != nil {
				_ = s.tpFor(bl.dlg).Send(bl.dlg, bl.ack)
			}
			return
		}
		bl.gotFinal = true
		bl.remoteTag, _ = res.To().Params.Get("tag")
		bl.remote = bl.target
		if ct := res.Contact(); ct != nil {
			bl.remote = ct.Address
		}
		rrs := res.GetHeaders("Record-Route")
		bl.routes = bl.routes[:0]
		for i := len(rrs) - 1; i >= 0; i-- {
			if rr, ok := rrs[i].(*sip.RecordRouteHeader); ok {
				bl.routes = append(bl.routes, rr.Address)
			}
		}
		bl.dlg = bl.to
		next := bl.remote
		if len(bl.routes) > 0 {
			next = bl.routes[0]
		}
		if p, err := s.tp.URIPeerCached(&next); err == nil && p.Proto == bl.to.Proto {
			p.Side = bl.side
			bl.dlg = p
		}
		ack := bl.inDialog(sip.ACK, bl.seq)
		bl.ack = []byte(ack.String())
		_ = s.tpFor(bl.dlg).Send(bl.dlg, bl.ack)
		bl.confirmed = true
		if bl.ended || c.ended {
			// too late (cancelled, ring timeout, the call ended): hang up;
			// the caller is not bridged to it
			bl.bye()
			return
		}
		if c.direct3PCC() {
			// the caller is re-INVITEd to the new leg's media first (bridge3pcc.go)
			stop(bl.ring)
			bl.answer, bl.code, bl.reason = res.Body(), code, res.Reason
			if err := bl.reinviteCaller(res.Body(), false); err != nil {
				bl.bye()
				bl.fail(488, "Not Acceptable Here")
			}
			return
		}
		if err := bl.repoint(res.Body()); err != nil {
			bl.bye()
			bl.fail(488, "Not Acceptable Here")
			return
		}
		bl.answered = true
		bl.connected(code, res.Reason)
		return
	}
	// final non-2xx: ACK it (hop by hop), then retry, fail over or fail
	hop := bl.hopRequest(sip.ACK, res)
	_ = s.tpFor(bl.to).SendMsg(bl.to, hop)
	if bl.gotFinal {
		return // retransmission
	}
	bl.gotFinal = true
	if bl.ended {
		return
	}
	if code == 401 || code == 407 {
		prevBr, prevAck := bl.branch, []byte(hop.String())
		if bl.retryWithAuth(res) {
			bl.prevBr, bl.prevAck = prevBr, prevAck
			return
		}
	}
	if code >= 500 || code == 408 {
		if bl.ci+1 < len(bl.cands) {
			bl.failover(code)
			return
		}
	}
	bl.fail(code, res.Reason)
}

// connected completes the transfer once the caller is bridged to the new
// leg (the relay re-pointed, or the caller's re-INVITE accepted): the
// outcome, metering, NOTIFY to the agent (the new leg's status), BYE to
// the agent. c.mu held.
func (bl *bridgeLeg) connected(code int, reason string) {
	c := bl.c
	s := c.s
	stop(bl.ring)
	t := bl.t
	t.done = true
	t.info.State, t.info.Status = calls.TransferCompleted, code
	c.publishTransfer(t.info)
	s.xferMetrics.count(t.info.Via, t.info.State)
	if s.usage != nil && bl.dest != "" {
		ws, _ := c.transferScope()
		bl.metered = true
		s.usage.Answered(bl.id, ws, bl.dest, time.Now())
	}
	bl.notifyAgent(code, reason, true)
	if !bl.agentGone {
		c.byeAgent()
	}
	c.logger().Info("sip: transfer", "mode", t.info.Mode, "via", t.info.Via, "state", t.info.State, "status", code,
		"leg", bl.id, "reinvite", bl.re != nil)
}

// repoint turns the relay toward the new leg's media. c.mu held.
func (bl *bridgeLeg) repoint(sdp []byte) error {
	if len(sdp) == 0 {
		return errNoSDP
	}
	if rp, ok := bl.c.media.(interface{ RepointAgent([]byte) error }); ok {
		return rp.RepointAgent(sdp)
	}
	_, err := bl.c.media.RewriteAnswer(sdp)
	return err
}

// errNoSDP: the new leg answered without SDP (callgate sent an offer).
var errNoSDP = errors.New("sip: the new leg's answer has no SDP")

// retryWithAuth answers the termination's digest challenge once (a new
// transaction: next CSeq, new branch). c.mu held.
func (bl *bridgeLeg) retryWithAuth(res *sip.Response) bool {
	if bl.authed || bl.dest == "" {
		return false
	}
	user, pass := bl.c.s.egressAuth(bl.c.rt.route)
	if user == "" {
		return false
	}
	name, hname := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		name, hname = "Proxy-Authenticate", "Proxy-Authorization"
	}
	for _, h := range res.GetHeaders(name) {
		ch, err := digest.ParseChallenge(h.Value())
		if err != nil || !digest.CanDigest(ch) {
			continue
		}
		cr, err := digest.Digest(ch, digest.Options{Method: "INVITE", URI: bl.target.String(), Username: user, Password: pass, Count: 1})
		if err != nil {
			return false
		}
		bl.authed = true
		bl.authz = hname + ": " + cr.String()
		bl.seq++
		bl.looked = 0
		bl.next() // the same candidate, a new transaction
		return true
	}
	return false
}

// fail ends the attempt with the new leg's status; the caller stays with
// the agent. c.mu held.
func (bl *bridgeLeg) fail(code int, reason string) {
	c := bl.c
	if bl.ended && bl.t.done {
		return
	}
	bl.ended = true
	stop(bl.timerA)
	stop(bl.timerB)
	stop(bl.ring)
	if !bl.t.done {
		c.transferOutcome(bl.t, code)
		bl.notifyAgent(code, reason, true)
	}
	bl.forget()
	if bl.agentGone && !c.ended {
		// nobody is left for the caller: hang up rather than leave it in silence
		c.byeCaller()
		c.finish(200, "transfer_failed")
	}
}

// forget drops the leg's record after a while (late responses, BYE).
func (bl *bridgeLeg) forget() {
	s := bl.c.s
	time.AfterFunc(bridgeLinger, func() { s.bridges.CompareAndDelete(bl.id, bl) })
}

// onRingTimeout: the new leg did not answer within ring_timeout: CANCEL,
// no_answer (408). The caller stays with the agent.
func (bl *bridgeLeg) onRingTimeout() {
	c := bl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if bl.answered || bl.ended {
		return
	}
	bl.cancel()
	bl.fail(408, "Request Timeout")
}

// cancel sends CANCEL for the INVITE when it got a provisional response
// (RFC 3261 9.1; otherwise it is abandoned). c.mu held.
func (bl *bridgeLeg) cancel() {
	if !bl.gotProv || bl.gotFinal {
		return
	}
	s := bl.c.s
	_ = s.tpFor(bl.to).SendMsg(bl.to, bl.hopRequest(sip.CANCEL, nil))
}

// hopRequest is a CANCEL or non-2xx ACK of the INVITE (same branch).
func (bl *bridgeLeg) hopRequest(m sip.RequestMethod, res *sip.Response) *sip.Request {
	inv := bl.invite()
	r := sip.NewRequest(m, bl.target)
	r.AppendHeader(sip.HeaderClone(inv.Via()))
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(sip.HeaderClone(inv.From()))
	if res != nil && res.To() != nil {
		r.AppendHeader(sip.HeaderClone(res.To()))
	} else {
		r.AppendHeader(sip.HeaderClone(inv.To()))
	}
	r.AppendHeader(sip.HeaderClone(inv.CallID()))
	r.AppendHeader(&sip.CSeqHeader{SeqNo: bl.seq, MethodName: m})
	cl := sip.ContentLengthHeader(0)
	r.AppendHeader(&cl)
	return r
}

// inDialog builds a request in the new leg's dialog (ACK with its
// INVITE's CSeq, BYE with the next). c.mu held.
func (bl *bridgeLeg) inDialog(m sip.RequestMethod, seq uint32) *sip.Request {
	s := bl.c.s
	r := sip.NewRequest(m, bl.remote)
	br := newBranch(branchBridge)
	r.AppendHeader(s.via(bl.side, bl.to.Proto, br))
	for _, u := range bl.routes {
		r.AppendHeader(&sip.RouteHeader{Address: u})
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	host := trimBrackets(s.viaHostOn(bl.side))
	r.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: bl.fromU, Host: host},
		Params: sip.HeaderParams{{K: "tag", V: bl.tag}}})
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: bl.target.User, Host: bl.target.Host, Port: bl.target.Port}}
	if bl.remoteTag != "" {
		to.Params = sip.HeaderParams{{K: "tag", V: bl.remoteTag}}
	}
	r.AppendHeader(to)
	cid := sip.CallIDHeader(bl.id)
	r.AppendHeader(&cid)
	r.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: m})
	cl := sip.ContentLengthHeader(0)
	r.AppendHeader(&cl)
	return r
}

// bye hangs up the new leg once its 2xx was ACKed. c.mu held.
func (bl *bridgeLeg) bye() {
	if !bl.confirmed {
		return
	}
	bl.ended = true
	bl.seq++
	r := bl.inDialog(sip.BYE, bl.seq)
	bl.c.s.sendRetx(bl.dlg, r)
}

// endBridge is the call's end as the bridge sees it (finish, before the
// ended event): a new leg still ringing is cancelled (the transfer
// failed: 487), an answered one gets BYE unless it hung up, its metering
// stops. c.mu held.
func (c *call) endBridge() {
	if c.xs == nil || c.xs.br == nil {
		return
	}
	bl := c.xs.br
	stop(bl.timerA)
	stop(bl.timerB)
	stop(bl.ring)
	if bl.re != nil {
		stop(bl.re.timerA)
		stop(bl.re.timerB)
	}
	if !bl.answered && !bl.ended {
		if bl.confirmed {
			bl.bye() // answered, the caller's re-INVITE pending (bridge3pcc.go)
		} else {
			bl.cancel()
		}
		bl.ended = true
		if !bl.t.done {
			c.transferOutcome(bl.t, 487)
		}
		bl.forget()
		return
	}
	if bl.answered && !bl.ended {
		bl.bye()
	}
	if bl.metered {
		bl.metered = false
		c.s.usage.Ended(bl.id, time.Now())
	}
	bl.forget()
}

// bridged reports whether c's caller is now with a transfer's new leg.
// c.mu held.
func (c *call) bridged() bool {
	return c.xs != nil && c.xs.br != nil && c.xs.br.answered
}

// agentLeaves answers the agent's BYE while a bridged transfer's new leg
// rings: the caller stays, for the new leg. true: answered here. c.mu held.
func (c *call) agentLeaves(req *sip.Request, from peer) bool {
	bl := c.xs.br
	if req.Method != sip.BYE || bl == nil || bl.answered || bl.ended {
		return false
	}
	bl.agentGone = true
	c.s.replyStateless(req, from, 200, "OK")
	c.logger().Info("sip: the agent left during a bridged transfer; the caller waits for the new leg")
	return true
}

// bridgedInDialog answers an in-dialog request of the caller's dialog
// once bridged (the agent is gone): see the top of this file. c.mu held.
func (c *call) bridgedInDialog(req *sip.Request, from peer, agent bool) bool {
	s := c.s
	switch {
	case req.Method == sip.ACK:
		return true
	case agent && req.Method == sip.BYE:
		s.replyStateless(req, from, 200, "OK")
		return true
	case agent:
		s.replyStateless(req, from, 481, "Call/Transaction Does Not Exist")
		return true
	}
	switch req.Method {
	case sip.BYE:
		s.replyStateless(req, from, 200, "OK")
		c.finish(200, "bye_caller")
	case sip.INVITE, sip.UPDATE:
		if len(req.Body()) > 0 && c.media != nil {
			if _, err := c.media.RewriteOffer(req.Body()); err != nil {
				s.replyStateless(req, from, 488, "Not Acceptable Here")
				return true
			}
		} else if len(req.Body()) > 0 && !sameSession(req.Body(), c.xs.br.callerSDP) {
			// direct media: a move cannot be carried to the new leg (bridge3pcc.go)
			s.replyStateless(req, from, 488, "Not Acceptable Here")
			return true
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", c.answerOut)
		if c.agentTarget != nil {
			res.AppendHeader(&sip.ContactHeader{Address: *c.agentTarget})
		}
		if len(c.answerOut) > 0 {
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		to := replyPeer(req, from)
		s.metrics.Responses.WithLabelValues(methodLabel(string(req.Method)), codeLabel(200)).Inc()
		_ = s.tpFor(to).SendMsg(to, res)
	case sip.INFO, sip.OPTIONS, sip.NOTIFY, sip.MESSAGE, sip.PRACK:
		s.replyStateless(req, from, 200, "OK")
	default:
		s.replyStateless(req, from, 501, "Not Implemented")
	}
	return true
}

// bridgeRequest answers a request in a new leg's dialog (Call-ID of a
// bridge); false when the Call-ID is not a bridge's.
func (s *Server) bridgeRequest(req *sip.Request, from peer) bool {
	v, ok := s.bridges.Load(string(*req.CallID()))
	if !ok {
		return false
	}
	bl := v.(*bridgeLeg)
	c := bl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	switch req.Method {
	case sip.ACK:
	case sip.BYE:
		s.replyStateless(req, from, 200, "OK")
		if bl.answered && !bl.ended {
			bl.ended = true
			if !c.ended {
				c.byeCaller()
				c.finish(200, "bye_transfer_target")
			}
		} else if bl.re != nil && !bl.answered && !bl.ended {
			// it hung up while the caller is re-INVITEd to it (bridge3pcc.go)
			bl.ended = true
			bl.fail(503, "Service Unavailable") // failed: it answered, then left
		}
	case sip.INVITE, sip.UPDATE:
		if !bl.answered || bl.ended {
			s.replyStateless(req, from, 481, "Call/Transaction Does Not Exist")
			return true
		}
		if c.direct3PCC() {
			if len(req.Body()) > 0 && !sameSession(req.Body(), bl.answer) { // cannot be carried to the caller
				s.replyStateless(req, from, 488, "Not Acceptable Here")
				return true
			}
		} else if len(req.Body()) > 0 && bl.repoint(req.Body()) != nil { // its media moved: followed
			s.replyStateless(req, from, 488, "Not Acceptable Here")
			return true
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", bl.offer)
		res.AppendHeader(&sip.ContactHeader{Address: bl.contact()})
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		to := replyPeer(req, from)
		_ = s.tpFor(to).SendMsg(to, res)
	default:
		s.replyStateless(req, from, 200, "OK")
	}
	return true
}

// notifyAgent reports the new leg's progress to the agent that asked by
// REFER: a NOTIFY in the caller's name (message/sipfrag). c.mu held.
func (bl *bridgeLeg) notifyAgent(code int, reason string, final bool) {
	if bl.notify && !bl.agentGone {
		bl.c.notifyRefer(code, reason, final)
	}
}

// notifyRefer sends the agent a NOTIFY of its REFER's progress in the
// caller's name. c.mu held.
func (c *call) notifyRefer(code int, reason string, final bool) {
	if c.ended || c.inv == nil || c.agentTarget == nil {
		return
	}
	if reason == "" {
		reason = sipPhrase(code)
	}
	s := c.s
	inv := c.inv
	side := c.downSide()
	pr, err := uriProto(c.agentTarget)
	if err != nil {
		return
	}
	r := sip.NewRequest(sip.NOTIFY, *c.agentTarget)
	r.AppendHeader(s.via(side, pr, newBranch(branchBridge)))
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(sip.HeaderClone(inv.From()))
	toH := &sip.ToHeader{DisplayName: inv.To().DisplayName, Address: inv.To().Address, Params: sip.HeaderParams{{K: "tag", V: c.agentTag}}}
	r.AppendHeader(toH)
	r.AppendHeader(sip.HeaderClone(inv.CallID()))
	r.AppendHeader(&sip.CSeqHeader{SeqNo: c.nextCallerSeq(), MethodName: sip.NOTIFY})
	if ct := inv.Contact(); ct != nil {
		r.AppendHeader(sip.HeaderClone(ct))
	}
	r.AppendHeader(sip.NewHeader("Event", "refer"))
	if final {
		r.AppendHeader(sip.NewHeader("Subscription-State", "terminated;reason=noresource"))
	} else {
		r.AppendHeader(sip.NewHeader("Subscription-State", "active;expires=60"))
	}
	r.AppendHeader(sip.NewHeader("Content-Type", "message/sipfrag;version=2.0"))
	r.SetBody([]byte("SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n"))
	to, err := s.tp.URIPeerCached(c.agentTarget)
	if err != nil {
		_ = s.tpSide(side).SendURI(c.agentTarget, r) // a name to look up: sent once
		return
	}
	to.Side = side
	s.sendRetx(to, r)
}

// nextCallerSeq is the CSeq of a request callgate sends to the agent in
// the caller's name, numbered like callgate's INFOs (ownCSeq, dtmf.go):
// the caller's later requests are shifted above it. c.mu held.
func (c *call) nextCallerSeq() uint32 {
	return c.ownCSeq(false)
}

// sendRetx sends a non-INVITE request of a bridge and, over UDP,
// retransmits it until a final answer or timer F (64*T1).
func (s *Server) sendRetx(to peer, r *sip.Request) {
	br, _ := r.Via().Params.Get("branch")
	raw := []byte(r.String())
	if err := s.tpFor(to).Send(to, raw); err != nil && err != errPending {
		return
	}
	if to.Proto != protoUDP {
		return
	}
	rt := &bridgeRetx{start: time.Now(), iv: t1}
	rt.timer = time.AfterFunc(t1, func() {
		if _, ok := s.retx.Load(br); !ok || time.Since(rt.start) >= referRetransmitMax {
			s.retx.Delete(br)
			return
		}
		_ = s.tpFor(to).Send(to, raw)
		rt.iv *= 2
		if rt.iv > t2 {
			rt.iv = t2
		}
		rt.timer.Reset(rt.iv)
	})
	s.retx.Store(br, rt)
}

func (s *Server) stopRetx(br string) {
	if v, ok := s.retx.LoadAndDelete(br); ok {
		v.(*bridgeRetx).timer.Stop()
	}
}

// bridgeOffer is the SDP offered to the new leg: the caller's offer as
// rewritten for the agent (the relay's agent-facing address), its audio
// formats restricted to the codec of the agent's answer plus
// telephone-event, so that the caller, who keeps its codec, needs no
// re-INVITE. Without a usable answer the offer is used as it is.
func bridgeOffer(offer, answer []byte) []byte {
	keep := map[string]bool{}
	codec := ""
	inAudio := false
	for _, l := range sdpLines(answer) {
		if strings.HasPrefix(l, "m=") {
			inAudio = strings.HasPrefix(l, "m=audio ")
			if inAudio {
				if f := strings.Fields(l); len(f) > 3 {
					for _, pt := range f[3:] {
						if !isTelephoneEvent(answer, pt) {
							codec = pt
							break
						}
					}
				}
			}
		}
	}
	if codec == "" {
		return offer
	}
	keep[codec] = true
	var out bytes.Buffer
	inAudio = false
	for _, l := range sdpLines(offer) {
		if strings.HasPrefix(l, "m=") {
			inAudio = strings.HasPrefix(l, "m=audio ")
			if inAudio {
				f := strings.Fields(l)
				if len(f) > 3 {
					kept, found := f[:3:3], false
					for _, pt := range f[3:] {
						if pt == codec || isTelephoneEvent(offer, pt) {
							keep[pt] = true
							kept = append(kept, pt)
							found = found || pt == codec
						}
					}
					if !found {
						return offer // the caller never offered it: leave the offer alone
					}
					l = strings.Join(kept, " ")
				}
			}
		} else if inAudio {
			if pt, ok := sdpAttrPT(l); ok && !keep[pt] {
				continue
			}
		}
		out.WriteString(l)
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

func sdpLines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// sdpAttrPT is the payload type an a=rtpmap/fmtp/rtcp-fb line is about.
func sdpAttrPT(l string) (string, bool) {
	for _, p := range []string{"a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"} {
		if rest, ok := strings.CutPrefix(l, p); ok {
			pt, _, _ := strings.Cut(rest, " ")
			return pt, pt != "*"
		}
	}
	return "", false
}

// isTelephoneEvent reports whether payload type pt is telephone-event in sdp.
func isTelephoneEvent(sdp []byte, pt string) bool {
	for _, l := range sdpLines(sdp) {
		if rest, ok := strings.CutPrefix(l, "a=rtpmap:"+pt+" "); ok {
			return strings.HasPrefix(strings.ToLower(strings.TrimSpace(rest)), "telephone-event/")
		}
	}
	return false
}

// sipPhrase is a reason phrase for the statuses callgate reports itself.
func sipPhrase(code int) string {
	switch code {
	case 100:
		return "Trying"
	case 180:
		return "Ringing"
	case 200:
		return "OK"
	case 408:
		return "Request Timeout"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}
