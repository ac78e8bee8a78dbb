package webhook

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/limits"
	"github.com/callgate/callgate/routing"
)

// limitedRig is a rig whose workspace w1 has limits l, counted by a real
// cluster counter on its own NATS server.
func limitedRig(t *testing.T, l routing.Limits) (*rig, *limits.Counter) {
	t.Helper()
	_, nc := runNATS(t)
	frozen := testNow
	lim, err := limits.New(nc, limits.Options{Now: func() time.Time { return frozen }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	rg := newRig(t, func(_ *Config, d *Deps) { d.Limits = lim })
	rg.table.Store(rg.table.Load().WithWorkspaces([]routing.Workspace{{ID: "w1", Limits: l}}))
	return rg, lim
}

func TestTwilioVoiceOverAWorkspaceLimitIsRejectedBusy(t *testing.T) {
	rg, lim := limitedRig(t, routing.Limits{MaxConcurrentCalls: 1})
	events := subscribe(t, rg.nc, "callgate.calls.>")
	// the workspace's one call in progress (held on the SIP edge)
	if _, _, ok := lim.Admit("w1", calls.Inbound, calls.LimitCaps{MaxConcurrent: 1}); !ok {
		t.Fatal("first call refused")
	}
	w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
	if w.Code != http.StatusOK || w.Body.String() != string(twimlRejectBusy) {
		t.Fatalf("voice webhook over the limit: %d %s", w.Code, w.Body)
	}
	if e := decodeEvent(t, recv(t, events).Data); e.Kind != calls.Started || e.CallID != "CA0001" {
		t.Fatalf("first event %+v", e)
	}
	e := decodeEvent(t, recv(t, events).Data)
	if e.Kind != calls.Ended || e.Reason != "limit_concurrent" || e.Workspace != "w1" || e.Source != SourceTwilio {
		t.Fatalf("ended event %+v", e)
	}
	if v := testutil.ToFloat64(rg.h.Metrics().Requests.WithLabelValues("twilio", "voice", ResultLimited)); v != 1 {
		t.Fatalf("requests{result=limited} = %v", v)
	}
	// the call ends: the next one is bridged
	lim.Release("w1", calls.Inbound)
	w = rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
	if !strings.Contains(w.Body.String(), "<Dial") {
		t.Fatalf("voice webhook under the limit: %s", w.Body)
	}
}

func TestTwilioVoiceOverTheCallRateIsRejectedBusy(t *testing.T) {
	rg, _ := limitedRig(t, routing.Limits{MaxCallsPerSecond: 1})
	if w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken)); !strings.Contains(w.Body.String(), "<Dial") {
		t.Fatalf("first call: %s", w.Body)
	}
	w := rg.do(twilioRequest(PathTwilioVoice, voiceParams(numMain), testToken))
	if w.Body.String() != string(twimlRejectBusy) {
		t.Fatalf("second call in the second: %s", w.Body)
	}
}

func TestTelnyxCallOverAWorkspaceLimitIsRejectedBusy(t *testing.T) {
	rg, lim := limitedRig(t, routing.Limits{MaxConcurrentCalls: 1})
	priv := telnyxTestKey(t)
	lim.Admit("w1", calls.Inbound, calls.LimitCaps{})
	w := rg.do(telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.initiated", numTelnyx, "incoming"), testNow, priv))
	if w.Code != 200 {
		t.Fatalf("%d", w.Code)
	}
	rj := rg.telx.next(t)
	if rj.Path != "/v2/calls/v3:abc-123/actions/reject" || !strings.Contains(string(rj.Body), `"cause":"USER_BUSY"`) {
		t.Fatalf("want a reject with USER_BUSY, got %s %s", rj.Path, rj.Body)
	}
	if v := testutil.ToFloat64(rg.h.Metrics().Requests.WithLabelValues("telnyx", "call_control", ResultLimited)); v != 1 {
		t.Fatalf("requests{result=limited} = %v", v)
	}
}
