package sip

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
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

const hookSecret = "whsec-sip-test"

// controlTable: numPurchased of workspace w is assigned to a1 (at a1eps)
// with ctl; agent b2 of w at b2eps; agent x9 of w2 at x9eps; workspace
// w's routing hook is hk (may be nil).
func controlTable(a1eps, b2eps, x9eps []routing.Endpoint, ctl *routing.NumberControl, hk *routing.Hook) *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Endpoints: a1eps})
	b.AddAgent(routing.Agent{ID: "b2", Workspace: "w", Endpoints: b2eps})
	b.AddAgent(routing.Agent{ID: "x9", Workspace: "w2", Endpoints: x9eps})
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1", Control: ctl})
	b.AddWorkspace(routing.Workspace{ID: "w", Hook: hk, WebhookSecret: hookSecret})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

// serveControlEdge is serveEdge with a routing hook client (workers: its
// pool size, 0 default); deps (may be nil) changes the dependencies, e.g.
// the sandbox termination that fallback number steps leave through.
func serveControlEdge(t testing.TB, table *routing.Table, workers int, deps func(*Deps)) *testEdge {
	t.Helper()
	hk, err := hook.New(hook.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Endpoint: provisioning.CanonicalEndpointURI, Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Region = "test"
	cfg.InviteTimeout = 400 * time.Millisecond
	cfg.Probe.Disabled = true
	d := Deps{Table: table, Hook: hk}
	if deps != nil {
		deps(&d)
	}
	return startEdge(t, cfg, d)
}

// hookServer answers every request with fn's body; it counts requests
// and checks their signature.
type hookServer struct {
	*httptest.Server
	hits   atomic.Int32
	badSig atomic.Int32
}

func newHookServer(t *testing.T, fn func(w http.ResponseWriter, r *http.Request, req hook.Request)) *hookServer {
	hs := &hookServer{}
	hs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hs.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		if sign.Verify([]byte(hookSecret), r.Header.Get(sign.HeaderName), body, time.Now(), time.Minute) != nil {
			hs.badSig.Add(1)
		}
		var req hook.Request
		_ = json.Unmarshal(body, &req)
		fn(w, r, req)
	}))
	t.Cleanup(hs.Close)
	return hs
}

func TestHookRoutesSIPCallToAnotherAgent(t *testing.T) {
	a1 := newUA(t, "127.0.0.1")
	b2 := newUA(t, "127.0.0.1")
	var got atomic.Value
	hs := newHookServer(t, func(w http.ResponseWriter, _ *http.Request, req hook.Request) {
		got.Store(req)
		io.WriteString(w, `{"action":"route","agent_id":"b2","headers":{"X-Tier":"gold"}}`)
	})
	e := serveControlEdge(t, controlTable([]routing.Endpoint{a1.endpoint("eu")}, []routing.Endpoint{b2.endpoint("us")}, nil, nil,
		&routing.Hook{URL: hs.URL}), 0, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e)
	inv := recv(t, b2.invites, "INVITE at b2")
	if header(inv, "X-Tier") != "gold" || header(inv, "X-Callgate-Agent") != "b2" {
		t.Errorf("forwarded INVITE: X-Tier %q, X-Callgate-Agent %q", header(inv, "X-Tier"), header(inv, "X-Callgate-Agent"))
	}
	select {
	case <-a1.invites:
		t.Error("the statically assigned agent got the call")
	default:
	}
	req, _ := got.Load().(hook.Request)
	if req.CallID != inv.CallID().Value() || req.Number != numPurchased || req.AgentID != "a1" || req.Direction != "inbound" ||
		req.Carrier != "twilio" || req.Region != "eu" {
		t.Errorf("hook request %+v", req)
	}
	if hs.badSig.Load() != 0 {
		t.Error("hook request signature did not verify")
	}
	_ = ds.Bye(ctx)
	en := e.events.waitEvent(t, calls.Ended, inv.CallID().Value())
	if en.HookOutcome != hook.OutcomeRoute || en.Agent != "b2" || en.Endpoint != b2.endpoint("us").URI || en.Direction != calls.Inbound ||
		en.To != numPurchased {
		t.Errorf("ended event %+v", en)
	}
}

func TestHookRejectsSIPCall(t *testing.T) {
	a1 := newUA(t, "127.0.0.1")
	hs := newHookServer(t, func(w http.ResponseWriter, _ *http.Request, _ hook.Request) {
		io.WriteString(w, `{"action":"reject","status":603,"reason":"Not today"}`)
	})
	e := serveControlEdge(t, controlTable([]routing.Endpoint{a1.endpoint("eu")}, nil, nil, nil, &routing.Hook{URL: hs.URL}), 0, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "hook-reject-1", ""))
	if m := raw.readFinal(5 * time.Second); !strings.HasPrefix(m, "SIP/2.0 603 Not today") {
		t.Fatalf("caller got %q", statusLine(m))
	}
	en := e.events.waitEvent(t, calls.Ended, "hook-reject-1")
	if en.Status != 603 || en.Reason != "hook_reject" || en.HookOutcome != hook.OutcomeReject {
		t.Errorf("ended %+v", en)
	}
	select {
	case <-a1.invites:
		t.Error("a rejected call reached the agent")
	case <-time.After(100 * time.Millisecond):
	}
}

// The caller gets 100 Trying while the hook thinks; retransmissions do
// not ask the hook again; a CANCEL ends the call with 487 and the late
// answer is dropped.
func TestHookCancelWhileHookRuns(t *testing.T) {
	a1 := newUA(t, "127.0.0.1")
	release := make(chan struct{})
	hs := newHookServer(t, func(w http.ResponseWriter, r *http.Request, _ hook.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, `{"action":"route"}`)
	})
	e := serveControlEdge(t, controlTable([]routing.Endpoint{a1.endpoint("eu")}, nil, nil, nil,
		&routing.Hook{URL: hs.URL, TimeoutMS: 5000}), 0, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	inv := raw.invite(e, numPurchased, "hook-cancel-1", "")
	raw.send(inv)
	if m := raw.read(2 * time.Second); !strings.HasPrefix(m, "SIP/2.0 100") {
		t.Fatalf("no 100 Trying at once: %q", statusLine(m))
	}
	checkFor(t, 5*time.Second, func() error {
		if hs.hits.Load() != 1 {
			return errors.New("hook not asked yet")
		}
		return nil
	})
	raw.send(inv) // retransmissions
	raw.send(inv)
	raw.send(cancelFor(inv))
	var got200, got487 bool
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !(got200 && got487) {
		m := raw.read(time.Second)
		switch {
		case strings.HasPrefix(m, "SIP/2.0 200") && strings.Contains(m, "CANCEL"):
			got200 = true
		case strings.HasPrefix(m, "SIP/2.0 487"):
			got487 = true
		}
	}
	if !got200 || !got487 {
		t.Fatalf("200 to CANCEL %v, 487 %v", got200, got487)
	}
	close(release)
	en := e.events.waitEvent(t, calls.Ended, "hook-cancel-1")
	if en.Status != 487 || en.Reason != "cancel" {
		t.Errorf("ended %+v", en)
	}
	select {
	case <-a1.invites:
		t.Error("a cancelled call reached the agent once the hook answered")
	case <-time.After(300 * time.Millisecond):
	}
	if n := hs.hits.Load(); n != 1 {
		t.Errorf("hook asked %d times for one call", n)
	}
	if e.ActiveCalls() != 0 {
		t.Errorf("%d calls active", e.ActiveCalls())
	}
}

func TestHookTimeoutOnFailure(t *testing.T) {
	for _, tc := range []struct {
		onFailure string
		want      int
	}{{routing.HookOnFailureReject, 480}, {routing.HookOnFailureStatic, 200}} {
		t.Run(tc.onFailure, func(t *testing.T) {
			a1 := newUA(t, "127.0.0.1")
			hs := newHookServer(t, func(w http.ResponseWriter, r *http.Request, _ hook.Request) {
				<-r.Context().Done() // stalls until callgate gives up
			})
			e := serveControlEdge(t, controlTable([]routing.Endpoint{a1.endpoint("eu")}, nil, nil, nil,
				&routing.Hook{URL: hs.URL, TimeoutMS: 200, OnFailure: tc.onFailure}), 0, nil)
			carrier := newUA(t, "127.0.0.1")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ds, _, err := carrier.call(ctx, e, numPurchased)
			if tc.want == 200 {
				if err != nil {
					t.Fatalf("static on_failure: %v", err)
				}
				_ = ds.Ack(ctx)
				recv(t, a1.invites, "INVITE at a1")
				ev := e.events.waitEvent(t, calls.Answered, "")
				if ev.HookOutcome != hook.OutcomeTimeout {
					t.Errorf("answered %+v", ev)
				}
				_ = ds.Bye(ctx)
				return
			}
			if statusOf(err) != 480 {
				t.Fatalf("reject on_failure: %v", err)
			}
			ev := e.events.waitEvent(t, calls.Ended, "")
			if ev.Status != 480 || ev.Reason != "hook_failed" || ev.HookOutcome != hook.OutcomeTimeout {
				t.Errorf("ended %+v", ev)
			}
		})
	}
}

// A hook that routes to another workspace's agent or endpoint is
// refused (on_failure reject: 480), and the foreign agent gets nothing.
func TestHookForeignTargetsRefused(t *testing.T) {
	a1 := newUA(t, "127.0.0.1")
	x9 := newUA(t, "127.0.0.1")
	for _, body := range []string{`{"action":"route","agent_id":"x9"}`,
		`{"action":"route","endpoint":"` + x9.endpoint("us").URI + `"}`} {
		hs := newHookServer(t, func(w http.ResponseWriter, _ *http.Request, _ hook.Request) { io.WriteString(w, body) })
		e := serveControlEdge(t, controlTable([]routing.Endpoint{a1.endpoint("eu")}, nil, []routing.Endpoint{x9.endpoint("us")}, nil,
			&routing.Hook{URL: hs.URL, OnFailure: routing.HookOnFailureReject}), 0, nil)
		carrier := newUA(t, "127.0.0.1")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := carrier.call(ctx, e, numPurchased)
		cancel()
		if statusOf(err) != 480 {
			t.Fatalf("%s: caller got %v, want 480", body, err)
		}
		ev := e.events.waitEvent(t, calls.Ended, "")
		if ev.HookOutcome != hook.OutcomeInvalid {
			t.Errorf("%s: ended %+v", body, ev)
		}
	}
	select {
	case <-x9.invites:
		t.Error("another workspace's agent got the call")
	case <-time.After(100 * time.Millisecond):
	}
}

// With the hook pool full, a new call gets 503 at once.
func TestHookPoolSaturated503(t *testing.T) {
	a1 := newUA(t, "127.0.0.1")
	release := make(chan struct{})
	defer close(release)
	hs := newHookServer(t, func(w http.ResponseWriter, r *http.Request, _ hook.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	e := serveControlEdge(t, controlTable([]routing.Endpoint{a1.endpoint("eu")}, nil, nil, nil,
		&routing.Hook{URL: hs.URL, TimeoutMS: 5000}), 1, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "sat-1", ""))
	checkFor(t, 5*time.Second, func() error {
		if hs.hits.Load() != 1 {
			return errors.New("first hook request not in flight")
		}
		return nil
	})
	raw2 := newRaw(t, "127.0.0.1", net_(e))
	raw2.send(raw2.invite(e, numPurchased, "sat-2", ""))
	if m := raw2.readFinal(5 * time.Second); !strings.HasPrefix(m, "SIP/2.0 503") || !strings.Contains(m, "Retry-After:") {
		t.Fatalf("second call got %q", m)
	}
	if v := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("hook_saturated")); v != 1 {
		t.Errorf("rejected{hook_saturated} %v", v)
	}
}

func TestFallbackToSecondAgent(t *testing.T) {
	for _, tc := range []struct {
		name string
		a1   func(t *testing.T) routing.Endpoint
	}{
		{"first agent answers 503", func(t *testing.T) routing.Endpoint { return newUA(t, "127.0.0.1", reject(503)).endpoint("eu") }},
		{"first agent down", func(t *testing.T) routing.Endpoint {
			dead := newRaw(t, "127.0.0.1", &netUDPAddrLoop) // never answers
			return routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + itoa(dead.port())}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b2 := newUA(t, "127.0.0.1")
			ctl := &routing.NumberControl{Fallback: []routing.FallbackStep{{AgentID: "x9"}, {AgentID: "b2"}}}
			e := serveControlEdge(t, controlTable([]routing.Endpoint{tc.a1(t)}, []routing.Endpoint{b2.endpoint("us")}, nil, ctl, nil), 0, nil)
			carrier := newUA(t, "127.0.0.1")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ds := carrier.answered(ctx, t, e)
			inv := recv(t, b2.invites, "INVITE at fallback agent b2")
			if header(inv, "X-Callgate-Agent") != "b2" {
				t.Errorf("X-Callgate-Agent %q", header(inv, "X-Callgate-Agent"))
			}
			ans := e.events.waitEvent(t, calls.Answered, inv.CallID().Value())
			// step 1 (x9, another workspace's agent) is skipped; step 2 answered
			if ans.FallbackStep != 2 || ans.Endpoint != b2.endpoint("us").URI || ans.Agent != "b2" {
				t.Errorf("answered %+v", ans)
			}
			_ = ds.Bye(ctx)
		})
	}
}

// 486 and 603 from the assigned agent go to the caller: no fallback.
func TestNoFallbackOnBusy(t *testing.T) {
	for _, code := range []int{486, 603} {
		a1 := newUA(t, "127.0.0.1", reject(code))
		b2 := newUA(t, "127.0.0.1")
		ctl := &routing.NumberControl{Fallback: []routing.FallbackStep{{AgentID: "b2"}, {URI: b2.endpoint("").URI}}}
		e := serveControlEdge(t, controlTable([]routing.Endpoint{a1.endpoint("eu")}, []routing.Endpoint{b2.endpoint("us")}, nil, ctl, nil), 0, nil)
		carrier := newUA(t, "127.0.0.1")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := carrier.call(ctx, e, numPurchased)
		cancel()
		if statusOf(err) != code {
			t.Fatalf("caller got %v, want %d", err, code)
		}
		select {
		case <-b2.invites:
			t.Fatalf("fell back after %d", code)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// A fallback "number" step goes out through the number's carrier (the
// sandbox termination, egressTargets) to a SIPp "phone line".
func TestFallbackToPhoneLineSIPp(t *testing.T) {
	if _, err := os.Stat(sippBin); err != nil {
		t.Skip("sipp not installed (Debian sip-tester)")
	}
	scen, _ := filepath.Abs("testdata/sipp")
	linePort := freeUDPPort(t)
	const human = "+15551230000"
	a1 := newUA(t, "127.0.0.1", reject(503))
	e := serveControlEdge(t, fallbackNumberTable(a1.endpoint("eu"), human), 0, func(d *Deps) {
		d.SandboxTermination = "sip:pstn@127.0.0.1:" + strconv.Itoa(linePort)
	})
	line, lineOut := startSIPp(t, t.TempDir(), 30, "-sf", filepath.Join(scen, "uas_rr.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(linePort), "-m", "1", "-nostdin", "-trace_err")
	waitBound(t, "udp", linePort)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e)
	ans := e.events.waitEvent(t, calls.Answered, "")
	if ans.FallbackStep != 1 || ans.Endpoint != "sip:"+human+"@127.0.0.1:"+strconv.Itoa(linePort) {
		t.Errorf("answered %+v", ans)
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	if err := line.Wait(); err != nil {
		t.Fatalf("SIPp phone line: %v\n%s", err, tail(lineOut.String()))
	}
}

// Without a termination for the number's carrier a number step has
// nowhere to go: the caller gets 503 as without a fallback.
func TestFallbackNumberStepWithoutEgress(t *testing.T) {
	a1 := newUA(t, "127.0.0.1", reject(503))
	ctl := &routing.NumberControl{Fallback: []routing.FallbackStep{{Number: "+15551230000"}}}
	e := serveControlEdge(t, controlTable([]routing.Endpoint{a1.endpoint("eu")}, nil, nil, ctl, nil), 0, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := carrier.call(ctx, e, numPurchased); statusOf(err) != 503 {
		t.Fatalf("caller got %v, want 503", err)
	}
}
