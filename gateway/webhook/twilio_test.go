package webhook

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/routing"
)

func TestTwilioVoiceBridgesToAgent(t *testing.T) {
	rg := newRig(t)
	events := subscribe(t, rg.nc, "callgate.calls.>")

	w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "text/xml; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	t0 := strconv.FormatInt(testNow.UnixMilli(), 10)
	want := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<Response><Dial answerOnBridge="true" timeout="30" action="https://gw.example.com/webhooks/twilio/voice?attempt=1" method="POST">` +
		`<Sip statusCallbackEvent="answered completed" statusCallback="https://gw.example.com/webhooks/twilio/status?number=%2B12282001234&amp;agent=a1&amp;region=us-east&amp;t0=` + t0 + `" statusCallbackMethod="POST">` +
		`sip:bot@127.0.0.1:5090;transport=udp;edge=ashburn?X-Callgate-Number=%2B12282001234&amp;X-Callgate-Agent=a1&amp;X-Callgate-Region=us-east` +
		`</Sip></Dial></Response>`
	if got := w.Body.String(); got != want {
		t.Fatalf("TwiML\n got %s\nwant %s", got, want)
	}
	m := recv(t, events)
	if m.Subject != "callgate.calls.us-east.started" {
		t.Errorf("subject %s", m.Subject)
	}
	e := decodeEvent(t, m.Data)
	if e.Kind != calls.Started || e.CallID != "CA0001" || e.Number != numMain || e.Agent != "a1" ||
		e.Workspace != "w1" || e.Region != "us-east" || e.Carrier != "twilio" || e.Origin != routing.OriginImported ||
		e.Source != SourceTwilio || e.CarrierCallID != "CA0001" {
		t.Errorf("event %+v", e)
	}
	if v := testutil.ToFloat64(rg.h.Metrics().Requests.WithLabelValues("twilio", "voice", ResultOK)); v != 1 {
		t.Errorf("requests ok = %v", v)
	}
	if n := testutil.CollectAndCount(rg.h.Metrics().Duration); n != int(numEndpoints) {
		t.Errorf("duration series = %d", n)
	}
}

func TestTwilioVoiceForwardedCall(t *testing.T) {
	rg := newRig(t)
	events := subscribe(t, rg.nc, "callgate.calls.>")
	p := voiceParams(numMain)
	p.Set("ForwardedFrom", "6015550123") // national digits, as some carriers send it
	p.Set("ForwardedFrom", "+16015550123")
	w := rg.do(twilioRequest(PathTwilioVoice, p, testToken))
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if !strings.Contains(w.Body.String(), "&amp;X-Callgate-Forwarded-From=%2B16015550123&amp;X-Callgate-Original-Called=%2B16015550123</Sip>") {
		t.Errorf("no forwarding headers: %s", w.Body)
	}
	if e := decodeEvent(t, recv(t, events).Data); e.Origin != routing.OriginForwarded {
		t.Errorf("origin %q, want forwarded", e.Origin)
	}

	// A line that is not registered is not attributed.
	p.Set("ForwardedFrom", "+16015550199")
	w = rg.do(twilioRequest(PathTwilioVoice, p, testToken))
	if strings.Contains(w.Body.String(), "Forwarded-From") {
		t.Errorf("unregistered line attributed: %s", w.Body)
	}
}

func TestTwilioVoiceFailover(t *testing.T) {
	rg := newRig(t)
	events := subscribe(t, rg.nc, "callgate.calls.>")
	tests := []struct {
		status string
		want   string // substring of the answer
	}{
		{"failed", `<Sip statusCallbackEvent="answered completed" statusCallback="https://gw.example.com/webhooks/twilio/status?number=%2B12282001234&amp;agent=a1&amp;region=eu-west&amp;t0=`},
		{"no-answer", `>sip:bot@127.0.0.2:5090;transport=udp;edge=dublin?X-Callgate-Number=%2B12282001234&amp;X-Callgate-Agent=a1&amp;X-Callgate-Region=eu-west</Sip>`},
		{"busy", `<Response><Hangup/></Response>`},
		{"completed", `<Response><Hangup/></Response>`},
		{"canceled", `<Response><Hangup/></Response>`},
	}
	for _, tc := range tests {
		t.Run(tc.status, func(t *testing.T) {
			p := voiceParams(numMain)
			p.Set("DialCallStatus", tc.status)
			w := rg.do(twilioRequest(PathTwilioVoice+"?attempt=1", p, testToken))
			if w.Code != 200 || !strings.Contains(w.Body.String(), tc.want) {
				t.Fatalf("status %d, body %s\nwant it to contain %s", w.Code, w.Body, tc.want)
			}
			if strings.Contains(w.Body.String(), "action=") {
				t.Errorf("the last candidate has an action URL: %s", w.Body)
			}
		})
	}
	// Past the last candidate: hang up.
	p := voiceParams(numMain)
	p.Set("DialCallStatus", "failed")
	w := rg.do(twilioRequest(PathTwilioVoice+"?attempt=2", p, testToken))
	if w.Code != 200 || !strings.Contains(w.Body.String(), "<Hangup/>") {
		t.Fatalf("attempt 2: %d %s", w.Code, w.Body)
	}
	noMessage(t, events, rg.nc) // only the first attempt starts a call
}

// upDown is the health a prober would report: a static table.
type upDown map[string]bool

func (u upDown) Endpoint(uri string) (time.Duration, bool, bool) {
	up, known := u[uri]
	return time.Millisecond, up, known
}

func TestTwilioVoiceHealth(t *testing.T) {
	rg := newRig(t, func(_ *Config, d *Deps) {
		d.Health = upDown{"sip:bot@127.0.0.1:5090;transport=udp": false, "sip:bot@127.0.0.2:5090;transport=udp": true}
	})
	w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
	body := w.Body.String()
	if !strings.Contains(body, ">sip:bot@127.0.0.2:5090;transport=udp;edge=dublin?") || strings.Contains(body, "action=") {
		t.Fatalf("want the healthy eu-west endpoint only: %s", body)
	}
}

func TestTwilioVoiceRefusals(t *testing.T) {
	rg := newRig(t)
	events := subscribe(t, rg.nc, "callgate.calls.>")
	reject := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Response><Reject reason="rejected"/></Response>`
	busy := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" + `<Response><Reject reason="busy"/></Response>`
	tests := []struct {
		name     string
		req      *http.Request
		code     int
		body     string
		result   string
		contains bool
	}{
		{"bad signature on unknown number", twilioRequest(PathTwilioVoice, voiceParams("+12282009999"), "whatever"), 403, "", ResultBadSignature, false},
		{"unassigned", twilioRequest(PathTwilioVoice, voiceParams(numUnassign), testToken), 200, reject, ResultUnassigned, false},
		{"suspended", twilioRequest(PathTwilioVoice, voiceParams(numSuspended), testToken), 200, reject, ResultSuspended, false},
		{"no endpoint", twilioRequest(PathTwilioVoice, voiceParams(numNoEP), testToken), 200, busy, ResultNoEndpoint, false},
		{"missing signature", twilioRequest(PathTwilioVoice, voiceParams(numMain), ""), 403, "", ResultBadSignature, false},
		{"wrong token", twilioRequest(PathTwilioVoice, voiceParams(numMain), "other-token"), 403, "", ResultBadSignature, false},
		{"bad signature on unassigned", twilioRequest(PathTwilioVoice, voiceParams(numUnassign), "other-token"), 403, "", ResultBadSignature, false},
		{"telnyx number", twilioRequest(PathTwilioVoice, voiceParams(numTelnyx), testToken), 403, "", ResultBadSignature, false},
		{"sandbox number without fallback token", twilioRequest(PathTwilioVoice, voiceParams(numSandbox), testToken), 403, "", ResultBadSignature, false},
		{"missing To", twilioRequest(PathTwilioVoice, url.Values{"CallSid": {"CA1"}}, testToken), 400, "webhook: missing To parameter\n", ResultBadRequest, false},
		{"bad attempt", twilioRequest(PathTwilioVoice+"?attempt=x", voiceParams(numMain), testToken), 400, "attempt=", ResultBadRequest, true},
		{"huge attempt", twilioRequest(PathTwilioVoice+"?attempt=99999", voiceParams(numMain), testToken), 400, "attempt=", ResultBadRequest, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(rg.h.Metrics().Requests.WithLabelValues("twilio", "voice", tc.result))
			w := rg.do(tc.req)
			if w.Code != tc.code {
				t.Fatalf("status %d, want %d (%s)", w.Code, tc.code, w.Body)
			}
			if got := w.Body.String(); (tc.contains && !strings.Contains(got, tc.body)) || (!tc.contains && got != tc.body) {
				t.Fatalf("body %q, want %q", got, tc.body)
			}
			if tc.code == 403 && (len(w.Header()) != 1 || w.Header().Get("Connection") != "close") {
				t.Errorf("403 with headers %v", w.Header())
			}
			after := testutil.ToFloat64(rg.h.Metrics().Requests.WithLabelValues("twilio", "voice", tc.result))
			if after != before+1 {
				t.Errorf("result %s counted %v → %v", tc.result, before, after)
			}
		})
	}
	noMessage(t, events, rg.nc)
}

func TestTwilioVoiceBadInput(t *testing.T) {
	rg := newRig(t)
	post := func(ct, body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, PathTwilioVoice, strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		r.Header.Set("X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
		return r
	}
	tests := []struct {
		name string
		req  *http.Request
		code int
		msg  string
	}{
		{"bad escape", post("application/x-www-form-urlencoded", "To=%zz&From=1"), 400, "malformed form body"},
		{"semicolon", post("application/x-www-form-urlencoded", "To=+1228;x=1"), 400, "malformed form body"},
		{"bad JSON", post("application/json", `{"To": `), 400, "malformed JSON body"},
		{"JSON array", post("application/json", `[1,2]`), 400, "malformed JSON body"},
		{"xml body", post("text/xml", `<x/>`), 400, "unsupported Content-Type"},
		{"too large", post("application/x-www-form-urlencoded", "To="+strings.Repeat("1", DefaultMaxBodyBytes)), 413, "too large"},
		{"not a number, bad signature", post("application/x-www-form-urlencoded", "To=hello"), 403, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := rg.do(tc.req)
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.msg) {
				t.Fatalf("got %d %q, want %d containing %q", w.Code, w.Body, tc.code, tc.msg)
			}
		})
	}
	// Only POST.
	w := rg.do(httptest.NewRequest(http.MethodGet, PathTwilioVoice, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
	// Not ready before the first snapshot.
	rg.table.Store(nil)
	w = rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("no snapshot: %d %v", w.Code, w.Header())
	}
}

func TestTwilioFallbackToken(t *testing.T) {
	rg := newRig(t, func(c *Config, _ *Deps) { c.Twilio.AuthToken = "platformtoken" })
	w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numSandbox), "platformtoken"))
	if w.Code != 200 || !strings.Contains(w.Body.String(), "<Dial") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	// The fallback never applies to numbers that have an integration.
	w = rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), "platformtoken"))
	if w.Code != 403 {
		t.Fatalf("integration number with the platform token: %d", w.Code)
	}
}

func TestTwilioVoiceJSONBody(t *testing.T) {
	rg := newRig(t)
	body := `{"To":"+12282001234","CallSid":"CA77","From":"+14155550100"}`
	sum := sha256.Sum256([]byte(body))
	path := PathTwilioVoice + "?bodySHA256=" + hex.EncodeToString(sum[:])
	sign := func(b string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(b))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("X-Twilio-Signature", TwilioSignature(testToken, testPublicURL+path, nil))
		return r
	}
	if w := rg.do(sign(body)); w.Code != 200 || !strings.Contains(w.Body.String(), "<Dial") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	// Same URL and signature, another body.
	if w := rg.do(sign(strings.Replace(body, "CA77", "CA78", 1))); w.Code != 403 {
		t.Fatalf("changed body: %d", w.Code)
	}
}

func TestTwilioSignedURLWithProxyPrefixAndPort(t *testing.T) {
	rg := newRig(t, func(c *Config, _ *Deps) { c.PublicURL = "https://edge.example.com:443/callgate/" })
	p := voiceParams(numMain)
	r := httptest.NewRequest(http.MethodPost, PathTwilioVoice, strings.NewReader(p.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// Twilio signs the URL as configured on the number, without :443.
	r.Header.Set("X-Twilio-Signature", TwilioSignature(testToken, "https://edge.example.com/callgate"+PathTwilioVoice, p))
	w := rg.do(r)
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if !strings.Contains(w.Body.String(), `action="https://edge.example.com:443/callgate/webhooks/twilio/voice?attempt=1"`) {
		t.Errorf("action URL not under the public URL: %s", w.Body)
	}
}

func TestTwilioStatusEvents(t *testing.T) {
	rg := newRig(t)
	events := subscribe(t, rg.nc, "callgate.calls.>")
	t0 := testNow.Add(-1500 * time.Millisecond).UnixMilli()
	path := PathTwilioStatus + "?number=%2B12282001234&agent=a1&region=eu-west&t0=" + strconv.FormatInt(t0, 10)
	child := func(status string) url.Values {
		return url.Values{"CallSid": {"CA-child"}, "ParentCallSid": {"CA0001"}, "CallStatus": {status},
			"To": {"sip:bot@127.0.0.2:5090"}, "From": {"+14155550100"}}
	}
	// answered
	w := rg.do(twilioRequest(path, child("in-progress"), testToken))
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	m := recv(t, events)
	e := decodeEvent(t, m.Data)
	if m.Subject != "callgate.calls.eu-west.answered" || e.Kind != calls.Answered || e.CallID != "CA0001" ||
		e.SetupMillis != 1500 || e.Agent != "a1" || e.Number != numMain {
		t.Errorf("answered: %s %+v", m.Subject, e)
	}
	// completed
	p := child("completed")
	p.Set("CallDuration", "42")
	p.Set("SipResponseCode", "200")
	rg.do(twilioRequest(path, p, testToken))
	e = decodeEvent(t, recv(t, events).Data)
	if e.Kind != calls.Ended || e.Duration != 42*time.Second || e.Status != 200 || e.Reason != "completed" {
		t.Errorf("ended: %+v", e)
	}
	// busy, without SipResponseCode
	rg.do(twilioRequest(path, child("busy"), testToken))
	if e = decodeEvent(t, recv(t, events).Data); e.Status != 486 || e.Reason != "busy" {
		t.Errorf("busy: %+v", e)
	}
	// ringing: nothing
	if w := rg.do(twilioRequest(path, child("ringing"), testToken)); w.Code != 200 {
		t.Errorf("ringing %d", w.Code)
	}
	// The signed URL is the proof: changing the region breaks it.
	r := twilioRequest(path, child("completed"), testToken)
	r2 := httptest.NewRequest(http.MethodPost, strings.Replace(path, "eu-west", "us-east", 1), strings.NewReader(child("completed").Encode()))
	r2.Header = r.Header
	if w := rg.do(r2); w.Code != 403 {
		t.Errorf("tampered URL: %d", w.Code)
	}
	// A number's own StatusCallback: To is the number.
	pp := url.Values{"CallSid": {"CA9"}, "CallStatus": {"completed"}, "To": {numMain}, "CallDuration": {"3"}}
	rg.do(twilioRequest(PathTwilioStatus, pp, testToken))
	m = recv(t, events)
	if e = decodeEvent(t, m.Data); m.Subject != "callgate.calls.us-east.ended" || e.CallID != "CA9" {
		t.Errorf("number status callback: %s %+v", m.Subject, e)
	}
	noMessage(t, events, rg.nc)
	// Missing CallStatus: 400.
	if w := rg.do(twilioRequest(PathTwilioStatus, url.Values{"To": {numMain}}, testToken)); w.Code != 400 {
		t.Errorf("missing CallStatus: %d", w.Code)
	}
}

func TestTwilioSMS(t *testing.T) {
	rg := newRig(t)
	msgs := subscribe(t, rg.nc, "callgate.messages.>")
	p := url.Values{
		"MessageSid": {"SM123"}, "AccountSid": {"AC123"}, "From": {"+14155550100"}, "To": {numMain},
		"Body": {"Hello & goodbye"}, "NumMedia": {"1"}, "MediaUrl0": {"https://api.twilio.com/media/ME1"},
		"MediaContentType0": {"image/jpeg"},
	}
	w := rg.do(twilioRequest(PathTwilioSMS, p, testToken))
	if w.Code != 200 || w.Body.String() != `<?xml version="1.0" encoding="UTF-8"?>`+"\n<Response/>" {
		t.Fatalf("%d %q", w.Code, w.Body)
	}
	m := recv(t, msgs)
	if m.Subject != "callgate.messages.12282001234" {
		t.Errorf("subject %s", m.Subject)
	}
	want := Message{ID: "SM123", Carrier: "twilio", From: "+14155550100", To: numMain, Body: "Hello & goodbye",
		Media:     []Media{{URL: "https://api.twilio.com/media/ME1", ContentType: "image/jpeg"}},
		Workspace: "w1", Agent: "a1", ReceivedAt: testNow}
	var got Message
	if err := json.Unmarshal(m.Data, &got); err != nil {
		t.Fatal(err)
	}
	if !messagesEqual(got, want) {
		t.Errorf("published %+v\nwant %+v", got, want)
	}
	d := rg.agent.next(t)
	if d.Method != "POST" || d.Path != "/inbound" || d.ContentType != "application/json" || string(d.Body) != string(m.Data) {
		t.Errorf("delivered %s %s %s %s", d.Method, d.Path, d.ContentType, d.Body)
	}

	// Unassigned number: published, not delivered.
	p.Set("To", numUnassign)
	rg.do(twilioRequest(PathTwilioSMS, p, testToken))
	if m := recv(t, msgs); m.Subject != "callgate.messages.12282001235" {
		t.Errorf("subject %s", m.Subject)
	}
	rg.agent.none(t, 100*time.Millisecond)

	// Bad signature: 403, nothing published.
	p.Set("To", numMain)
	if w := rg.do(twilioRequest(PathTwilioSMS, p, "nope")); w.Code != 403 {
		t.Errorf("bad signature %d", w.Code)
	}
	noMessage(t, msgs, rg.nc)
}

func TestMessageDeliveryRetries(t *testing.T) {
	rg := newRig(t)
	rg.agent.status = func(n int) int {
		if n == 1 {
			return 503
		}
		return 204
	}
	p := url.Values{"MessageSid": {"SM9"}, "From": {"+14155550100"}, "To": {numMain}, "Body": {"hi"}}
	rg.do(twilioRequest(PathTwilioSMS, p, testToken))
	rg.agent.next(t)
	rg.agent.next(t)
	checkFor(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(rg.h.Metrics().Deliveries.WithLabelValues(OutcomeOK)) == 1
	})
	// A 4xx is not retried.
	rg.agent.status = func(int) int { return 404 }
	rg.do(twilioRequest(PathTwilioSMS, p, testToken))
	rg.agent.next(t)
	checkFor(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(rg.h.Metrics().Deliveries.WithLabelValues(OutcomeFailed)) == 1
	})
	rg.agent.none(t, 400*time.Millisecond)
}

func messagesEqual(a, b Message) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// checkFor is testwait.CheckFor on a condition, polling every 5 ms.
func checkFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	testwait.CheckFor(t, d, 5*time.Millisecond, func() error {
		if !cond() {
			return errors.New("condition false")
		}
		return nil
	})
}

func TestMessageDeliveryIsBounded(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	rg := newRig(t, func(c *Config, _ *Deps) { c.Messaging.Workers, c.Messaging.Queue = 1, 1 })
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // runs before the rig's cleanups
	rg.agent.status = func(int) int { entered <- struct{}{}; <-release; return 200 }
	p := url.Values{"MessageSid": {"SM1"}, "From": {"+14155550100"}, "To": {numMain}, "Body": {"hi"}}
	send := func() {
		t.Helper()
		start := time.Now()
		if w := rg.do(twilioRequest(PathTwilioSMS, p, testToken)); w.Code != 200 {
			t.Fatalf("%d", w.Code)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("webhook waited on the delivery: %v", d)
		}
	}
	send()
	<-entered // the only worker is now stuck in the agent's handler
	send()    // queued
	send()    // dropped
	if v := testutil.ToFloat64(rg.h.Metrics().Deliveries.WithLabelValues(OutcomeDropped)); v != 1 {
		t.Fatalf("dropped = %v, want 1", v)
	}
	once.Do(func() { close(release) })
	checkFor(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(rg.h.Metrics().Deliveries.WithLabelValues(OutcomeOK)) == 2
	})
}
