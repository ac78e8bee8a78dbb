package sip

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Bridged transfers of calls whose media is not relayed (issue 18, RFC
// 3725 style): the relay cannot be re-pointed, so callgate re-INVITEs
// the caller to the new leg's media in the agent's place.
//
//   - The new leg is offered the caller's SDP as callgate forwarded it to
//     the agent (c.fwdBody: the caller's offer, untouched in direct mode,
//     or its latest SDP in the dialog: c.callerSDP, directSDP),
//     restricted like a relayed bridge's to the agent's codec plus
//     telephone-event (bridgeOffer): its media goes straight to the caller.
//   - When it answers (2xx with SDP): ACK, then a re-INVITE to the caller
//     in the agent's place: From the agent's tag, To the caller's, the
//     caller's Contact as Request-URI through the route set its side
//     recorded, CSeq from ownCSeq (the agent's later requests are
//     renumbered after it, dtmf.go), Contact the agent's. Its offer is the
//     new leg's SDP with the o= line of the session the caller has: the
//     agent's username and session id, the highest version of it that
//     passed (directSDP) plus one (RFC 3264 8);
//     the address fields are the new leg's. Retransmitted over UDP (timer
//     A) until a response; no final response within 64*T1 is a timeout.
//   - The caller's 2xx is ACKed (same CSeq), then the transfer completes
//     as a relayed one does (bridgeLeg.connected: NOTIFY 200, BYE to the
//     agent, B2BUA from then on). The caller's answer is not sent on to
//     the new leg: it answers the new leg's SDP, which the new leg answered
//     to the caller's own offer, so both already point at each other; a
//     caller that answers with a different address is logged, not
//     followed.
//   - A refused re-INVITE (non-2xx, or a timeout): the new leg gets BYE,
//     the transfer fails with that status (408 on timeout), the agent gets
//     the NOTIFY when it asked by REFER; the caller's session with the
//     agent is unchanged (RFC 3261 14.1), so the call goes on.
//   - The new leg hangs up while the caller is being re-INVITEd: the
//     transfer fails (503, the new leg gone) and, once the caller accepted, it is
//     re-INVITEd back to the agent's SDP (version plus one again).
//   - Once bridged, in-dialog offers that would move the media (an o=
//     version other than the one the other side has) are answered 488:
//     callgate cannot carry them to the other leg without a relay;
//     session refreshes (same o=) are answered 200.

// branchReinvite prefixes the Via branch of callgate's re-INVITEs (and
// their ACKs) to the caller of a direct-media bridged transfer.
const branchReinvite = branchOurs + "i"

// callerReinvite is callgate's re-INVITE of the caller in the agent's
// place (bridgeLeg.re).
type callerReinvite struct {
	branch  string
	seq     uint32
	target  sip.Uri // the caller's Contact
	raw     []byte
	offer   []byte
	restore bool // back to the agent's SDP (the new leg hung up meanwhile)

	timerA, timerB *time.Timer
	aInt           time.Duration
	gotProv        bool
	done           bool   // a final response arrived or timer B fired
	ack            []byte // the ACK of its 2xx (retransmitted 2xx)
}

var errNoCallerContact = errors.New("sip: the caller's INVITE has no Contact")

// direct3PCC reports whether a bridge of c re-INVITEs the caller (its
// media is not relayed). c.mu held.
func (c *call) direct3PCC() bool { return c.media == nil }

// directSDP records an SDP passing in the answered dialog of a direct-
// media call, for a later bridged transfer: the caller's (the new leg is
// offered its latest media) or the agent's (the o= session and version
// the caller last saw: callgate's re-INVITE numbers the next). Once
// bridged, nothing passes. c.mu held.
func (c *call) directSDP(sdp []byte, fromCaller bool) {
	if c.state != stAccepted || c.bridged() {
		return
	}
	if fromCaller {
		c.callerSDP = sdp
		return
	}
	c.answerIn = sdp
	if !sdpOlder(sdp, c.answerOut) {
		c.answerOut = sdp // the o= version callgate's re-INVITE goes on from
	}
}

// sdpOlder reports whether sdp's o= is an earlier version of last's
// session (an agent that answers with a stale SDP): the version callgate
// numbers from must never go back.
func sdpOlder(sdp, last []byte) bool {
	a := strings.Fields(strings.TrimPrefix(sdpOrigin(sdp), "o="))
	b := strings.Fields(strings.TrimPrefix(sdpOrigin(last), "o="))
	if len(a) != 6 || len(b) != 6 || a[0] != b[0] || a[1] != b[1] {
		return false
	}
	va, err1 := strconv.ParseUint(a[2], 10, 64)
	vb, err2 := strconv.ParseUint(b[2], 10, 64)
	return err1 == nil && err2 == nil && va < vb
}

// reinviteCaller offers the caller sdp (the new leg's answer, or the
// agent's SDP when restore) in the agent's place. c.mu held.
func (bl *bridgeLeg) reinviteCaller(sdp []byte, restore bool) error {
	c := bl.c
	s := c.s
	if len(sdp) == 0 {
		return errNoSDP
	}
	ct := c.inv.Contact()
	if ct == nil {
		return errNoCallerContact
	}
	re := &callerReinvite{branch: newBranch(branchReinvite), seq: c.ownCSeq(true), target: ct.Address,
		offer: sdpNextVersion(sdp, c.answerOut), restore: restore}
	r := c.callerRequest(sip.INVITE, re.target, re.branch, re.seq, nil)
	r.AppendHeader(&sip.ContactHeader{Address: *c.agentTarget})
	r.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"))
	r.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	r.SetBody(re.offer)
	re.raw = []byte(r.String())
	if bl.re != nil {
		stop(bl.re.timerA)
		stop(bl.re.timerB)
	}
	bl.re = re
	if err := s.tpFor(c.up).Send(c.up, re.raw); err != nil && err != errPending {
		return err
	}
	if c.up.Proto == protoUDP {
		re.aInt = t1
		re.timerA = time.AfterFunc(t1, func() { bl.retransmitReinvite(re) })
	}
	re.timerB = time.AfterFunc(referRetransmitMax, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if bl.re == re && !re.done {
			re.done = true
			stop(re.timerA)
			bl.reinviteFailed(re, 408, "Request Timeout")
		}
	})
	c.logger().Info("sip: re-INVITE to the caller", "restore", restore, "leg", bl.id)
	return nil
}

func (bl *bridgeLeg) retransmitReinvite(re *callerReinvite) {
	c := bl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if bl.re != re || re.gotProv || re.done || c.ended {
		return
	}
	_ = c.s.tpFor(c.up).Send(c.up, re.raw)
	re.aInt *= 2
	if re.aInt > t2 {
		re.aInt = t2
	}
	re.timerA.Reset(re.aInt)
}

// callerRequest is a request to the caller in the agent's place: From
// the agent's tag, To the caller's (to overrides it: a response's To),
// the route set the caller's side recorded. c.mu held.
func (c *call) callerRequest(m sip.RequestMethod, target sip.Uri, branch string, seq uint32, to *sip.ToHeader) *sip.Request {
	s := c.s
	inv := c.inv
	r := sip.NewRequest(m, target)
	r.AppendHeader(s.via(c.up.Side, c.up.Proto, branch))
	for _, h := range inv.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			r.AppendHeader(&sip.RouteHeader{Address: rr.Address})
		}
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(&sip.FromHeader{DisplayName: inv.To().DisplayName, Address: inv.To().Address,
		Params: sip.HeaderParams{{K: "tag", V: c.agentTag}}})
	if to == nil {
		to = &sip.ToHeader{DisplayName: inv.From().DisplayName, Address: inv.From().Address,
			Params: inv.From().Params.Clone()}
	}
	r.AppendHeader(to)
	r.AppendHeader(sip.HeaderClone(inv.CallID()))
	r.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: m})
	if m == sip.ACK {
		cl := sip.ContentLengthHeader(0)
		r.AppendHeader(&cl)
	}
	return r
}

// onReinviteResponse is the caller's answer to callgate's re-INVITE
// (branchReinvite).
func (s *Server) onReinviteResponse(res *sip.Response) {
	c, ok := s.dialogs.get(string(*res.CallID()))
	if !ok || res.To() == nil {
		s.metrics.Dropped.WithLabelValues("stray_response").Inc()
		return
	}
	br, _ := res.Via().Params.Get("branch")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.xs == nil || c.xs.br == nil || c.xs.br.re == nil || c.xs.br.re.branch != br || res.CSeq().MethodName != sip.INVITE {
		s.metrics.Dropped.WithLabelValues("stray_response").Inc()
		return
	}
	s.metrics.Responses.WithLabelValues("INVITE", codeLabel(res.StatusCode)).Inc()
	c.xs.br.onReinviteResponse(res)
}

// onReinviteResponse follows the caller's answer to bl.re. c.mu held.
func (bl *bridgeLeg) onReinviteResponse(res *sip.Response) {
	c := bl.c
	s := c.s
	re := bl.re
	code := res.StatusCode
	if code < 200 {
		re.gotProv = true
		stop(re.timerA)
		return
	}
	if code < 300 {
		if re.ack == nil {
			target := re.target
			if ct := res.Contact(); ct != nil {
				target = ct.Address
			}
			ack := c.callerRequest(sip.ACK, target, newBranch(branchReinvite), re.seq, sip.HeaderClone(res.To()).(*sip.ToHeader))
			re.ack = []byte(ack.String())
		}
		_ = s.tpFor(c.up).Send(c.up, re.ack)
	} else {
		// non-2xx: ACKed hop by hop (the INVITE's branch)
		ack := c.callerRequest(sip.ACK, re.target, re.branch, re.seq, sip.HeaderClone(res.To()).(*sip.ToHeader))
		_ = s.tpFor(c.up).SendMsg(c.up, ack)
	}
	if re.done {
		return // a retransmission
	}
	re.done = true
	stop(re.timerA)
	stop(re.timerB)
	if c.ended {
		return
	}
	if code >= 300 {
		bl.reinviteFailed(re, code, res.Reason)
		return
	}
	c.answerOut = re.offer // the SDP the caller has in the agent's place
	if re.restore {
		c.logger().Info("sip: the caller is back with the agent's media", "leg", bl.id)
		return
	}
	if bl.ended {
		// the new leg hung up meanwhile (the transfer failed): back to the agent
		if bl.agentGone {
			return // fail hung the caller up
		}
		if err := bl.reinviteCaller(c.answerIn, true); err != nil {
			c.logger().Info("sip: the caller could not be re-INVITEd back to the agent", "err", err)
		}
		return
	}
	bl.callerSDP = res.Body()
	if got, want := sdpMediaAddr(res.Body()), sdpMediaAddr(bl.offer); got != want {
		c.logger().Info("sip: the caller answered the re-INVITE with another media address; the new leg keeps the one it was offered",
			"leg", bl.id)
	}
	bl.answered = true
	bl.connected(bl.code, bl.reason)
}

// reinviteFailed: the caller refused (or never answered) re-INVITE re.
// Its session with the agent is unchanged: the new leg is hung up and the
// transfer failed with that status. c.mu held.
func (bl *bridgeLeg) reinviteFailed(re *callerReinvite, code int, reason string) {
	c := bl.c
	c.logger().Info("sip: the caller refused the re-INVITE", "status", code, "restore", re.restore, "leg", bl.id)
	if re.restore || bl.ended {
		return
	}
	bl.bye()
	bl.fail(code, reason)
}

// sdpNextVersion is sdp (a new offer for the session the caller has,
// whose last SDP was prev) with prev's o= username and session id and
// its version plus one (RFC 3264 8); the address fields stay sdp's.
// Without an o= in either, sdp is returned as it is.
func sdpNextVersion(sdp, prev []byte) []byte {
	po := sdpOrigin(prev)
	pf := strings.Fields(strings.TrimPrefix(po, "o="))
	if len(pf) != 6 {
		return sdp
	}
	ver, err := strconv.ParseUint(pf[2], 10, 64)
	if err != nil {
		return sdp
	}
	var out bytes.Buffer
	found := false
	for _, l := range sdpLines(sdp) {
		if strings.HasPrefix(l, "o=") && !found {
			found = true
			if f := strings.Fields(strings.TrimPrefix(l, "o=")); len(f) == 6 {
				l = "o=" + strings.Join([]string{pf[0], pf[1], strconv.FormatUint(ver+1, 10), f[3], f[4], f[5]}, " ")
			}
		}
		out.WriteString(l)
		out.WriteString("\r\n")
	}
	if !found {
		return sdp
	}
	return out.Bytes()
}

// sdpOrigin is the o= line of sdp, or "".
func sdpOrigin(sdp []byte) string {
	for _, l := range sdpLines(sdp) {
		if strings.HasPrefix(l, "o=") {
			return l
		}
	}
	return ""
}

// sameSession reports whether offer leaves the session described by
// last unchanged (same o= line: RFC 3264 8, a session refresh); true
// when last has none (nothing to compare with).
func sameSession(offer, last []byte) bool {
	lo := sdpOrigin(last)
	return lo == "" || sdpOrigin(offer) == lo
}

// sdpMediaAddr is the first audio stream's connection address and port
// ("addr port"), or "".
func sdpMediaAddr(sdp []byte) string {
	addr, port := "", ""
	inAudio := false
	for _, l := range sdpLines(sdp) {
		switch {
		case strings.HasPrefix(l, "m="):
			if port != "" {
				return addr + " " + port
			}
			inAudio = strings.HasPrefix(l, "m=audio ")
			if f := strings.Fields(l); inAudio && len(f) > 1 {
				port = f[1]
			}
		case strings.HasPrefix(l, "c="):
			if f := strings.Fields(l); len(f) == 3 && (inAudio || port == "") {
				addr = f[2]
			}
		}
	}
	if port == "" {
		return ""
	}
	return addr + " " + port
}
