package placer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/callgate/callgate/gateway/webhook"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
)

// Paths under PublicURL where carriers report on placed calls.
const (
	CallbackPath       = "/webhooks/calls/"
	twilioStatusPath   = CallbackPath + "twilio/status"
	telnyxEventsPath   = CallbackPath + "telnyx/events"
	callTimeoutSeconds = 60
)

type twilioCaller interface {
	CreateCall(ctx context.Context, p twilio.CallParams) (twilio.CallResult, error)
}

type telnyxCaller interface {
	Dial(ctx context.Context, p telnyx.DialParams) (telnyx.DialResult, error)
	Transfer(ctx context.Context, p telnyx.TransferParams) error
	Hangup(ctx context.Context, callControlID, commandID string) error
}

// adapter returns the integration's carrier adapter without its metrics
// wrapper.
func (p *Placer) adapter(ctx context.Context, ws, integrationID string) (carrier.Carrier, error) {
	if p.d.Carriers == nil {
		return nil, fmt.Errorf("placer: no carrier integrations configured")
	}
	if integrationID == "" {
		return nil, fieldErr(400, "from", "Invalid request", "the number has no carrier integration to place calls with")
	}
	c, err := p.d.Carriers.Carrier(ctx, ws, integrationID)
	if err != nil {
		return nil, err
	}
	for {
		u, ok := c.(interface{ Unwrap() carrier.Carrier })
		if !ok {
			return c, nil
		}
		c = u.Unwrap()
	}
}

func (p *Placer) needPublicURL() error {
	if p.cfg.PublicURL == "" {
		return &Error{Status: 503, Title: "Carrier calls are off", Detail: "set public_url (CALLGATE_PUBLIC_URL): the carrier reports the call's progress there"}
	}
	return nil
}

// placeTwilio creates the call with TwiML that dials the agent over SIP
// once the callee answers; answered and completed come back as status
// callbacks, signed by Twilio, whose query names the call.
func (p *Placer) placeTwilio(ctx context.Context, pl *plan) error {
	if err := p.needPublicURL(); err != nil {
		return err
	}
	c, err := p.adapter(ctx, pl.ws, pl.number.IntegrationID)
	if err != nil {
		return err
	}
	tc, ok := c.(twilioCaller)
	if !ok {
		return fmt.Errorf("placer: integration %s cannot place Twilio calls", pl.number.IntegrationID)
	}
	hs := agentHeaders(pl)
	sh := make([]webhook.SIPHeader, len(hs))
	for i, h := range hs {
		sh[i] = webhook.SIPHeader{Name: h[0], Value: h[1]}
	}
	twiml := webhook.DialSIPTwiML(pl.endpoint.URI, sh, callTimeoutSeconds)
	res, err := tc.CreateCall(ctx, twilio.CallParams{From: pl.call.From, To: pl.call.To, Twiml: string(twiml),
		StatusCallback: p.cfg.PublicURL + twilioStatusPath + "?" + pl.state().query().Encode(),
		StatusEvents:   []string{"answered", "completed"}, Timeout: int(p.cfg.RingTimeout.Seconds())})
	if err != nil {
		return err
	}
	if res.Status == "ringing" {
		pl.call.Status = "ringing"
	}
	p.track(carrierCall{carrier: "twilio", integration: pl.number.IntegrationID, ref: res.SID, st: pl.state()})
	return nil
}

// placeTelnyx dials with Call Control; on call.answered the callee is
// transferred to the agent (callbacks.go). The call's state travels in
// client_state, which Telnyx echoes in every (signed) webhook.
func (p *Placer) placeTelnyx(ctx context.Context, pl *plan) error {
	if err := p.needPublicURL(); err != nil {
		return err
	}
	c, err := p.adapter(ctx, pl.ws, pl.number.IntegrationID)
	if err != nil {
		return err
	}
	tc, ok := c.(telnyxCaller)
	if !ok {
		return fmt.Errorf("placer: integration %s cannot place Telnyx calls", pl.number.IntegrationID)
	}
	st, _ := json.Marshal(pl.state())
	res, err := tc.Dial(ctx, telnyx.DialParams{From: pl.call.From, To: pl.call.To, WebhookURL: p.cfg.PublicURL + telnyxEventsPath,
		ClientState: base64.StdEncoding.EncodeToString(st), CommandID: pl.call.ID, TimeoutSecs: int(p.cfg.RingTimeout.Seconds())})
	if err == telnyx.ErrNoConnection {
		return fieldErr(400, "from", "Invalid request", "the number's Telnyx integration has no connection_id (a Call Control application is needed to place calls)")
	}
	if err == nil {
		p.track(carrierCall{carrier: "telnyx", integration: pl.number.IntegrationID, ref: res.CallControlID, st: pl.state()})
	}
	return err
}

// callState is what a carrier callback needs to know about its call.
type callState struct {
	ID       string `json:"c"`
	WS       string `json:"w"`
	Agent    string `json:"a"`
	Number   string `json:"n"`
	From     string `json:"f"`
	To       string `json:"t"`
	Endpoint string `json:"e,omitempty"`
	Region   string `json:"r,omitempty"`
	FwdFrom  string `json:"ff,omitempty"`
}

func (pl *plan) state() callState {
	return callState{ID: pl.call.ID, WS: pl.ws, Agent: pl.agent.ID, Number: pl.number.E164, From: pl.call.From, To: pl.call.To,
		Endpoint: pl.endpoint.URI, Region: pl.endpoint.Region, FwdFrom: pl.forwardedFrom}
}

func (s callState) query() url.Values {
	q := url.Values{"call": {s.ID}, "ws": {s.WS}, "agent": {s.Agent}, "number": {s.Number}, "from": {s.From}, "to": {s.To}}
	if s.FwdFrom != "" {
		q.Set("ff", s.FwdFrom)
	}
	return q
}

func stateFromQuery(q url.Values) callState {
	return callState{ID: q.Get("call"), WS: q.Get("ws"), Agent: q.Get("agent"), Number: q.Get("number"), From: q.Get("from"), To: q.Get("to"), FwdFrom: q.Get("ff")}
}
