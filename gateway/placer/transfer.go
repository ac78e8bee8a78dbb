package placer

import (
	"context"
	"errors"
	"html"
	"strings"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
	"github.com/callgate/callgate/routing"
)

// Transfers of the carrier calls this node placed (issue 18): the API's
// POST /v1/calls/{id}/transfer reaches Handle over calls.ControlBus. A
// Twilio call is redirected to TwiML <Dial> (UpdateCall with Twiml), a
// Telnyx call gets Call Control's transfer action: the callee leaves the
// agent and is connected to the target, with the call's number as caller
// ID. Only phone numbers are targets here, checked against the
// workspace's destination policy and credits.

type twilioRedirecter interface {
	RedirectCall(ctx context.Context, sid, twiml string) (twilio.CallResult, error)
}

// RegisterControl makes the placer answer API commands for its calls.
func (p *Placer) RegisterControl(bus *calls.ControlBus) {
	if p != nil && bus != nil {
		bus.Handle(p.controlTransfer)
		bus.Handle(p.controlDTMF) // dtmf.go
	}
}

func (p *Placer) controlTransfer(ctx context.Context, cmd calls.Command) (calls.Reply, bool) {
	if cmd.Op != calls.OpTransfer {
		return calls.Reply{}, false
	}
	v, ok := p.live.Load(cmd.CallID)
	if !ok {
		return calls.Reply{}, false
	}
	cc := v.(carrierCall)
	if cc.st.WS != cmd.Workspace {
		return calls.Reply{}, false
	}
	if _, over := p.seen.Load(cmd.CallID + "/ended"); over {
		return calls.Reply{Status: 409, Error: "the call has ended"}, true
	}
	if _, up := p.seen.Load(cmd.CallID + "/answered"); !up {
		return calls.Reply{Status: 409, Error: "the call is not answered yet"}, true
	}
	if cmd.Mode == "bridge" {
		return calls.Reply{Status: 501, Error: "mode: bridge transfers are not available; use blind"}, true
	}
	dest, bad := phoneTarget(cmd.To, cc.carrier)
	if bad != nil {
		return *bad, true
	}
	info := calls.TransferInfo{To: "tel:" + dest, Mode: "carrier_verb", Via: "api", State: calls.TransferTrying, Carrier: cc.carrier}
	if status, why := p.transferPolicy(cc.st.WS, cc.st.Number, dest); status != 0 {
		info.State = calls.TransferRefused
		p.publishTransfer(cc, info)
		return calls.Reply{Status: status, Error: why, Detail: map[string]string{"state": info.State}}, true
	}
	vc := verbCall{carrier: cc.carrier, integration: cc.integration, ws: cc.st.WS, ref: cc.ref, number: cc.st.Number,
		commandID: cc.st.ID + "-xfer-" + dest}
	status, why, err := p.carrierTransfer(ctx, vc, dest, func() { p.publishTransfer(cc, info) })
	if status != 0 {
		return calls.Reply{Status: status, Error: why}, true
	}
	if err != nil {
		info.State = calls.TransferFailed
		p.publishTransfer(cc, info)
		p.log.Warn("placer: transfer refused by the carrier", "call_id", cc.st.ID, "carrier", cc.carrier, "err", err)
		return calls.Reply{Status: carrierFailStatus(err), Error: "the carrier refused the transfer", Detail: map[string]string{"state": info.State}}, true
	}
	// Twilio runs the <Dial> on the callee's leg: the agent's leg ends and
	// the call's completed callback reports the end. The new leg's own
	// outcome is not followed (no <Dial action> callback yet): the
	// transfer stays "trying".
	p.log.Info("placer: call transferred", "call_id", cc.st.ID, "carrier", cc.carrier, "to", phone.Mask(dest))
	return calls.Reply{Status: 202, Detail: map[string]string{"state": calls.TransferTrying, "mode": "blind", "to": info.To}}, true
}

// phoneTarget reads the target of a transfer by a carrier's verb: a phone
// number only (tel:+E.164 or +E.164). A bad target is a 400 reply.
func phoneTarget(to, carrierName string) (string, *calls.Reply) {
	dest := strings.TrimPrefix(strings.TrimSpace(to), "tel:")
	if !phone.IsE164(dest) {
		return "", &calls.Reply{Status: 400, Error: "to: a carrier call (" + carrierName + ") is transferred to a phone number only: tel:+E.164 or +E.164"}
	}
	if _, _, ok := phone.Classify(dest); !ok {
		return "", &calls.Reply{Status: 400, Error: "to: not a valid E.164 number"}
	}
	return dest, nil
}

// transferPolicy checks a transfer of workspace ws's call on number to
// dest as an outbound call from number: the workspace's destination
// policy, then credits for the first minute. 0 when allowed, else 422
// and the reason.
func (p *Placer) transferPolicy(ws, number, dest string) (int, string) {
	var w *routing.Workspace
	if snap := p.d.Table.Load(); snap != nil {
		w = snap.Workspace(ws)
	}
	if rule, ok := routing.CheckDestination(w, number, dest); !ok {
		return 422, routing.RulePhrase(rule) + " (" + rule + ")"
	}
	if p.d.Usage != nil {
		if err := p.d.Usage.Authorize(ws, dest); err != nil {
			return 422, "insufficient credits"
		}
	}
	return 0, ""
}

// verbCall is a carrier call a carrier's verb acts on.
type verbCall struct {
	carrier     string // twilio or telnyx
	integration string
	ws          string
	ref         string // Twilio call sid; Telnyx call_control_id
	number      string // the call's gateway number: the new leg's caller ID
	commandID   string // Telnyx command_id
}

// carrierTransfer hands call vc's phone party to dest with the carrier's
// verb: Twilio redirects the call to TwiML <Dial callerId=number><Number>,
// Telnyx gets Call Control's transfer (to dest, from number). sending runs
// just before the carrier is asked. A status and reason come back when the
// verb could not be asked for (integration unavailable or unable); err is
// the carrier's refusal.
func (p *Placer) carrierTransfer(ctx context.Context, vc verbCall, dest string, sending func()) (int, string, error) {
	c, err := p.adapter(ctx, vc.ws, vc.integration)
	if err != nil {
		return 502, "the call's carrier integration is unavailable", nil
	}
	switch vc.carrier {
	case "twilio":
		tc, ok := c.(twilioRedirecter)
		if !ok {
			return 501, "this integration cannot redirect calls", nil
		}
		twiml := `<?xml version="1.0" encoding="UTF-8"?><Response><Dial callerId="` + html.EscapeString(vc.number) + `"><Number>` +
			html.EscapeString(dest) + `</Number></Dial></Response>`
		sending()
		_, err = tc.RedirectCall(ctx, vc.ref, twiml)
	case "telnyx":
		tc, ok := c.(telnyxCaller)
		if !ok {
			return 501, "this integration cannot transfer calls", nil
		}
		sending()
		err = tc.Transfer(ctx, telnyx.TransferParams{CallControlID: vc.ref, To: dest, From: vc.number, CommandID: vc.commandID})
	default:
		return 501, "transfers of " + vc.carrier + " calls are not available", nil
	}
	return 0, "", err
}

// carrierFailStatus is the API status of a carrier's refusal: 409 when
// the call is over or gone (Twilio 21220 / 20404, Telnyx 90018 / 404),
// else 502.
func carrierFailStatus(err error) int {
	if errors.Is(err, carrier.ErrInvalidQuery) || errors.Is(err, carrier.ErrNotFound) {
		return 409
	}
	return 502
}

func (p *Placer) publishTransfer(cc carrierCall, info calls.TransferInfo) {
	e := p.event(calls.TransferKind, Call{ID: cc.st.ID, From: cc.st.From, To: cc.st.To, AgentID: cc.st.Agent, Carrier: cc.carrier},
		cc.st.WS, cc.st.Number, cc.st.Endpoint, cc.st.FwdFrom)
	ti := info
	e.Transfer = &ti
	p.d.Events.Publish(e)
}
