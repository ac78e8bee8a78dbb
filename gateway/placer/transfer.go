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
	dest := strings.TrimPrefix(strings.TrimSpace(cmd.To), "tel:")
	if !phone.IsE164(dest) {
		return calls.Reply{Status: 400, Error: "to: a carrier call (" + cc.carrier + ") is transferred to a phone number only: tel:+E.164 or +E.164"}, true
	}
	if _, _, ok := phone.Classify(dest); !ok {
		return calls.Reply{Status: 400, Error: "to: not a valid E.164 number"}, true
	}
	info := calls.TransferInfo{To: "tel:" + dest, Mode: "carrier_verb", Via: "api", State: calls.TransferTrying, Carrier: cc.carrier}
	refuse := func(status int, why string) (calls.Reply, bool) {
		info.State = calls.TransferRefused
		p.publishTransfer(cc, info)
		return calls.Reply{Status: status, Error: why, Detail: map[string]string{"state": info.State}}, true
	}
	var ws *routing.Workspace
	if snap := p.d.Table.Load(); snap != nil {
		ws = snap.Workspace(cc.st.WS)
	}
	if rule, ok := routing.CheckDestination(ws, cc.st.Number, dest); !ok {
		return refuse(422, routing.RulePhrase(rule)+" ("+rule+")")
	}
	if p.d.Usage != nil {
		if err := p.d.Usage.Authorize(cc.st.WS, dest); err != nil {
			return refuse(422, "insufficient credits")
		}
	}
	c, err := p.adapter(ctx, cc.st.WS, cc.integration)
	if err != nil {
		return calls.Reply{Status: 502, Error: "the call's carrier integration is unavailable"}, true
	}
	switch cc.carrier {
	case "twilio":
		tc, ok := c.(twilioRedirecter)
		if !ok {
			return calls.Reply{Status: 501, Error: "this integration cannot redirect calls"}, true
		}
		twiml := `<?xml version="1.0" encoding="UTF-8"?><Response><Dial callerId="` + html.EscapeString(cc.st.Number) + `"><Number>` +
			html.EscapeString(dest) + `</Number></Dial></Response>`
		p.publishTransfer(cc, info)
		_, err = tc.RedirectCall(ctx, cc.ref, twiml)
	case "telnyx":
		tc, ok := c.(telnyxCaller)
		if !ok {
			return calls.Reply{Status: 501, Error: "this integration cannot transfer calls"}, true
		}
		p.publishTransfer(cc, info)
		err = tc.Transfer(ctx, telnyx.TransferParams{CallControlID: cc.ref, To: dest, From: cc.st.Number,
			CommandID: cc.st.ID + "-xfer-" + dest})
	default:
		return calls.Reply{Status: 501, Error: "transfers of " + cc.carrier + " calls are not available"}, true
	}
	if err != nil {
		info.State = calls.TransferFailed
		p.publishTransfer(cc, info)
		status := 502
		if errors.Is(err, carrier.ErrInvalidQuery) || errors.Is(err, carrier.ErrNotFound) {
			status = 409 // Twilio: the call is over (21220) or gone
		}
		p.log.Warn("placer: transfer refused by the carrier", "call_id", cc.st.ID, "carrier", cc.carrier, "err", err)
		return calls.Reply{Status: status, Error: "the carrier refused the transfer", Detail: map[string]string{"state": info.State}}, true
	}
	// Twilio runs the <Dial> on the callee's leg: the agent's leg ends and
	// the call's completed callback reports the end. The new leg's own
	// outcome is not followed (no <Dial action> callback yet): the
	// transfer stays "trying".
	p.log.Info("placer: call transferred", "call_id", cc.st.ID, "carrier", cc.carrier, "to", phone.Mask(dest))
	return calls.Reply{Status: 202, Detail: map[string]string{"state": calls.TransferTrying, "mode": "blind", "to": info.To}}, true
}

func (p *Placer) publishTransfer(cc carrierCall, info calls.TransferInfo) {
	e := p.event(calls.TransferKind, Call{ID: cc.st.ID, From: cc.st.From, To: cc.st.To, AgentID: cc.st.Agent, Carrier: cc.carrier},
		cc.st.WS, cc.st.Number, cc.st.Endpoint, cc.st.FwdFrom)
	ti := info
	e.Transfer = &ti
	p.d.Events.Publish(e)
}
