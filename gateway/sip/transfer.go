package sip

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// Transfers (issue 18): an agent's REFER (RFC 3515) inside a dialog we
// routed, or the API's POST /v1/calls/{id}/transfer (transferapi.go).
//
// The REFER's target is parsed and checked first (transfertarget.go; the
// workspace's destination policy and credits for a phone number, the
// workspace for an agent); a refused one is answered here (400, 403,
// 402, 404) and never reaches the carrier. An accepted one is passed
// through to the caller's carrier, a phone number as tel:+E.164; the
// carrier's answer and its NOTIFY progress (message/sipfrag) go back to
// the agent unchanged, and callgate follows them as "transfer" events. A
// carrier that refuses REFER (501, 405, 403, 603), an agent target and
// the API's mode bridge make callgate carry the transfer out itself
// (bridge.go).
//
// The API's blind transfer sends the REFER itself, in the agent's place
// (From the agent's tag, Contact the agent's), numbered like the INFOs
// callgate inserts (ownCSeq, dtmf.go): from then on the agent's requests
// toward the caller are renumbered after it (and their responses back),
// so that the caller sees one increasing sequence. The carrier's NOTIFYs of that
// REFER are answered here and not passed to the agent.
//
// The agent's REFERs and the caller side's NOTIFYs pass through
// transferInDialog (the fast path never takes them), answers to REFERs
// through transferResponse.

// branchTransfer prefixes the Via branch of the REFERs callgate sends.
const branchTransfer = branchOurs + "r"

// referRetransmitMax bounds the retransmission of our REFER over UDP
// (RFC 3261 timer F, 64*T1).
const referRetransmitMax = 64 * t1

// xferState is a call's transfer state (c.xs; guarded by c.mu).
type xferState struct {
	cur *transfer
	br  *bridgeLeg // the last bridged transfer's new leg (bridge.go)
}

// transfer is one transfer attempt.
type transfer struct {
	info     calls.TransferInfo
	seq      uint32 // CSeq of the REFER as the caller sees it
	ours     bool   // sent by callgate (API)
	branch   string // ours: the REFER's Via branch
	raw      []byte // ours: the REFER (UDP retransmissions)
	retx     *time.Timer
	retxInt  time.Duration
	sentAt   time.Time
	gotResp  bool
	done     bool       // an outcome was reached
	br       *bridgeLeg // callgate carries it out (bridge.go)
	bridging bool       // the agent got 202 for a refused REFER: the bridge starts
	target   transferTarget
}

// fromAgent reports whether a request with From tag fromTag comes from
// the agent's side of c: for an inbound call the callee, for an
// outbound call (the agent called out) the caller.
func (c *call) fromAgent(fromTag string) bool {
	return (fromTag == c.fromTag) == (c.out != nil)
}

// transferScope is the workspace and the caller ID (the gateway number)
// a transfer of c is checked and placed with.
func (c *call) transferScope() (ws, callerID string) {
	if c.out != nil {
		return c.out.ws, c.out.callerID
	}
	if c.rt.route != nil {
		return c.rt.route.Number.Workspace, c.rt.route.Number.E164
	}
	return "", ""
}

// transferInDialog sees an in-dialog request of a recorded dialog before
// it is forwarded: the agent's REFER, the caller side's NOTIFY, and once
// a bridge started (c.inspect set) every request (bridge.go). true:
// answered here, not forwarded.
func (s *Server) transferInDialog(c *call, req *sip.Request, from peer) bool {
	if req.Method != sip.REFER && req.Method != sip.NOTIFY && !c.inspect.Load() {
		return false
	}
	fromTag, _ := req.From().Params.Get("tag")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended || c.state != stAccepted {
		return false
	}
	agent := c.fromAgent(fromTag)
	if c.bridged() {
		return c.bridgedInDialog(req, from, agent) // bridge.go: the caller is with the new leg
	}
	if agent && c.xs != nil && c.xs.br != nil && c.agentLeaves(req, from) {
		return true // bridge.go: the agent hung up while the new leg rings
	}
	switch {
	case agent && req.Method == sip.REFER:
		return c.onAgentRefer(req, from)
	case !agent && req.Method == sip.NOTIFY && c.xs != nil && c.xs.cur != nil:
		return c.onReferNotify(req, from)
	}
	return false
}

// transferResponse sees a response forwarded statelessly inside c's
// dialog: answers to the agent's REFERs followed as transfer events. A
// non-nil result runs once the response is sent on (bridge.go).
func (s *Server) transferResponse(c *call, res *sip.Response) (after func()) {
	if cs := res.CSeq(); cs == nil || cs.MethodName != sip.REFER {
		return nil
	}
	fromTag, _ := res.From().Params.Get("tag")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.xs == nil {
		return nil
	}
	cs := res.CSeq()
	if !c.fromAgent(fromTag) {
		return nil
	}
	if t := c.xs.cur; t != nil && !t.ours && cs.MethodName == sip.REFER && cs.SeqNo == t.seq {
		if bridgeRefusal(res.StatusCode) && (t.br != nil || t.bridging) {
			res.StatusCode, res.Reason = 202, "Accepted" // a retransmitted refusal
		} else if bridgeRefusal(res.StatusCode) {
			// the carrier does not transfer: callgate does (bridge.go), and
			// the agent gets 202 and NOTIFYs instead of the refusal
			if after = c.referRefused(t, res.StatusCode); after != nil {
				res.StatusCode, res.Reason = 202, "Accepted"
			} else {
				c.referAnswered(t, res.StatusCode)
			}
		} else {
			c.referAnswered(t, res.StatusCode)
		}
	}
	return after
}

// busy reports whether a transfer is still running (not past its
// outcome, and not older than a ring timeout plus a transaction timeout:
// a carrier that never sent the final NOTIFY does not block the next).
func (xs *xferState) busy(ringTimeout time.Duration) bool {
	t := xs.cur
	return t != nil && !t.done && time.Since(t.sentAt) < ringTimeout+referRetransmitMax
}

func (c *call) xstate() *xferState {
	if c.xs == nil {
		c.xs = &xferState{}
	}
	return c.xs
}

// onAgentRefer checks the agent's REFER; a refused one is answered here.
// c.mu held.
func (c *call) onAgentRefer(req *sip.Request, from peer) bool {
	s := c.s
	xs := c.xstate()
	reply := func(code int, reason, warning string) bool {
		var hs []sip.Header
		if warning != "" {
			hs = append(hs, sip.NewHeader("Warning", `399 callgate "`+strings.ReplaceAll(warning, `"`, "'")+`"`))
		}
		s.replyStateless(req, from, code, reason, hs...)
		return true
	}
	if xs.busy(c.s.cfg.RingTimeout) {
		return reply(491, "Request Pending", "a transfer of this call is in progress")
	}
	rts := req.GetHeaders("Refer-To")
	if len(rts) != 1 {
		return reply(400, "Bad Request", "exactly one Refer-To is required")
	}
	tg, err := parseReferTo(rts[0].Value())
	if err != nil {
		c.logger().Debug("sip: REFER refused", "refer_to", truncate(rts[0].Value(), 128), "err", err)
		return reply(400, "Bad Request", err.Error())
	}
	info := calls.TransferInfo{To: tg.String(), Mode: "refer", Via: "sip_refer", State: calls.TransferTrying, Carrier: c.rt.carrier}
	if code, phrase, why := c.checkTransfer(tg); code != 0 {
		info.State, info.Status = calls.TransferRefused, code
		if code >= 500 {
			info.State = calls.TransferFailed
		}
		xs.cur = &transfer{info: info, done: true, sentAt: time.Now()} // the outcome for the ended event
		c.publishTransfer(info)
		s.xferMetrics.count(info.Via, info.State)
		c.logger().Info("sip: transfer refused", "to", maskTarget(tg), "status", code, "reason", why)
		return reply(code, phrase, why)
	}
	if tg.kind == targetAgent {
		// no carrier reaches an agent: callgate bridges when it can
		info.Mode = TransferBridge
		t := &transfer{info: info, seq: req.CSeq().SeqNo, sentAt: time.Now(), target: tg}
		xs.cur = t
		c.publishTransfer(info)
		if why := c.canBridge(); why != "" {
			c.transferOutcome(t, 501)
			return reply(501, "Not Implemented", "a transfer to an agent is a bridged transfer: "+why)
		}
		if code, why := c.startBridge(t, tg, true); code != 0 {
			c.transferOutcome(t, code)
			return reply(code, sipPhrase(code), why)
		}
		return reply(202, "Accepted", "")
	}
	if tg.kind == targetPhone {
		// the carrier gets the number as tel:+E.164 whatever host the agent named
		req.RemoveHeader("Refer-To")
		req.AppendHeader(sip.NewHeader("Refer-To", "<"+tg.uri+">"))
	}
	xs.cur = &transfer{info: info, seq: req.CSeq().SeqNo, sentAt: time.Now(), target: tg}
	c.publishTransfer(info)
	return false
}

// checkTransfer applies the workspace's policy to a target of c: 0 when
// the transfer may go on, else the SIP status, phrase and why. c.mu held.
func (c *call) checkTransfer(tg transferTarget) (code int, phrase, why string) {
	s := c.s
	ws, callerID := c.transferScope()
	snap := s.table.Load()
	if snap == nil || ws == "" {
		return 503, "Service Unavailable", "no routing snapshot"
	}
	switch tg.kind {
	case targetPhone:
		if rule, ok := routing.CheckDestination(snap.Workspace(ws), callerID, tg.e164); !ok {
			return 403, routing.RulePhrase(rule), rule
		}
		if s.usage != nil {
			if err := s.usage.Authorize(ws, tg.e164); err != nil {
				return 402, "Insufficient credits", "no_credits"
			}
		}
	case targetAgent:
		if _, ok := snap.Agent(ws, tg.agent); !ok {
			return 404, "Not Found", "no such agent in this workspace"
		}
		// An agent is reached only through callgate's own leg (bridge.go):
		// the callers check c.canBridge.
	case targetSIP:
		var u sip.Uri
		if sip.ParseUri(tg.uri, &u) == nil && s.isUs(&u) {
			return 403, "Forbidden", "target is this gateway"
		}
	}
	return 0, "", ""
}

// referAnswered follows the answer to a REFER of transfer t. c.mu held.
func (c *call) referAnswered(t *transfer, code int) {
	if code < 200 || t.done || t.br != nil {
		return
	}
	if t.ours {
		stop(t.retx)
		t.raw = nil
	}
	if code < 300 {
		if !t.gotResp {
			t.gotResp = true
		}
		return
	}
	t.gotResp = true
	if t.ours && bridgeRefusal(code) && c.bridgeFallback(t) {
		return // callgate places the new leg itself (bridge.go)
	}
	c.transferOutcome(t, code)
}

// onReferNotify follows a NOTIFY of the caller's side while a transfer
// runs; true when it was answered here (our REFER's subscription). c.mu
// held.
func (c *call) onReferNotify(req *sip.Request, from peer) bool {
	t := c.xs.cur
	ev := ""
	if h := req.GetHeader("Event"); h != nil {
		ev = strings.ToLower(strings.TrimSpace(h.Value()))
	}
	if ev != "refer" && !strings.HasPrefix(ev, "refer;") {
		return false
	}
	if code, ok := parseSipfrag(req.Body()); ok && !t.done {
		switch {
		case code < 200:
			st := calls.TransferTrying
			if code >= 180 {
				st = calls.TransferRinging
			}
			if st != t.info.State {
				t.info.State, t.info.Status = st, code
				c.publishTransfer(t.info)
			}
		default:
			c.transferOutcome(t, code)
		}
	}
	if t.ours {
		c.s.replyStateless(req, from, 200, "OK")
		return true
	}
	return false
}

// transferOutcome ends transfer t with the new leg's final status. c.mu held.
func (c *call) transferOutcome(t *transfer, code int) {
	if t.done {
		return
	}
	t.done = true
	t.info.Status = code
	t.info.State = outcomeOf(code)
	c.publishTransfer(t.info)
	c.s.xferMetrics.count(t.info.Via, t.info.State)
	c.logger().Info("sip: transfer", "mode", t.info.Mode, "via", t.info.Via, "state", t.info.State, "status", code)
}

// outcomeOf maps a final SIP status of the transfer's new leg to its outcome.
func outcomeOf(code int) string {
	switch {
	case code >= 200 && code < 300:
		return calls.TransferCompleted
	case code == 486 || code == 600:
		return calls.TransferBusy
	case code == 408 || code == 480 || code == 487:
		return calls.TransferNoAnswer
	case code == 403 || code == 603:
		return calls.TransferRefused
	default:
		return calls.TransferFailed
	}
}

// parseSipfrag reads the status of a message/sipfrag body ("SIP/2.0 200 OK").
func parseSipfrag(body []byte) (int, bool) {
	line, _, _ := bytes.Cut(body, []byte("\n"))
	line = bytes.TrimSpace(line)
	rest, ok := bytes.CutPrefix(line, []byte("SIP/2.0 "))
	if !ok || len(rest) < 3 {
		return 0, false
	}
	code, err := strconv.Atoi(string(rest[:3]))
	if err != nil || code < 100 || code > 699 {
		return 0, false
	}
	return code, true
}

// publishTransfer sends a "transfer" event of c. c.mu held.
func (c *call) publishTransfer(info calls.TransferInfo) {
	e := calls.Event{
		Kind: calls.TransferKind, CallID: c.id, Time: time.Now(), Number: c.rt.route.Number.E164,
		Workspace: c.rt.route.Number.Workspace, Agent: agentID(c.rt.route.Agent), Region: c.regionName(),
		Carrier: c.rt.carrier, Origin: c.rt.origin, Source: "sip", Direction: calls.Inbound, From: c.rt.from, To: c.rt.to,
	}
	if c.out != nil {
		e.Direction, e.From, e.To, e.Workspace = calls.Outbound, c.out.callerID, c.out.dest, c.out.ws
	}
	ti := info
	e.Transfer = &ti
	c.s.events.Publish(e)
}

// transferInfo is the last transfer's state for the call's ended event
// (nil: none). c.mu held.
func (c *call) transferInfo() *calls.TransferInfo {
	if c.xs == nil || c.xs.cur == nil {
		return nil
	}
	ti := c.xs.cur.info
	return &ti
}

// maskTarget is a target for logs: numbers masked.
func maskTarget(tg transferTarget) string {
	if tg.kind == targetPhone {
		return "tel:" + phone.Mask(tg.e164)
	}
	return tg.String()
}
