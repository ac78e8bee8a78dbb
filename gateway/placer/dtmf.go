package placer

import (
	"context"
	"strings"

	"github.com/callgate/callgate/gateway/calls"
)

// controlDTMF plays the API's digits (POST /v1/calls/{id}/dtmf) to the
// callee of a carrier call this node placed: Telnyx Call Control's
// send_dtmf on the callee's leg. Twilio has no such verb (501).
func (p *Placer) controlDTMF(ctx context.Context, cmd calls.Command) (calls.Reply, bool) {
	if cmd.Op != calls.OpDTMF {
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
	if !calls.ValidDTMF(cmd.Digits) {
		return calls.Reply{Status: 400, Error: "digits: 1 to 64 of 0-9, *, #, A-D, w"}, true
	}
	if _, over := p.seen.Load(cmd.CallID + "/ended"); over {
		return calls.Reply{Status: 409, Error: "the call has ended"}, true
	}
	if _, up := p.seen.Load(cmd.CallID + "/answered"); !up {
		return calls.Reply{Status: 409, Error: "the call is not answered yet"}, true
	}
	if cc.carrier != "telnyx" {
		return calls.Reply{Status: 501, Error: twilioNoDTMF}, true
	}
	status, why, err := p.sendDTMF(ctx, cc.st.WS, cc.integration, cc.ref, cmd.Digits)
	if status != 0 {
		return calls.Reply{Status: status, Error: why}, true
	}
	if err != nil {
		p.log.Warn("placer: digits refused by the carrier", "call_id", cc.st.ID, "carrier", cc.carrier, "err", err)
		return calls.Reply{Status: carrierFailStatus(err), Error: "the carrier refused the digits"}, true
	}
	e := p.event(calls.DTMF, Call{ID: cc.st.ID, From: cc.st.From, To: cc.st.To, AgentID: cc.st.Agent, Carrier: cc.carrier},
		cc.st.WS, cc.st.Number, cc.st.Endpoint, cc.st.FwdFrom)
	e.Digits, e.DTMFFrom, e.DTMFVia = strings.ReplaceAll(cmd.Digits, "w", ""), "agent", DTMFViaSendDTMF
	p.d.Events.Publish(e)
	return calls.Reply{Status: 202, Detail: map[string]string{"via": DTMFViaSendDTMF}}, true
}
