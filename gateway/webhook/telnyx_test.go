package webhook

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

func TestTelnyxTeXML(t *testing.T) {
	rg := newRig(t)
	events := subscribe(t, rg.nc, "callgate.calls.>")
	priv := telnyxTestKey(t)
	form := url.Values{"CallSid": {"v3:texml-1"}, "AccountSid": {"acct"}, "From": {"+14155550100"}, "To": {numTelnyx}}
	body := []byte(form.Encode())
	w := rg.do(telnyxRequest(t, PathTelnyxTeXML, "application/x-www-form-urlencoded", body, testNow, priv))
	want := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<Response><Dial timeout="30" action="https://gw.example.com/webhooks/telnyx/texml?attempt=1" method="POST">` +
		`<Sip>sip:bot@127.0.0.2:5090;transport=udp?X-Callgate-Number=%2B13125550100&amp;X-Callgate-Agent=a1&amp;X-Callgate-Region=eu-west</Sip>` +
		`</Dial></Response>`
	if w.Code != 200 || w.Body.String() != want {
		t.Fatalf("%d\n got %s\nwant %s", w.Code, w.Body, want)
	}
	e := decodeEvent(t, recv(t, events).Data)
	if e.Kind != calls.Started || e.Carrier != "telnyx" || e.Source != SourceTelnyx || e.CallID != "v3:texml-1" {
		t.Errorf("event %+v", e)
	}
	if e.CarrierCallID != "" { // TeXML calls are not followed, so not controlled (gateway/placer webhookcalls.go)
		t.Errorf("TeXML started event carries carrier_call_id %q", e.CarrierCallID)
	}

	tests := []struct {
		name   string
		ts     time.Time
		body   []byte
		code   int
		result string
	}{
		{"stale", testNow.Add(-6 * time.Minute), body, 403, ResultStaleTimestamp},
		{"future", testNow.Add(6 * time.Minute), body, 403, ResultStaleTimestamp},
		{"4 minutes old", testNow.Add(-4 * time.Minute), body, 200, ResultOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := rg.do(telnyxRequest(t, PathTelnyxTeXML, "application/x-www-form-urlencoded", tc.body, tc.ts, priv))
			if w.Code != tc.code {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
		})
	}
	// A signature by another key, and none at all.
	r := telnyxRequest(t, PathTelnyxTeXML, "application/x-www-form-urlencoded", body, testNow, priv)
	r.Header.Set("Telnyx-Signature-Ed25519", "MGVTDtGuYLW5kjFwnqNofgeDUyzsF7r4H1L6jz1lD6palyxYTP6fEPDmGoaV769eef2agFBoHmAp47aBRgOyAw==")
	if w := rg.do(r); w.Code != 403 || w.Body.Len() != 0 {
		t.Errorf("wrong signature: %d %q", w.Code, w.Body)
	}
	if w := rg.do(telnyxRequest(t, PathTelnyxTeXML, "application/x-www-form-urlencoded", body, testNow, nil)); w.Code != 403 {
		t.Errorf("unsigned: %d", w.Code)
	}
	if v := testutil.ToFloat64(rg.h.Metrics().Requests.WithLabelValues("telnyx", "texml", ResultStaleTimestamp)); v != 2 {
		t.Errorf("stale counted %v", v)
	}
}

func callEvent(eventType, to, direction string, sipHeaders ...nameValue) []byte {
	type payload struct {
		CallControlID string      `json:"call_control_id"`
		CallLegID     string      `json:"call_leg_id"`
		CallSessionID string      `json:"call_session_id"`
		ConnectionID  string      `json:"connection_id"`
		From          string      `json:"from"`
		To            string      `json:"to"`
		Direction     string      `json:"direction"`
		State         string      `json:"state"`
		SIPHeaders    []nameValue `json:"sip_headers,omitempty"`
		HangupCause   string      `json:"hangup_cause,omitempty"`
		SIPHangup     string      `json:"sip_hangup_cause,omitempty"`
	}
	p := payload{CallControlID: "v3:abc-123", CallLegID: "leg-1", CallSessionID: "sess-1", ConnectionID: "conn-1",
		From: "+14155550100", To: to, Direction: direction, State: "parked", SIPHeaders: sipHeaders}
	if eventType == "call.hangup" {
		p.HangupCause, p.SIPHangup, p.State = "normal_clearing", "200", "hangup"
	}
	b, _ := json.Marshal(map[string]any{
		"data": map[string]any{"record_type": "event", "event_type": eventType, "id": "ev-1",
			"occurred_at": "2026-11-27T04:00:00.000000Z", "payload": p},
		"meta": map[string]any{"attempt": 1, "delivered_to": "https://gw.example.com/webhooks/telnyx/call-control"},
	})
	return b
}

func TestTelnyxCallControlTransfers(t *testing.T) {
	rg := newRig(t)
	events := subscribe(t, rg.nc, "callgate.calls.>")
	priv := telnyxTestKey(t)
	div := nameValue{Name: "Diversion", Value: `<sip:+16015550124@carrier.example;user=phone>;reason=unconditional;counter=1`}
	w := rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json",
		callEvent("call.initiated", numTelnyx, "incoming", div), testNow, priv))
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	got := rg.telx.next(t)
	if got.Method != "POST" || got.Path != "/v2/calls/v3:abc-123/actions/transfer" ||
		got.Auth != "Bearer "+testTelnyxAPI || got.ContentType != "application/json" {
		t.Errorf("request %s %s auth=%q ct=%q", got.Method, got.Path, got.Auth, got.ContentType)
	}
	wantBody := `{"to":"sip:bot@127.0.0.2:5090;transport=udp","custom_headers":[` +
		`{"name":"X-Callgate-Number","value":"+13125550100"},{"name":"X-Callgate-Agent","value":"a1"},` +
		`{"name":"X-Callgate-Region","value":"eu-west"},{"name":"X-Callgate-Forwarded-From","value":"+16015550124"},` +
		`{"name":"X-Callgate-Original-Called","value":"+16015550124"}],"command_id":"callgate-transfer-0-v3:abc-123"}`
	if string(got.Body) != wantBody {
		t.Errorf("transfer body\n got %s\nwant %s", got.Body, wantBody)
	}
	e := decodeEvent(t, recv(t, events).Data)
	if e.Kind != calls.Started || e.CallID != "sess-1" || e.Origin != routing.OriginForwarded || e.Region != "eu-west" ||
		e.CarrierCallID != "v3:abc-123" {
		t.Errorf("started %+v", e)
	}
	checkFor(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(rg.h.Metrics().Transfers.WithLabelValues(OutcomeOK)) == 1
	})

	// call.answered and call.hangup become lifecycle events.
	rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.answered", numTelnyx, "incoming"), testNow, priv))
	if e := decodeEvent(t, recv(t, events).Data); e.Kind != calls.Answered || e.CallID != "sess-1" || e.CarrierCallID != "v3:abc-123" {
		t.Errorf("answered %+v", e)
	}
	rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.hangup", numTelnyx, "incoming"), testNow, priv))
	if e := decodeEvent(t, recv(t, events).Data); e.Kind != calls.Ended || e.Status != 200 || e.Reason != "normal_clearing" {
		t.Errorf("ended %+v", e)
	}

	// Our own outgoing leg (to a SIP URI): ignored, nothing sent.
	w = rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json",
		callEvent("call.initiated", "sip:bot@127.0.0.2:5090", "outgoing"), testNow, priv))
	if w.Code != 200 {
		t.Errorf("outgoing leg: %d", w.Code)
	}
	rg.telx.none(t, 50*time.Millisecond)
	noMessage(t, events, rg.nc)
}

func TestTelnyxCallControlFailoverAndReject(t *testing.T) {
	rg := newRig(t)
	priv := telnyxTestKey(t)
	rg.telx.status = func(n int) int {
		if n == 1 {
			return 422
		}
		return 200
	}
	rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.initiated", numTelnyx, "incoming"), testNow, priv))
	first, second := rg.telx.next(t), rg.telx.next(t)
	if !strings.Contains(string(first.Body), `"to":"sip:bot@127.0.0.2:5090;transport=udp"`) ||
		!strings.Contains(string(second.Body), `"to":"sip:bot@127.0.0.1:5090;transport=udp"`) ||
		!strings.Contains(string(second.Body), `"command_id":"callgate-transfer-1-v3:abc-123"`) {
		t.Errorf("failover bodies:\n%s\n%s", first.Body, second.Body)
	}

	// Unassigned: the parked call is rejected.
	rg.telx.status = func(int) int { return 200 }
	w := rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.initiated", numTxUnasg, "incoming"), testNow, priv))
	if w.Code != 200 {
		t.Fatalf("%d", w.Code)
	}
	rj := rg.telx.next(t)
	if rj.Path != "/v2/calls/v3:abc-123/actions/reject" || string(rj.Body) != `{"cause":"CALL_REJECTED","command_id":"callgate-reject-v3:abc-123"}` {
		t.Errorf("reject %s %s", rj.Path, rj.Body)
	}
	if v := testutil.ToFloat64(rg.h.Metrics().Requests.WithLabelValues("telnyx", "call_control", ResultUnassigned)); v != 1 {
		t.Errorf("unassigned counted %v", v)
	}
}

func TestTelnyxCallControlRefusals(t *testing.T) {
	rg := newRig(t)
	priv := telnyxTestKey(t)
	good := callEvent("call.initiated", numTelnyx, "incoming")
	tests := []struct {
		name string
		req  *http.Request
		code int
		msg  string
	}{
		{"unsigned", telnyxRequest(t, PathTelnyxCallControl, "application/json", good, testNow, nil), 403, ""},
		{"stale", telnyxRequest(t, PathTelnyxCallControl, "application/json", good, testNow.Add(-10*time.Minute), priv), 403, ""},
		{"bad JSON", telnyxRequest(t, PathTelnyxCallControl, "application/json", []byte(`{"data":`), testNow, priv), 400, "malformed JSON body"},
		{"wrong types", telnyxRequest(t, PathTelnyxCallControl, "application/json", []byte(`{"data":{"event_type":7}}`), testNow, priv), 400, "malformed JSON body"},
		{"no event type", telnyxRequest(t, PathTelnyxCallControl, "application/json", []byte(`{"data":{}}`), testNow, priv), 400, "missing data.event_type"},
		// Signed by an integration that does not own the number: refused
		// like any bad signature (no number is revealed as unknown).
		{"unknown number", telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.initiated", "+13125559999", "incoming"), testNow, priv), 403, ""},
		{"no call_control_id", telnyxRequest(t, PathTelnyxCallControl, "application/json",
			[]byte(`{"data":{"event_type":"call.initiated","payload":{"to":"+13125550100","direction":"incoming"}}}`), testNow, priv), 400, "call_control_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := rg.do(tc.req)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.msg) {
				t.Fatalf("got %d %q, want %d %q", w.Code, w.Body, tc.code, tc.msg)
			}
		})
	}
	rg.telx.none(t, 50*time.Millisecond)
}

func TestTelnyxMessaging(t *testing.T) {
	rg := newRig(t)
	msgs := subscribe(t, rg.nc, "callgate.messages.>")
	priv := telnyxTestKey(t)
	body := []byte(`{"data":{"event_type":"message.received","id":"ev-9","payload":{"id":"msg-1","direction":"inbound",` +
		`"from":{"phone_number":"+14155550100"},"to":[{"phone_number":"+13125550100"}],"text":"hi there",` +
		`"media":[{"url":"https://media.telnyx.example/1","content_type":"image/png"}],"type":"MMS"}}}`)
	w := rg.do(telnyxRequest(t, PathTelnyxMessaging, "application/json", body, testNow, priv))
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	m := recv(t, msgs)
	var got Message
	json.Unmarshal(m.Data, &got)
	want := Message{ID: "msg-1", Carrier: "telnyx", From: "+14155550100", To: numTelnyx, Body: "hi there",
		Media: []Media{{URL: "https://media.telnyx.example/1", ContentType: "image/png"}}, Workspace: "w1", Agent: "a1", ReceivedAt: testNow}
	if m.Subject != "callgate.messages.13125550100" || !messagesEqual(got, want) {
		t.Errorf("%s %+v", m.Subject, got)
	}
	if d := rg.agent.next(t); string(d.Body) != string(m.Data) {
		t.Errorf("delivered %s", d.Body)
	}
	// Delivery receipts are acknowledged and ignored.
	w = rg.do(telnyxRequest(t, PathTelnyxMessaging, "application/json", []byte(`{"data":{"event_type":"message.finalized"}}`), testNow, priv))
	if w.Code != 200 {
		t.Errorf("finalized %d", w.Code)
	}
	noMessage(t, msgs, rg.nc)
}

func TestDiversionURIs(t *testing.T) {
	tests := []struct {
		hs   []nameValue
		want []string
	}{
		{[]nameValue{{"Diversion", "<sip:+16015550124@a.example>;reason=unconditional"}}, []string{"sip:+16015550124@a.example"}},
		{[]nameValue{{"diversion", `"Front desk, main" <tel:+16015550124>;reason=no-answer, <sip:+16015550125@b>`}},
			[]string{"tel:+16015550124", "sip:+16015550125@b"}},
		{[]nameValue{{"Diversion", "sip:+16015550124@x;reason=deflection"}, {"X-Other", "<sip:1@x>"}}, []string{"sip:+16015550124@x"}},
		{[]nameValue{{"Diversion", "<sip:unterminated"}}, []string{"<sip:unterminated"}},
		{nil, nil},
	}
	for _, tc := range tests {
		got := diversionURIs(tc.hs)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%v → %q, want %q", tc.hs, got, tc.want)
		}
	}
}

func TestStartServesOnItsOwnListener(t *testing.T) {
	rg := newRig(t, func(c *Config, _ *Deps) { c.Listen = "127.0.0.1:0" })
	if err := rg.h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	addr := rg.h.Addr()
	if addr == nil {
		t.Fatal("no address")
	}
	p := voiceParams(numMain)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr.String()+PathTwilioVoice, strings.NewReader(p.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", TwilioSignature(testToken, testPublicURL+PathTwilioVoice, p))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if err := rg.h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Error("still serving after Close")
	}
}

func TestConfigValidate(t *testing.T) {
	bad := Config{
		PublicURL: "ftp://x",
		Twilio:    TwilioConfig{Edges: map[string]string{"us-east": "roaming"}, RingTimeout: time.Second},
		Telnyx:    TelnyxConfig{PublicKey: "abc"},
		Messaging: MessagingConfig{Attempts: 50, Workers: -1},
	}
	err := bad.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"public_url", "twilio.edges.us-east", "twilio.ring_timeout", "telnyx.public_key", "messaging.attempts", "messaging.workers"} {
		if !strings.Contains(err.Error(), "webhook: "+key+":") {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if err := (Config{}).Validate(); err == nil || !strings.Contains(err.Error(), "public_url: required") {
		t.Errorf("empty config: %v", err)
	}
	if err := (Config{PublicURL: "https://gw.example.com/base?x=1"}).Validate(); err == nil {
		t.Error("query accepted")
	}
	good := Config{PublicURL: "https://gw.example.com", Telnyx: TelnyxConfig{PublicKey: txVecKey},
		Twilio: TwilioConfig{Edges: map[string]string{"eu-west": "dublin"}, RingTimeout: 20 * time.Second}}
	if err := good.Validate(); err != nil {
		t.Error(err)
	}
	if _, err := New(good, Deps{}); err == nil || !strings.Contains(err.Error(), "Table") {
		t.Errorf("New without a table: %v", err)
	}
}

func TestRelayAgentsGoThroughTheSIPEdge(t *testing.T) {
	rg := newRig(t, func(c *Config, _ *Deps) { c.SIPEdge = "sip.gw.example.com:5060;transport=tcp" })
	w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numRelay), testToken))
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, ">sip:+12282001239@sip.gw.example.com:5060;transport=tcp;edge=ashburn</Sip>") ||
		strings.Contains(body, "action=") || !strings.Contains(body, "region=us-east") {
		t.Fatalf("%d %s", w.Code, body)
	}
	// Direct agents are unaffected.
	w = rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
	if !strings.Contains(w.Body.String(), ">sip:bot@127.0.0.1:5090") {
		t.Fatalf("direct agent: %s", w.Body)
	}
	priv := telnyxTestKey(t)
	rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.initiated", numTxRelay, "incoming"), testNow, priv))
	got := rg.telx.next(t)
	if string(got.Body) != `{"to":"sip:+13125550102@sip.gw.example.com:5060;transport=tcp","command_id":"callgate-transfer-0-v3:abc-123"}` {
		t.Errorf("transfer %s", got.Body)
	}
	// Without sip_edge a relay agent is dialled directly.
	rg2 := newRig(t)
	w = rg2.do(twilioRequest(PathTwilioVoice, voiceParams(numRelay), testToken))
	if !strings.Contains(w.Body.String(), ">sip:relay@127.0.0.1:5092") && !strings.Contains(w.Body.String(), ">sip:relay@127.0.0.2:5092") {
		t.Fatalf("no sip_edge: %s", w.Body)
	}
	if err := (Config{PublicURL: testPublicURL, SIPEdge: "sip:x@y"}).Validate(); err == nil || !strings.Contains(err.Error(), "sip_edge") {
		t.Errorf("bad sip_edge accepted: %v", err)
	}
}
