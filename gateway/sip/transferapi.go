package sip

import (
	"context"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
)

// The API's transfers (POST /v1/calls/{id}/transfer) arrive as
// calls.ControlBus commands; the node that holds the call answers. A
// blind transfer is a REFER that callgate sends to the caller's carrier
// in the agent's place (transfer.go explains the CSeq takeover); the
// carrier's NOTIFYs are answered here and become "transfer" events.

// Transfer modes of the API.
const (
	TransferBlind  = "blind"
	TransferBridge = "bridge"
)

// controlTransfer answers a transfer command for a call this server
// holds; ok false when it does not hold it (or it belongs to another
// workspace: never revealed).
func (s *Server) controlTransfer(_ context.Context, cmd calls.Command) (calls.Reply, bool) {
	if cmd.Op != calls.OpTransfer {
		return calls.Reply{}, false
	}
	c, ok := s.dialogs.get(cmd.CallID)
	if !ok {
		// ringing (not answered yet): 409, still only for its workspace
		var ringing *call
		s.serverTx.rangeAll(func(_ string, x *call) {
			if ringing == nil && x.id == cmd.CallID {
				ringing = x
			}
		})
		if ringing == nil {
			return calls.Reply{}, false
		}
		ringing.mu.Lock()
		ws, _ := ringing.transferScope()
		ended := ringing.ended
		ringing.mu.Unlock()
		if ws != cmd.Workspace || ended {
			return calls.Reply{}, false
		}
		return calls.Reply{Status: 409, Error: "the call is not answered yet"}, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ws, _ := c.transferScope(); ws != cmd.Workspace {
		return calls.Reply{}, false
	}
	if c.ended {
		return calls.Reply{Status: 409, Error: "the call has ended"}, true
	}
	if c.state != stAccepted {
		return calls.Reply{Status: 409, Error: "the call is not answered yet"}, true
	}
	if c.out != nil {
		return calls.Reply{Status: 409, Error: "an agent's outbound call is transferred by the agent's REFER, not by the API"}, true
	}
	if c.bridged() {
		return calls.Reply{Status: 409, Error: "the call was already handed to a bridged transfer's new leg; it cannot be transferred again"}, true
	}
	tg, err := parseAPITarget(cmd.To)
	if err != nil {
		return calls.Reply{Status: 400, Error: "to: " + err.Error()}, true
	}
	bridge := false
	switch cmd.Mode {
	case "", TransferBlind:
	case TransferBridge:
		bridge = true
	default:
		return calls.Reply{Status: 400, Error: "mode: must be blind or bridge"}, true
	}
	xs := c.xstate()
	if xs.busy(s.cfg.RingTimeout) {
		return calls.Reply{Status: 409, Error: "a transfer of this call is in progress"}, true
	}
	if tg.kind == targetAgent {
		bridge = true // no carrier reaches an agent: callgate bridges (bridge.go)
	}
	info := calls.TransferInfo{To: tg.String(), Mode: "refer", Via: "api", State: calls.TransferTrying, Carrier: c.rt.carrier}
	if bridge {
		info.Mode = TransferBridge
	}
	if code, _, why := c.checkTransfer(tg); code != 0 {
		info.State, info.Status = calls.TransferRefused, code
		status := 422
		if code >= 500 {
			info.State, status = calls.TransferFailed, code
		} else if code == 404 {
			status = 400
			why = "to: " + why
		}
		xs.cur = &transfer{info: info, done: true, sentAt: time.Now()}
		c.publishTransfer(info)
		s.xferMetrics.count(info.Via, info.State)
		return calls.Reply{Status: status, Error: why, Detail: map[string]string{"state": info.State}}, true
	}
	if bridge {
		if why := c.canBridge(); why != "" {
			return calls.Reply{Status: 409, Error: "mode: bridge: " + why}, true
		}
		t := &transfer{info: info, ours: true, sentAt: time.Now(), target: tg}
		xs.cur = t
		c.publishTransfer(info)
		code, why := c.startBridge(t, tg, false)
		if code != 0 {
			c.transferOutcome(t, code)
		}
		if t.done { // no route, or every candidate unreachable at once
			if why == "" {
				why = "every route to the target is unreachable"
			}
			return calls.Reply{Status: 502, Error: "the new leg could not be placed: " + why, Detail: map[string]string{"state": t.info.State}}, true
		}
		c.logger().Info("sip: transfer", "mode", info.Mode, "via", info.Via, "to", maskTarget(tg), "state", info.State)
		return calls.Reply{Status: 202, Detail: map[string]string{"state": t.info.State, "mode": TransferBridge, "to": info.To}}, true
	}
	if c.inv == nil || c.inv.Contact() == nil || c.agentTarget == nil {
		return calls.Reply{Status: 409, Error: "the caller's dialog cannot take a REFER (no Contact)"}, true
	}
	t := &transfer{info: info, ours: true, branch: newBranch(branchTransfer), sentAt: time.Now(), target: tg}
	t.seq = c.ownCSeq(true) // the agent's later requests are renumbered after it (dtmf.go)
	refer := c.buildRefer(t, tg)
	t.raw = []byte(refer.String())
	xs.cur = t
	c.publishTransfer(info)
	if err := s.tpFor(c.up).Send(c.up, t.raw); err != nil && err != errPending {
		t.raw = nil
		c.transferOutcome(t, 503)
		return calls.Reply{Status: 502, Error: "the REFER could not be sent to the caller's carrier", Detail: map[string]string{"state": t.info.State}}, true
	}
	if c.up.Proto == protoUDP {
		t.retxInt = t1
		t.retx = time.AfterFunc(t1, func() { c.retransmitRefer(t) })
	} else {
		t.retx = time.AfterFunc(referRetransmitMax, func() { c.retransmitRefer(t) })
	}
	c.logger().Info("sip: transfer", "mode", info.Mode, "via", info.Via, "to", maskTarget(tg), "state", info.State)
	return calls.Reply{Status: 202, Detail: map[string]string{"state": info.State, "mode": TransferBlind, "to": info.To}}, true
}

// buildRefer is our REFER toward the caller in the agent's place: the
// caller's Contact as Request-URI, the route set the caller recorded,
// From the agent's tag, Contact the agent's. c.mu held.
func (c *call) buildRefer(t *transfer, tg transferTarget) *sip.Request {
	s := c.s
	inv := c.inv
	r := sip.NewRequest(sip.REFER, inv.Contact().Address)
	r.AppendHeader(s.via(c.up.Side, c.up.Proto, t.branch))
	for _, h := range inv.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			r.AppendHeader(&sip.RouteHeader{Address: rr.Address})
		}
	}
	mf := sip.MaxForwardsHeader(70)
	r.AppendHeader(&mf)
	r.AppendHeader(&sip.FromHeader{DisplayName: inv.To().DisplayName, Address: inv.To().Address,
		Params: sip.HeaderParams{{K: "tag", V: c.agentTag}}})
	r.AppendHeader(&sip.ToHeader{DisplayName: inv.From().DisplayName, Address: inv.From().Address,
		Params: inv.From().Params.Clone()})
	r.AppendHeader(sip.HeaderClone(inv.CallID()))
	r.AppendHeader(&sip.CSeqHeader{SeqNo: t.seq, MethodName: sip.REFER})
	r.AppendHeader(&sip.ContactHeader{Address: *c.agentTarget})
	referTo := tg.uri
	r.AppendHeader(sip.NewHeader("Refer-To", "<"+referTo+">"))
	r.AppendHeader(sip.NewHeader("Referred-By", "<"+inv.To().Address.String()+">"))
	cl := sip.ContentLengthHeader(0)
	r.AppendHeader(&cl)
	return r
}

// retransmitRefer resends our REFER over UDP until answered (timer E),
// and gives up at timer F (64*T1): the transfer failed with 408.
func (c *call) retransmitRefer(t *transfer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.gotResp || t.done || c.ended || t.raw == nil {
		return
	}
	if time.Since(t.sentAt) >= referRetransmitMax {
		t.raw = nil
		c.transferOutcome(t, 408)
		return
	}
	_ = c.s.tpFor(c.up).Send(c.up, t.raw)
	t.retxInt *= 2
	if t.retxInt > t2 {
		t.retxInt = t2
	}
	t.retx.Reset(t.retxInt)
}

// onOurReferResponse is the caller's carrier's answer to our REFER.
func (s *Server) onOurReferResponse(res *sip.Response) {
	c, ok := s.dialogs.get(string(*res.CallID()))
	if !ok {
		s.metrics.Dropped.WithLabelValues("stray_response").Inc()
		return
	}
	br, _ := res.Via().Params.Get("branch")
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.xs == nil || c.xs.cur == nil || !c.xs.cur.ours || c.xs.cur.branch != br {
		s.metrics.Dropped.WithLabelValues("stray_response").Inc()
		return
	}
	s.metrics.Responses.WithLabelValues("REFER", codeLabel(res.StatusCode)).Inc()
	c.referAnswered(c.xs.cur, res.StatusCode)
}

// registerControl makes the server answer API commands for its calls.
func (s *Server) registerControl(bus *calls.ControlBus) {
	if bus != nil {
		bus.Handle(s.controlTransfer)
	}
}
