package telnyx

import (
	"context"
	"errors"
	"net/url"

	"github.com/callgate/callgate/provisioning/carrier"
)

// DialParams is one Call Control dial (POST /v2/calls).
type DialParams struct {
	From, To string // E.164
	// ConnectionID is the Call Control application (connection) that
	// places the call; empty: the integration's connection_id.
	ConnectionID string
	WebhookURL   string // where Telnyx sends call.initiated/answered/hangup
	ClientState  string // base64, echoed in every webhook of the call
	CommandID    string // Telnyx ignores a repeated command_id
	TimeoutSecs  int    // ring timeout; 0: Telnyx's default (30)
}

// DialResult is the dialled call.
type DialResult struct {
	CallControlID string
	CallLegID     string
	CallSessionID string
}

// ErrNoConnection is a dial through an integration without a connection_id.
var ErrNoConnection = errors.New("telnyx: the integration has no connection_id (a Call Control application is needed to place calls)")

// ConnectionID is the integration's Call Control connection ("" when none).
func (c *Carrier) ConnectionID() string { return c.cfg.ConnectionID }

// Dial places an outbound call with Call Control.
func (c *Carrier) Dial(ctx context.Context, p DialParams) (DialResult, error) {
	conn := p.ConnectionID
	if conn == "" {
		conn = c.cfg.ConnectionID
	}
	if conn == "" {
		return DialResult{}, ErrNoConnection
	}
	body := map[string]any{"connection_id": conn, "to": p.To, "from": p.From}
	if p.WebhookURL != "" {
		body["webhook_url"] = p.WebhookURL
		body["webhook_url_method"] = "POST"
	}
	if p.ClientState != "" {
		body["client_state"] = p.ClientState
	}
	if p.CommandID != "" {
		body["command_id"] = p.CommandID
	}
	if p.TimeoutSecs > 0 {
		body["timeout_secs"] = p.TimeoutSecs
	}
	var out struct {
		Data struct {
			CallControlID string `json:"call_control_id"`
			CallLegID     string `json:"call_leg_id"`
			CallSessionID string `json:"call_session_id"`
		} `json:"data"`
	}
	if err := c.do(ctx, "dial", "POST", "/v2/calls", nil, body, &out, kinds{}); err != nil {
		return DialResult{}, err
	}
	if out.Data.CallControlID == "" {
		return DialResult{}, &carrier.Error{Carrier: Name, Op: "dial", Kind: carrier.ErrUnavailable, Detail: "answer without call_control_id"}
	}
	return DialResult{CallControlID: out.Data.CallControlID, CallLegID: out.Data.CallLegID, CallSessionID: out.Data.CallSessionID}, nil
}

// SIPHeader is a custom SIP header given to a transferred leg.
type SIPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// TransferParams is one Call Control transfer
// (POST /v2/calls/{call_control_id}/actions/transfer).
type TransferParams struct {
	CallControlID string
	To            string // sip:agent@host;transport=udp
	From          string // caller ID shown to the agent; empty: the call's
	Headers       []SIPHeader
	CommandID     string
}

// Transfer bridges an answered call to a SIP URI.
func (c *Carrier) Transfer(ctx context.Context, p TransferParams) error {
	if p.CallControlID == "" || p.To == "" {
		return &carrier.Error{Carrier: Name, Op: "transfer", Kind: carrier.ErrInvalidQuery, Detail: "call_control_id and to are required"}
	}
	body := map[string]any{"to": p.To}
	if p.From != "" {
		body["from"] = p.From
	}
	if len(p.Headers) > 0 {
		body["custom_headers"] = p.Headers
	}
	if p.CommandID != "" {
		body["command_id"] = p.CommandID
	}
	return c.do(ctx, "transfer", "POST", "/v2/calls/"+url.PathEscape(p.CallControlID)+"/actions/transfer", nil, body, nil, kinds{})
}

// Hangup ends a call (POST /v2/calls/{call_control_id}/actions/hangup).
func (c *Carrier) Hangup(ctx context.Context, callControlID, commandID string) error {
	if callControlID == "" {
		return &carrier.Error{Carrier: Name, Op: "hangup", Kind: carrier.ErrInvalidQuery, Detail: "call_control_id is required"}
	}
	body := map[string]any{}
	if commandID != "" {
		body["command_id"] = commandID
	}
	return c.do(ctx, "hangup", "POST", "/v2/calls/"+url.PathEscape(callControlID)+"/actions/hangup", nil, body, nil, kinds{})
}

// SendDTMF plays digits into a call (POST
// /v2/calls/{call_control_id}/actions/send_dtmf): 0-9, A-D, * and #, with
// w a 0.5 s pause and W a 1 s pause, as callgate's own digit syntax.
// A call that has ended is ErrInvalidQuery (Telnyx's 422 code 90018).
func (c *Carrier) SendDTMF(ctx context.Context, callControlID, digits, commandID string) error {
	if callControlID == "" || digits == "" {
		return &carrier.Error{Carrier: Name, Op: "send dtmf", Kind: carrier.ErrInvalidQuery, Detail: "call_control_id and digits are required"}
	}
	body := map[string]any{"digits": digits}
	if commandID != "" {
		body["command_id"] = commandID
	}
	return c.do(ctx, "send dtmf", "POST", "/v2/calls/"+url.PathEscape(callControlID)+"/actions/send_dtmf", nil, body, nil, kinds{})
}
