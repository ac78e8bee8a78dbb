package webhook

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/sign"
)

const whSecret = "whsec-webhook-test"

// hookRig is a rig whose workspace w1 has a routing hook answering body
// (a stall when body is "stall"), with agent hb of w1 and agent xo of
// another workspace in the snapshot.
func hookRig(t *testing.T, body string, onFailure string) (*rig, *atomic.Int32) {
	t.Helper()
	var hits, badSig atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		if sign.Verify([]byte(whSecret), r.Header.Get(sign.HeaderName), b, time.Now(), time.Minute) != nil {
			badSig.Add(1)
		}
		if body == "stall" {
			<-r.Context().Done()
			return
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if badSig.Load() != 0 {
			t.Error("a hook request's signature did not verify")
		}
	})
	hc, err := hook.New(hook.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Endpoint: provisioning.CanonicalEndpointURI})
	if err != nil {
		t.Fatal(err)
	}
	rg := newRig(t, func(_ *Config, d *Deps) { d.Hook = hc })
	snap := buildTestSnapshot(rg.agent.srv.URL + "/inbound").WithWorkspaces([]routing.Workspace{{ID: "w1", WebhookSecret: whSecret,
		Hook: &routing.Hook{URL: srv.URL, TimeoutMS: 300, OnFailure: onFailure}}})
	rg.table.Store(withHookAgents(snap))
	return rg, &hits
}

// withHookAgents adds agent hb (w1) and xo (w2) to snap.
func withHookAgents(snap *routing.Snapshot) *routing.Snapshot {
	b := routing.NewBuilder()
	snap.Agents(func(a *routing.Agent) { b.AddAgent(*a) })
	b.AddAgent(routing.Agent{ID: "hb", Workspace: "w1", Endpoints: []routing.Endpoint{{Region: "us-east", URI: "sip:hb@127.0.0.1:5094"}}})
	b.AddAgent(routing.Agent{ID: "xo", Workspace: "w2", Endpoints: []routing.Endpoint{{Region: "us-east", URI: "sip:xo@127.0.0.1:5095"}}})
	for _, e := range []string{numMain, numUnassign, numSuspended, numNoEP, numSandbox, numTelnyx, numTxUnasg, numRelay, numTxRelay} {
		if r, ok := snap.Lookup(e); ok {
			b.AddNumber(r.Number)
		}
	}
	for _, id := range []string{"int-tw", "int-tx"} {
		if in, ok := snap.Integration(id); ok {
			b.AddIntegration(in)
		}
	}
	for _, bn := range []string{numBusiness, numBusiness2} {
		if f, ok := snap.ForwardFrom(bn); ok {
			b.AddForward(f)
		}
	}
	b.AddWorkspace(*snap.Workspace("w1"))
	return b.Build()
}

func TestTwilioVoiceHookRoutes(t *testing.T) {
	rg, hits := hookRig(t, `{"action":"route","agent_id":"hb","headers":{"X-Tier":"gold"}}`, routing.HookOnFailureReject)
	events := subscribe(t, rg.nc, "callgate.calls.>")
	w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	body := w.Body.String()
	if !strings.Contains(body, "sip:hb@127.0.0.1:5094") || !strings.Contains(body, "X-Tier=gold") ||
		!strings.Contains(body, "X-Callgate-Agent=hb") || strings.Contains(body, "action=") {
		t.Errorf("TwiML %s", body)
	}
	if hits.Load() != 1 {
		t.Errorf("hook asked %d times", hits.Load())
	}
	e := decodeEvent(t, recv(t, events).Data)
	if e.Kind != calls.Started || e.Agent != "hb" || e.HookOutcome != hook.OutcomeRoute || e.Endpoint != "sip:hb@127.0.0.1:5094" {
		t.Errorf("started %+v", e)
	}
	// a failover attempt does not ask the hook again
	r := twilioRequest(PathTwilioVoice+"?attempt=1", voiceParams(numMain), testToken)
	rg.do(r)
	if hits.Load() != 1 {
		t.Errorf("hook asked again on attempt 1")
	}
}

func TestTwilioVoiceHookRejects(t *testing.T) {
	for _, tc := range []struct {
		body, onFailure, want string
	}{
		{`{"action":"reject","status":486,"reason":"busy"}`, routing.HookOnFailureStatic, `<Reject reason="busy"/>`},
		{`{"action":"reject","status":603}`, routing.HookOnFailureStatic, `<Reject reason="rejected"/>`},
		{`stall`, routing.HookOnFailureReject, `<Reject reason="rejected"/>`},
		{`{"action":"route","agent_id":"xo"}`, routing.HookOnFailureReject, `<Reject reason="rejected"/>`},
		{`not json`, routing.HookOnFailureReject, `<Reject reason="rejected"/>`},
	} {
		rg, _ := hookRig(t, tc.body, tc.onFailure)
		w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
		if w.Code != 200 || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("%s: %d %s, want %s", tc.body, w.Code, w.Body, tc.want)
		}
		if strings.Contains(w.Body.String(), "xo@") {
			t.Errorf("%s: routed to another workspace's agent", tc.body)
		}
		if v := testutil.ToFloat64(rg.h.Metrics().Requests.WithLabelValues("twilio", "voice", ResultHookReject)); v != 1 {
			t.Errorf("%s: hook_reject counted %v", tc.body, v)
		}
	}
	// on_failure static: a stalled hook routes as assigned
	rg, _ := hookRig(t, "stall", routing.HookOnFailureStatic)
	w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
	if !strings.Contains(w.Body.String(), "sip:bot@127.0.0.1:5090") {
		t.Errorf("static on_failure: %s", w.Body)
	}
}

func TestTelnyxCallControlHook(t *testing.T) {
	priv := telnyxTestKey(t)
	rg, _ := hookRig(t, `{"action":"route","agent_id":"hb","headers":{"X-Tier":"gold"}}`, routing.HookOnFailureReject)
	rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.initiated", numTelnyx, "incoming"), testNow, priv))
	got := rg.telx.next(t)
	if got.Path != "/v2/calls/v3:abc-123/actions/transfer" || !strings.Contains(string(got.Body), `"to":"sip:hb@127.0.0.1:5094"`) ||
		!strings.Contains(string(got.Body), `{"name":"X-Tier","value":"gold"}`) {
		t.Errorf("transfer %s %s", got.Path, got.Body)
	}

	rg, _ = hookRig(t, `{"action":"reject","status":486}`, routing.HookOnFailureStatic)
	rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.initiated", numTelnyx, "incoming"), testNow, priv))
	rj := rg.telx.next(t)
	if rj.Path != "/v2/calls/v3:abc-123/actions/reject" || !strings.Contains(string(rj.Body), `"cause":"USER_BUSY"`) {
		t.Errorf("reject %s %s", rj.Path, rj.Body)
	}
	rg.telx.none(t, 200*time.Millisecond)
}
