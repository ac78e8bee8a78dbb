package telnyxfake

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"
)

// DialledCall is a call placed with Call Control (POST /v2/calls).
type DialledCall struct {
	CallControlID string
	CallLegID     string
	CallSessionID string
	ConnectionID  string
	From, To      string
	WebhookURL    string
	ClientState   string
	CommandID     string
	State         string // parked (dialling, or incoming before a transfer), answered, bridging, hangup
	// Direction is "outgoing" for dialled calls, "incoming" for calls
	// made with Incoming.
	Direction string
	// HungUp is set by a hangup action (call.hangup is then sent).
	HungUp bool
	// Transfers are the destinations of transfer actions, in order.
	Transfers []TransferAction
	// DTMF are the send_dtmf actions, in order.
	DTMF []DTMFAction
}

// DTMFAction is one POST /v2/calls/{id}/actions/send_dtmf.
type DTMFAction struct {
	Digits         string
	DurationMillis int // 0: not given (Telnyx's default 250)
	CommandID      string
}

// TransferAction is one POST /v2/calls/{id}/actions/transfer.
type TransferAction struct {
	To            string
	From          string
	CustomHeaders []map[string]string
	CommandID     string
}

// SetWebhookKey sets the Ed25519 key the fake signs call webhooks with
// (telnyx-signature-ed25519 over "timestamp|body").
func (s *Server) SetWebhookKey(k ed25519.PrivateKey) {
	s.mu.Lock()
	s.webhookKey = k
	s.mu.Unlock()
}

// Dialled returns the calls placed so far, oldest first.
func (s *Server) Dialled() []DialledCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]DialledCall, 0, len(s.callOrder))
	for _, id := range s.callOrder {
		c := *s.calls[id]
		c.Transfers = append([]TransferAction(nil), c.Transfers...)
		c.DTMF = append([]DTMFAction(nil), c.DTMF...)
		out = append(out, c)
	}
	return out
}

func validE164(s string) bool {
	if !strings.HasPrefix(s, "+") {
		return false
	}
	pn, err := phonenumbers.Parse(s, "")
	return err == nil && phonenumbers.IsValidNumber(pn)
}

func invalidParam(w http.ResponseWriter, pointer, title, detail string) {
	writeError(w, http.StatusUnprocessableEntity, apiError{Code: "10015", Title: title, Detail: detail,
		Source: map[string]string{"pointer": pointer}})
}

// dial answers POST /v2/calls as Call Control does: connection_id, to and
// from required and valid (422 with the pointer at fault), then 200 with
// the new call's ids.
func (s *Server) dial(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ConnectionID string `json:"connection_id"`
		To           string `json:"to"`
		From         string `json:"from"`
		WebhookURL   string `json:"webhook_url"`
		ClientState  string `json:"client_state"`
		CommandID    string `json:"command_id"`
		TimeoutSecs  *int   `json:"timeout_secs"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		badParam(w, "body", "The request body is not valid JSON.")
		return
	}
	switch {
	case in.ConnectionID == "":
		invalidParam(w, "/connection_id", "Missing required parameter", "The 'connection_id' parameter is required.")
		return
	case in.To == "":
		invalidParam(w, "/to", "Missing required parameter", "The 'to' parameter is required.")
		return
	case in.From == "":
		invalidParam(w, "/from", "Missing required parameter", "The 'from' parameter is required.")
		return
	case !strings.HasPrefix(in.To, "sip:") && !validE164(in.To):
		invalidParam(w, "/to", "Invalid value for to", "The 'to' parameter must be a valid E.164 number or SIP URI.")
		return
	case !validE164(in.From):
		invalidParam(w, "/from", "Invalid value for from", "The 'from' parameter must be a valid E.164 number.")
		return
	case in.TimeoutSecs != nil && (*in.TimeoutSecs < 5 || *in.TimeoutSecs > 600):
		invalidParam(w, "/timeout_secs", "Invalid value for timeout_secs", "Must be between 5 and 600.")
		return
	}
	if in.ClientState != "" {
		if _, err := base64.StdEncoding.DecodeString(in.ClientState); err != nil {
			invalidParam(w, "/client_state", "Invalid value for client_state", "client_state must be Base64 encoded.")
			return
		}
	}
	c := &DialledCall{CallControlID: "v3:" + strings.ReplaceAll(newUUID(), "-", ""), CallLegID: newUUID(), CallSessionID: newUUID(),
		ConnectionID: in.ConnectionID, From: in.From, To: in.To, WebhookURL: in.WebhookURL, ClientState: in.ClientState,
		CommandID: in.CommandID, State: "parked", Direction: "outgoing"}
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]*DialledCall{}
	}
	s.calls[c.CallControlID] = c
	s.callOrder = append(s.callOrder, c.CallControlID)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]any{
		"record_type": "call", "call_control_id": c.CallControlID, "call_leg_id": c.CallLegID,
		"call_session_id": c.CallSessionID, "is_alive": false, "client_state": nullable(c.ClientState),
		"call_duration": nil, "start_time": nil, "end_time": nil,
	}})
}

// transfer answers POST /v2/calls/{call_control_id}/actions/transfer: the
// call must exist (404) and be answered (422 code 90018 otherwise).
func (s *Server) transfer(w http.ResponseWriter, r *http.Request) {
	var in struct {
		To            string              `json:"to"`
		From          string              `json:"from"`
		CustomHeaders []map[string]string `json:"custom_headers"`
		CommandID     string              `json:"command_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		badParam(w, "body", "The request body is not valid JSON.")
		return
	}
	if in.To == "" {
		invalidParam(w, "/to", "Missing required parameter", "The 'to' parameter is required.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[r.PathValue("id")]
	if c == nil {
		notFound(w, r)
		return
	}
	// An incoming call is transferred while parked (that answers it);
	// a dialled one once answered.
	parkedIncoming := c.State == "parked" && c.Direction == "incoming"
	if c.State != "answered" && c.State != "bridging" && !parkedIncoming {
		writeError(w, http.StatusUnprocessableEntity, apiError{Code: "90018", Title: "Call has already ended",
			Detail: "This call is no longer active and can't receive commands."})
		return
	}
	for _, t := range c.Transfers {
		if in.CommandID != "" && t.CommandID == in.CommandID {
			writeJSON(w, http.StatusOK, map[string]any{"data": map[string]string{"result": "ok"}})
			return
		}
	}
	c.Transfers = append(c.Transfers, TransferAction{To: in.To, From: in.From, CustomHeaders: in.CustomHeaders, CommandID: in.CommandID})
	c.State = "bridging"
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]string{"result": "ok"}})
}

// Answer marks a dialled call answered and sends its call.answered
// webhook; Hangup ends it with call.hangup. Both return the webhook's
// HTTP status.
func (s *Server) Answer(ctx context.Context, callControlID string) (int, error) {
	return s.event(ctx, callControlID, "call.answered", "answered", "")
}

// Hangup ends a call (hangup_cause normal_clearing) and sends call.hangup.
func (s *Server) Hangup(ctx context.Context, callControlID string) (int, error) {
	return s.event(ctx, callControlID, "call.hangup", "hangup", "normal_clearing")
}

func (s *Server) event(ctx context.Context, id, eventType, state, cause string) (int, error) {
	s.mu.Lock()
	c := s.calls[id]
	key := s.webhookKey
	if c == nil {
		s.mu.Unlock()
		return 0, fmt.Errorf("telnyxfake: no call %s", id)
	}
	c.State = state
	payload := map[string]any{
		"call_control_id": c.CallControlID, "call_leg_id": c.CallLegID, "call_session_id": c.CallSessionID,
		"connection_id": c.ConnectionID, "from": c.From, "to": c.To, "direction": c.Direction,
		"state": state, "client_state": nullable(c.ClientState),
	}
	if cause != "" {
		payload["hangup_cause"], payload["hangup_source"], payload["sip_hangup_cause"] = cause, "callee", "200"
	}
	hook := c.WebhookURL
	s.mu.Unlock()
	if hook == "" {
		return 0, nil
	}
	body, _ := json.Marshal(map[string]any{
		"data": map[string]any{"record_type": "event", "event_type": eventType, "id": newUUID(),
			"occurred_at": time.Now().UTC().Format(time.RFC3339Nano), "payload": payload},
		"meta": map[string]any{"attempt": 1, "delivered_to": hook},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != nil {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		req.Header.Set("telnyx-timestamp", ts)
		req.Header.Set("telnyx-signature-ed25519", base64.StdEncoding.EncodeToString(ed25519.Sign(key, []byte(ts+"|"+string(body)))))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// hangup answers POST /v2/calls/{call_control_id}/actions/hangup: 404 for
// an unknown call, 422 (90018) for one already ended; then 200, and the
// call.hangup webhook follows (hangup_source caller: callgate hung up).
func (s *Server) hangup(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	c := s.calls[id]
	if c == nil {
		s.mu.Unlock()
		notFound(w, r)
		return
	}
	if c.State == "hangup" {
		s.mu.Unlock()
		writeError(w, http.StatusUnprocessableEntity, apiError{Code: "90018", Title: "Call has already ended",
			Detail: "This call is no longer active and can't receive commands."})
		return
	}
	c.HungUp = true
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]string{"result": "ok"}})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = s.event(ctx, id, "call.hangup", "hangup", "normal_clearing")
	}()
}

// Incoming makes a call from a caller to one of the account's numbers, as
// Telnyx does when a call reaches a Call Control connection, and sends its
// signed call.initiated (direction incoming, state parked) to webhookURL.
// It returns the call and the webhook's HTTP status.
func (s *Server) Incoming(ctx context.Context, from, to, connectionID, webhookURL string) (DialledCall, int, error) {
	c := &DialledCall{CallControlID: "v3:" + strings.ReplaceAll(newUUID(), "-", ""), CallLegID: newUUID(), CallSessionID: newUUID(),
		ConnectionID: connectionID, From: from, To: to, WebhookURL: webhookURL, State: "parked", Direction: "incoming"}
	s.mu.Lock()
	if s.calls == nil {
		s.calls = map[string]*DialledCall{}
	}
	s.calls[c.CallControlID] = c
	s.callOrder = append(s.callOrder, c.CallControlID)
	// A copy taken now: once call.initiated is out, the gateway's
	// actions (transfer, hangup) change the call under s.mu.
	in := *c
	s.mu.Unlock()
	status, err := s.event(ctx, in.CallControlID, "call.initiated", "parked", "")
	return in, status, err
}

// dtmfDigits are the characters send_dtmf takes: digits, A-D, * and #,
// and the pauses w (0.5 s) and W (1 s).
const dtmfDigits = "0123456789ABCD*#wW"

// sendDTMF answers POST /v2/calls/{call_control_id}/actions/send_dtmf as
// Call Control does: digits required and of 0-9, A-D, *, #, w, W (422
// pointing at /digits), duration_millis 100..500; 404 for an unknown
// call, 422 (90018) for one that is not up (ended, or not answered yet);
// then 200 {"data":{"result":"ok"}}. A repeated command_id is not played
// twice.
func (s *Server) sendDTMF(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Digits         string `json:"digits"`
		DurationMillis *int   `json:"duration_millis"`
		ClientState    string `json:"client_state"`
		CommandID      string `json:"command_id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		badParam(w, "body", "The request body is not valid JSON.")
		return
	}
	switch {
	case in.Digits == "":
		invalidParam(w, "/digits", "Missing required parameter", "The 'digits' parameter is required.")
		return
	case strings.Trim(in.Digits, dtmfDigits) != "":
		invalidParam(w, "/digits", "Invalid value for digits", "Valid digits are 0-9, A-D, *, and #. Pauses can be added using w (0.5s) and W (1s).")
		return
	case in.DurationMillis != nil && (*in.DurationMillis < 100 || *in.DurationMillis > 500):
		invalidParam(w, "/duration_millis", "Invalid value for duration_millis", "Must be between 100 and 500.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[r.PathValue("id")]
	if c == nil {
		notFound(w, r)
		return
	}
	if c.State != "answered" && c.State != "bridging" {
		writeError(w, http.StatusUnprocessableEntity, apiError{Code: "90018", Title: "Call has already ended",
			Detail: "This call is no longer active and can't receive commands."})
		return
	}
	for _, d := range c.DTMF {
		if in.CommandID != "" && d.CommandID == in.CommandID {
			writeJSON(w, http.StatusOK, map[string]any{"data": map[string]string{"result": "ok"}})
			return
		}
	}
	a := DTMFAction{Digits: in.Digits, CommandID: in.CommandID}
	if in.DurationMillis != nil {
		a.DurationMillis = *in.DurationMillis
	}
	c.DTMF = append(c.DTMF, a)
	writeJSON(w, http.StatusOK, map[string]any{"data": map[string]string{"result": "ok"}})
}
