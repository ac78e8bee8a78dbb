package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// CallControl acts on a Telnyx call after its webhook was answered.
type CallControl interface {
	// Transfer bridges a parked call to a SIP URI.
	Transfer(ctx context.Context, t Transfer) error
	// Reject refuses a parked incoming call.
	Reject(ctx context.Context, r Reject) error
}

// SIPHeader is a custom header given to the transferred leg.
type SIPHeader struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Transfer is one Call Control transfer.
type Transfer struct {
	IntegrationID string      // whose API key to use ("" for numbers without an integration)
	CallControlID string      // from call.initiated
	To            string      // sip:bot@host:port;transport=udp
	Headers       []SIPHeader // X-Callgate-* headers
	CommandID     string      // idempotency key: Telnyx ignores a repeated command_id for a call
}

// Reject is one Call Control reject.
type Reject struct {
	IntegrationID string
	CallControlID string
	Cause         string // CALL_REJECTED or USER_BUSY
	CommandID     string
}

// DefaultTelnyxAPIBase is the public Telnyx API.
const DefaultTelnyxAPIBase = "https://api.telnyx.com"

// TelnyxCallControl is CallControl over the Telnyx v2 REST API:
// POST {APIBase}/v2/calls/{call_control_id}/actions/transfer|reject with
// "Authorization: Bearer <API key>".
type TelnyxCallControl struct {
	// APIBase is scheme://host[:port] of the API (config
	// carriers.telnyx.api_base, env CALLGATE_TELNYX_API_BASE); empty means
	// DefaultTelnyxAPIBase.
	APIBase string
	// Client makes the requests; nil means http.DefaultClient. Each call is
	// bounded by the context the webhook handler gives it.
	Client *http.Client
	// APIKey returns the API key of an integration (decrypted). It is
	// called after the webhook was answered, never on the request path;
	// an integration id of "" asks for the key used with numbers that
	// have no integration.
	APIKey func(ctx context.Context, integrationID string) (string, error)
}

var _ CallControl = (*TelnyxCallControl)(nil)

// CallControlError is a refusal by the Call Control API.
type CallControlError struct {
	Action string // transfer, reject
	Status int    // HTTP status
	Detail string // Telnyx's errors[0].title/detail
}

func (e *CallControlError) Error() string {
	return fmt.Sprintf("telnyx call control %s: HTTP %d: %s", e.Action, e.Status, e.Detail)
}

type transferBody struct {
	To            string      `json:"to"`
	CustomHeaders []SIPHeader `json:"custom_headers,omitempty"`
	CommandID     string      `json:"command_id,omitempty"`
}

type rejectBody struct {
	Cause     string `json:"cause"`
	CommandID string `json:"command_id,omitempty"`
}

// Transfer implements CallControl.
func (c *TelnyxCallControl) Transfer(ctx context.Context, t Transfer) error {
	if t.To == "" {
		return errors.New("telnyx call control transfer: empty destination")
	}
	return c.action(ctx, t.IntegrationID, t.CallControlID, "transfer",
		transferBody{To: t.To, CustomHeaders: t.Headers, CommandID: t.CommandID})
}

// Reject implements CallControl.
func (c *TelnyxCallControl) Reject(ctx context.Context, r Reject) error {
	cause := r.Cause
	if cause == "" {
		cause = "CALL_REJECTED"
	}
	return c.action(ctx, r.IntegrationID, r.CallControlID, "reject", rejectBody{Cause: cause, CommandID: r.CommandID})
}

func (c *TelnyxCallControl) action(ctx context.Context, integrationID, callControlID, action string, body any) error {
	if callControlID == "" {
		return fmt.Errorf("telnyx call control %s: empty call_control_id", action)
	}
	if c.APIKey == nil {
		return fmt.Errorf("telnyx call control %s: no API key source configured", action)
	}
	key, err := c.APIKey(ctx, integrationID)
	if err != nil {
		return fmt.Errorf("telnyx call control %s: API key of integration %q: %w", action, integrationID, err)
	}
	if key == "" {
		return fmt.Errorf("telnyx call control %s: integration %q has no API key", action, integrationID)
	}
	base := c.APIBase
	if base == "" {
		base = DefaultTelnyxAPIBase
	}
	u := strings.TrimRight(base, "/") + "/v2/calls/" + url.PathEscape(callControlID) + "/actions/" + action
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("telnyx call control %s: %w", action, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("telnyx call control %s: %w", action, err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("telnyx call control %s: %w", action, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	return &CallControlError{Action: action, Status: resp.StatusCode, Detail: telnyxErrorDetail(rb, resp.Status)}
}

// telnyxErrorDetail reads {"errors":[{"code","title","detail"}]}.
func telnyxErrorDetail(body []byte, status string) string {
	var e struct {
		Errors []struct {
			Code   string `json:"code"`
			Title  string `json:"title"`
			Detail string `json:"detail"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		x := e.Errors[0]
		s := x.Title
		if x.Detail != "" {
			if s != "" {
				s += ": "
			}
			s += x.Detail
		}
		if x.Code != "" {
			s += " (code " + x.Code + ")"
		}
		if s != "" {
			return s
		}
	}
	return status
}
