package placer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
)

// Transfers and digits for calls that reached an agent through a carrier's
// webhook (issue 18). No node holds such a call: the carrier bridges the
// caller to the agent itself (Twilio <Dial><Sip>, Telnyx Call Control
// transfer). The API node that got the request asks here after the
// ControlBus found no holder, with what the call's history says (so one
// node, the one that took the request, asks the carrier, once): Twilio
// redirects the caller's (parent) call to <Dial><Number>, Telnyx Call
// Control transfers the caller's leg or plays digits on it (send_dtmf).

// Webhook call sources (gateway/webhook SourceTwilio, SourceTelnyx).
const (
	sourceTwilioWebhook = "twilio_webhook"
	sourceTelnyxWebhook = "telnyx_webhook"
)

// WebhookCall is a webhook call as its history records it.
type WebhookCall struct {
	ID        string
	Workspace string
	Source    string // twilio_webhook or telnyx_webhook
	Number    string // the called gateway number (E.164): the new leg's caller ID
	From, To  string
	Agent     string
	Region    string
	Endpoint  string
	Origin    string
	// CarrierCallID is the carrier's handle on the caller's call: Twilio's
	// CallSid, Telnyx's call_control_id ("" for TeXML calls).
	CarrierCallID   string
	Answered, Ended bool
}

// IsWebhookCall reports whether a call of this source reached its agent
// through a carrier's webhook (and so is controlled by ControlWebhookCall).
func IsWebhookCall(source string) bool {
	return source == sourceTwilioWebhook || source == sourceTelnyxWebhook
}

// webhookCallTimeout bounds the carrier request of one command.
const webhookCallTimeout = 10 * time.Second

// ControlWebhookCall carries out cmd (transfer or dtmf) on webhook call wc
// with the carrier's own verb and answers like the node that holds a call
// would (202, 400, 409, 422, 501, 502).
func (p *Placer) ControlWebhookCall(ctx context.Context, wc WebhookCall, cmd calls.Command) calls.Reply {
	if p == nil {
		return calls.Reply{Status: 503, Error: "this gateway has no carrier call control"}
	}
	if wc.Workspace != cmd.Workspace || !IsWebhookCall(wc.Source) {
		return calls.Reply{Status: 404, Error: "no running call with this id in the workspace"}
	}
	if cmd.Op == calls.OpDTMF && !calls.ValidDTMF(cmd.Digits) {
		return calls.Reply{Status: 400, Error: "digits: 1 to 64 of 0-9, *, #, A-D, w"}
	}
	if wc.Ended {
		return calls.Reply{Status: 409, Error: "the call has ended"}
	}
	carrierName := "twilio"
	if wc.Source == sourceTelnyxWebhook {
		carrierName = "telnyx"
	}
	if wc.CarrierCallID == "" {
		if carrierName == "telnyx" {
			return calls.Reply{Status: 501, Error: "Telnyx TeXML calls cannot be controlled: callgate does not follow their progress; use a Call Control application"}
		}
		return calls.Reply{Status: 501, Error: "the call's carrier id was not recorded"}
	}
	if !wc.Answered {
		return calls.Reply{Status: 409, Error: "the call is not answered yet"}
	}
	switch cmd.Op {
	case calls.OpTransfer:
		return p.transferWebhookCall(ctx, wc, carrierName, cmd)
	case calls.OpDTMF:
		return p.dtmfWebhookCall(ctx, wc, carrierName, cmd)
	}
	return calls.Reply{Status: 400, Error: "unknown operation " + cmd.Op}
}

// integrationOf is the carrier integration of the call's number, when the
// number is still the workspace's.
func (p *Placer) integrationOf(wc WebhookCall) (string, *calls.Reply) {
	snap := p.d.Table.Load()
	if snap == nil {
		return "", &calls.Reply{Status: 503, Error: "routing table not loaded yet"}
	}
	rt, ok := snap.Lookup(wc.Number)
	if !ok || rt.Number.Workspace != wc.Workspace {
		return "", &calls.Reply{Status: 409, Error: "the call's number is no longer in the workspace"}
	}
	if rt.Number.IntegrationID == "" {
		return "", &calls.Reply{Status: 501, Error: "the call's number has no carrier integration to act with"}
	}
	return rt.Number.IntegrationID, nil
}

func (p *Placer) transferWebhookCall(ctx context.Context, wc WebhookCall, carrierName string, cmd calls.Command) calls.Reply {
	if cmd.Mode == "bridge" {
		return calls.Reply{Status: 501, Error: "mode: bridge transfers are not available; use blind"}
	}
	dest, bad := phoneTarget(cmd.To, carrierName)
	if bad != nil {
		return *bad
	}
	integration, bad := p.integrationOf(wc)
	if bad != nil {
		return *bad
	}
	// Two requests on this node for one call: one reaches the carrier.
	if _, busy := p.webhookXfers.LoadOrStore(wc.ID, struct{}{}); busy {
		return calls.Reply{Status: 409, Error: "a transfer of this call is still running"}
	}
	defer p.webhookXfers.Delete(wc.ID)
	info := calls.TransferInfo{To: "tel:" + dest, Mode: "carrier_verb", Via: "api", State: calls.TransferTrying, Carrier: carrierName}
	if status, why := p.transferPolicy(wc.Workspace, wc.Number, dest); status != 0 {
		info.State = calls.TransferRefused
		p.publishWebhookTransfer(wc, carrierName, info)
		return calls.Reply{Status: status, Error: why, Detail: map[string]string{"state": info.State}}
	}
	ctx, cancel := context.WithTimeout(ctx, webhookCallTimeout)
	defer cancel()
	vc := verbCall{carrier: carrierName, integration: integration, ws: wc.Workspace, ref: wc.CarrierCallID, number: wc.Number,
		commandID: "callgate-xfer-" + commandSuffix()}
	status, why, err := p.carrierTransfer(ctx, vc, dest, func() { p.publishWebhookTransfer(wc, carrierName, info) })
	if status != 0 {
		return calls.Reply{Status: status, Error: why}
	}
	if err != nil {
		info.State = calls.TransferFailed
		p.publishWebhookTransfer(wc, carrierName, info)
		p.log.Warn("placer: webhook call transfer refused by the carrier", "call_id", wc.ID, "carrier", carrierName, "err", err)
		return calls.Reply{Status: carrierFailStatus(err), Error: "the carrier refused the transfer", Detail: map[string]string{"state": info.State}}
	}
	// Twilio: the redirected parent call leaves its <Dial><Sip>, so the
	// agent's leg ends (its completed callback ends the call's record).
	// Telnyx: the caller's leg is bridged to the new party and the agent's
	// leg hung up. The new leg's outcome is not followed: "trying" stays.
	p.log.Info("placer: webhook call transferred", "call_id", wc.ID, "carrier", carrierName, "to", phone.Mask(dest))
	return calls.Reply{Status: 202, Detail: map[string]string{"state": calls.TransferTrying, "mode": "blind", "to": info.To}}
}

// dtmfWebhookCall plays digits to the caller: Telnyx Call Control's
// send_dtmf on the caller's leg (its w is the same 0.5 s pause). Twilio
// has no verb that plays digits into a live call and keeps its <Dial> to
// the agent up (a redirect to <Play digits> would end it): 501.
func (p *Placer) dtmfWebhookCall(ctx context.Context, wc WebhookCall, carrierName string, cmd calls.Command) calls.Reply {
	if carrierName != "telnyx" {
		return calls.Reply{Status: 501, Error: twilioNoDTMF}
	}
	integration, bad := p.integrationOf(wc)
	if bad != nil {
		return *bad
	}
	ctx, cancel := context.WithTimeout(ctx, webhookCallTimeout)
	defer cancel()
	status, why, err := p.sendDTMF(ctx, wc.Workspace, integration, wc.CarrierCallID, cmd.Digits)
	if status != 0 {
		return calls.Reply{Status: status, Error: why}
	}
	if err != nil {
		p.log.Warn("placer: digits refused by the carrier", "call_id", wc.ID, "carrier", carrierName, "err", err)
		return calls.Reply{Status: carrierFailStatus(err), Error: "the carrier refused the digits"}
	}
	p.d.Events.Publish(calls.Event{Kind: calls.DTMF, CallID: wc.ID, Time: time.Now(), Number: wc.Number, Workspace: wc.Workspace,
		Agent: wc.Agent, Region: wc.Region, Carrier: carrierName, Origin: wc.Origin, Source: wc.Source, Direction: calls.Inbound,
		From: wc.From, To: wc.To, Digits: strings.ReplaceAll(cmd.Digits, "w", ""), DTMFFrom: "agent", DTMFVia: DTMFViaSendDTMF})
	return calls.Reply{Status: 202, Detail: map[string]string{"via": DTMFViaSendDTMF}}
}

// DTMFViaSendDTMF is the dtmf_via of digits played by Telnyx Call
// Control's send_dtmf.
const DTMFViaSendDTMF = "send_dtmf"

// twilioNoDTMF is why digits cannot reach a Twilio call.
const twilioNoDTMF = "Twilio has no verb that plays digits into a live call while its <Dial> to the agent stays up; digits to Twilio calls are not available"

type telnyxDTMFSender interface {
	SendDTMF(ctx context.Context, callControlID, digits, commandID string) error
}

// sendDTMF plays digits on a Telnyx call leg (send_dtmf). A status and
// reason come back when the carrier could not be asked; err is its
// refusal.
func (p *Placer) sendDTMF(ctx context.Context, ws, integration, callControlID, digits string) (int, string, error) {
	c, err := p.adapter(ctx, ws, integration)
	if err != nil {
		return 502, "the call's carrier integration is unavailable", nil
	}
	tc, ok := c.(telnyxDTMFSender)
	if !ok {
		return 501, "this integration cannot send digits", nil
	}
	return 0, "", tc.SendDTMF(ctx, callControlID, digits, "callgate-dtmf-"+commandSuffix())
}

// commandSuffix makes a Telnyx command_id unique per API request (Telnyx
// ignores a repeated command_id on a call, so a second transfer or the
// same digits again must not reuse one).
func commandSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (p *Placer) publishWebhookTransfer(wc WebhookCall, carrierName string, info calls.TransferInfo) {
	ti := info
	p.d.Events.Publish(calls.Event{Kind: calls.TransferKind, CallID: wc.ID, Time: time.Now(), Number: wc.Number,
		Workspace: wc.Workspace, Agent: wc.Agent, Region: wc.Region, Carrier: carrierName, Origin: wc.Origin, Source: wc.Source,
		Direction: calls.Inbound, From: wc.From, To: wc.To, Endpoint: wc.Endpoint, Transfer: &ti})
}
