package hook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/sign"
)

const (
	secret  = "whsec-test-1"
	numA    = "+12282007001" // workspace w, agent a1
	numFree = "+12282007002" // workspace w, no agent
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// snapshot: w has agents a1, b2 and a hook at url; w2 has agent x9.
func snapshot(url string, onFailure string, timeoutMS int) *routing.Snapshot {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Endpoints: []routing.Endpoint{{Region: "eu", URI: "sip:a1@127.0.0.1:5091"}}})
	b.AddAgent(routing.Agent{ID: "b2", Workspace: "w", Endpoints: []routing.Endpoint{{Region: "us", URI: "sip:b2@127.0.0.1:5092"}}})
	b.AddAgent(routing.Agent{ID: "py-agent", Workspace: "w", Endpoints: []routing.Endpoint{{Region: "us", URI: "sip:py@127.0.0.1:5093"}}})
	b.AddAgent(routing.Agent{ID: "x9", Workspace: "w2", Endpoints: []routing.Endpoint{{Region: "us", URI: "sip:x9@127.0.0.1:5099"}}})
	b.AddNumber(routing.Number{E164: numA, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	b.AddNumber(routing.Number{E164: numFree, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive})
	b.AddWorkspace(routing.Workspace{ID: "w", WebhookSecret: secret,
		Hook: &routing.Hook{URL: url, OnFailure: onFailure, TimeoutMS: timeoutMS}})
	return b.Build()
}

func newClient(t *testing.T, reg prometheus.Registerer, workers int) *hook.Client {
	t.Helper()
	c, err := hook.New(hook.Options{Allow: loopback, Endpoint: provisioning.CanonicalEndpointURI, Registerer: reg, Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ask decides a call to number on snap, asks its hook and applies the answer.
func ask(t *testing.T, c *hook.Client, snap *routing.Snapshot, number, from string) (routing.Decision, hook.Result) {
	t.Helper()
	d := routing.Decide(snap, &routing.Call{Called: number, Calling: from, Direction: "inbound", CallID: "call-1@carrier"}, routing.Policy{})
	if !hook.Applies(&d) {
		t.Fatalf("the hook does not apply to %s: %+v", number, d)
	}
	ws := snap.Workspace(d.Workspace)
	a := c.Ask(context.Background(), d.Hook, ws.WebhookSecret, hook.RequestFor(&d, "call-1@carrier", from, number, "eu"))
	return d, c.Apply(snap, &d, a, routing.Policy{})
}

func TestHookRoutesToAnotherAgentWithHeaders(t *testing.T) {
	var got hook.Request
	var sigErr atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := sign.Verify([]byte(secret), r.Header.Get(sign.HeaderName), body, time.Now(), time.Minute); err != nil {
			sigErr.Store(err)
		}
		_ = json.Unmarshal(body, &got)
		w.Write([]byte(`{"action":"route","agent_id":"b2","headers":{"X-Tier":"gold","X-Lang":"fr-FR","User-to-User":"00ff;encoding=hex"}}`))
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	c := newClient(t, reg, 0)
	d, res := ask(t, c, snapshot(srv.URL, routing.HookOnFailureReject, 0), numA, "+15550001111")
	if err, _ := sigErr.Load().(error); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	want := hook.Request{CallID: "call-1@carrier", Direction: "inbound", From: "+15550001111", To: numA, Number: numA,
		Origin: routing.OriginPurchased, Carrier: "twilio", Region: "eu", AgentID: "a1"}
	if got != want {
		t.Errorf("hook request\n got %+v\nwant %+v", got, want)
	}
	if res.Outcome != hook.OutcomeRoute || res.Reject || d.Agent.ID != "b2" || d.Candidates[0].URI != "sip:b2@127.0.0.1:5092" {
		t.Fatalf("result %+v, decision agent %v candidates %v", res, d.Agent.ID, d.Candidates)
	}
	if len(res.Headers) != 3 || res.Headers[0] != (hook.Header{Name: "User-to-User", Value: "00ff;encoding=hex"}) ||
		res.Headers[1] != (hook.Header{Name: "X-Lang", Value: "fr-FR"}) || res.Headers[2].Name != "X-Tier" {
		t.Errorf("headers %+v", res.Headers)
	}
	if v := testutil.ToFloat64(c.Metrics().Outcomes.WithLabelValues("route")); v != 1 {
		t.Errorf("route outcomes %v", v)
	}
	if n := testutil.CollectAndCount(c.Metrics().Latency); n != 1 {
		t.Errorf("latency histogram: %d series", n)
	}
}

func TestHookRoutesUnassignedNumberToEndpoint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"action":"route","endpoint":"SIP:Bot@127.0.0.1:5070;transport=tcp"}`))
	}))
	defer srv.Close()
	c := newClient(t, nil, 0)
	d, res := ask(t, c, snapshot(srv.URL, "", 0), numFree, "+15550001111")
	if res.Outcome != hook.OutcomeRoute || d.Outcome != routing.OutcomeRoute || len(d.Candidates) != 1 ||
		d.Candidates[0].URI != "sip:Bot@127.0.0.1:5070;transport=tcp" {
		t.Fatalf("result %+v decision %v %v %+v", res, d.Outcome, d.Reason, d.Candidates)
	}
}

func TestHookRejects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"action":"reject","status":486,"reason":"Agent busy"}`))
	}))
	defer srv.Close()
	c := newClient(t, nil, 0)
	_, res := ask(t, c, snapshot(srv.URL, "", 0), numA, "+15550001111")
	if !res.Reject || res.Status != 486 || res.Reason != "Agent busy" || res.Outcome != hook.OutcomeReject {
		t.Fatalf("result %+v", res)
	}
}

// A hook that does not answer within timeout_ms: on_failure decides.
func TestHookStallsThenOnFailure(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := newClient(t, nil, 0)

	start := time.Now()
	d, res := ask(t, c, snapshot(srv.URL, routing.HookOnFailureStatic, 150), numA, "+15550001111")
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("took %v with timeout_ms 150", el)
	}
	if res.Outcome != hook.OutcomeTimeout || res.Reject || d.Agent.ID != "a1" || d.Outcome != routing.OutcomeRoute {
		t.Fatalf("static on_failure: result %+v, agent %s", res, d.Agent.ID)
	}
	_, res = ask(t, c, snapshot(srv.URL, routing.HookOnFailureReject, 150), numA, "+15550001111")
	if res.Outcome != hook.OutcomeTimeout || !res.Reject || res.Status != 480 || res.Reason != hook.FailedReason {
		t.Fatalf("reject on_failure: %+v", res)
	}
	if v := testutil.ToFloat64(c.Metrics().Outcomes.WithLabelValues("timeout")); v != 2 {
		t.Errorf("timeout outcomes %v", v)
	}
}

// Every malformed or out-of-bounds answer is a failure: on_failure
// "reject" refuses with 480; nothing of the answer is applied.
func TestHookGarbageAnswers(t *testing.T) {
	long := strings.Repeat("a", hook.MaxHeaderValue+1)
	many := "{"
	for i := 0; i < hook.MaxHeaders+1; i++ {
		many += `"X-H` + strconv.Itoa(i) + `":"v",`
	}
	many = strings.TrimSuffix(many, ",") + "}"
	for _, tc := range []struct {
		name, body string
		status     int
		outcome    string
	}{
		{"not json", `<html>hello</html>`, 200, hook.OutcomeInvalid},
		{"empty", ``, 200, hook.OutcomeInvalid},
		{"no action", `{"agent_id":"b2"}`, 200, hook.OutcomeInvalid},
		{"unknown action", `{"action":"transfer"}`, 200, hook.OutcomeInvalid},
		{"reject status 500", `{"action":"reject","status":500}`, 200, hook.OutcomeInvalid},
		{"reject reason CRLF", `{"action":"reject","status":486,"reason":"a\r\nVia: x"}`, 200, hook.OutcomeInvalid},
		{"agent of another workspace", `{"action":"route","agent_id":"x9"}`, 200, hook.OutcomeInvalid},
		{"unknown agent", `{"action":"route","agent_id":"nobody"}`, 200, hook.OutcomeInvalid},
		{"endpoint of another workspace", `{"action":"route","endpoint":"sip:x9@127.0.0.1:5099"}`, 200, hook.OutcomeInvalid},
		{"endpoint not sip", `{"action":"route","endpoint":"http://127.0.0.1/"}`, 200, hook.OutcomeInvalid},
		{"endpoint with headers", `{"action":"route","endpoint":"sip:a@127.0.0.1?Route=x"}`, 200, hook.OutcomeInvalid},
		{"header not X-", `{"action":"route","headers":{"Route":"<sip:evil>"}}`, 200, hook.OutcomeInvalid},
		{"header User-to-User-ish", `{"action":"route","headers":{"User-to-User-2":"00"}}`, 200, hook.OutcomeInvalid},
		{"header ours", `{"action":"route","headers":{"X-Callgate-Agent":"x9"}}`, 200, hook.OutcomeInvalid},
		{"header name space", `{"action":"route","headers":{"X-A B":"v"}}`, 200, hook.OutcomeInvalid},
		{"header value CRLF", `{"action":"route","headers":{"X-A":"v\r\nVia: SIP/2.0/UDP evil"}}`, 200, hook.OutcomeInvalid},
		{"header value long", `{"action":"route","headers":{"X-A":"` + long + `"}}`, 200, hook.OutcomeInvalid},
		{"header value number", `{"action":"route","headers":{"X-A":5}}`, 200, hook.OutcomeInvalid},
		{"too many headers", `{"action":"route","headers":` + many + `}`, 200, hook.OutcomeInvalid},
		{"too large", `{"action":"route","x":"` + strings.Repeat("z", hook.MaxBody) + `"}`, 200, hook.OutcomeInvalid},
		{"server error", `{"action":"route","agent_id":"b2"}`, 500, hook.OutcomeError},
		{"redirect", ``, 302, hook.OutcomeError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if tc.status == 302 {
					w.Header().Set("Location", "http://10.1.2.3/")
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c := newClient(t, nil, 0)
			d, res := ask(t, c, snapshot(srv.URL, routing.HookOnFailureReject, 0), numA, "+15550001111")
			if res.Outcome != tc.outcome || !res.Reject || res.Status != 480 || res.Err == nil {
				t.Fatalf("result %+v, want %s and a 480", res, tc.outcome)
			}
			if d.Agent.ID != "a1" || d.Candidates[0].URI != "sip:a1@127.0.0.1:5091" {
				t.Errorf("a failed answer changed the decision: %s %v", d.Agent.ID, d.Candidates)
			}
		})
	}
}

// Hook URLs dial through the SSRF guard: loopback is refused unless
// allowed (as for messaging deliveries).
func TestHookURLGuarded(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Write([]byte(`{"action":"route","agent_id":"b2"}`))
	}))
	defer srv.Close()
	c, err := hook.New(hook.Options{Endpoint: provisioning.CanonicalEndpointURI})
	if err != nil {
		t.Fatal(err)
	}
	d, res := ask(t, c, snapshot(srv.URL, routing.HookOnFailureStatic, 0), numA, "+15550001111")
	if res.Outcome != hook.OutcomeError || d.Agent.ID != "a1" || !strings.Contains(res.Err.Error(), "internal address") {
		t.Fatalf("result %+v agent %s", res, d.Agent.ID)
	}
	if hits.Load() != 0 {
		t.Error("the guarded client reached a loopback hook")
	}
}

// The pool is bounded: with every worker busy, Go refuses at once.
func TestHookPoolSaturated(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		w.Write([]byte(`{"action":"route"}`))
	}))
	defer srv.Close()
	c := newClient(t, nil, 1)
	h := &routing.Hook{URL: srv.URL, TimeoutMS: 5000}
	done := make(chan hook.Answer, 2)
	if !c.Go(h, "", hook.Request{CallID: "1"}, func(a hook.Answer) { done <- a }) {
		t.Fatal("first request refused")
	}
	if c.Go(h, "", hook.Request{CallID: "2"}, func(a hook.Answer) { done <- a }) {
		t.Fatal("second request accepted with one worker busy")
	}
	if a := c.Ask(context.Background(), h, "", hook.Request{CallID: "3"}); a.Outcome != hook.OutcomeError {
		t.Fatalf("Ask with the pool full: %+v", a)
	}
	close(release)
	if a := <-done; a.Outcome != hook.OutcomeRoute {
		t.Fatalf("first answer %+v", a)
	}
	if v := testutil.ToFloat64(c.Metrics().Saturated); v != 2 {
		t.Errorf("saturated %v", v)
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !c.Go(h, "", hook.Request{CallID: "4"}, func(hook.Answer) {}) {
			return io.ErrShortWrite
		}
		return nil
	})
}

// A hook written in Python's standard library verifies the signature
// with hmac/hashlib (an independent implementation) and routes.
func TestHookPythonStdlib(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 not installed (make deps installs it)")
		}
		t.Skip("python3 not installed")
	}
	portFile := filepath.Join(t.TempDir(), "port")
	cmd := exec.Command(py, filepath.Join("testdata", "hook_server.py"), secret, portFile)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill() // by PID
		_ = cmd.Wait()
	}()
	var port string
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		b, err := os.ReadFile(portFile)
		port = string(b)
		return err
	})
	url := "http://127.0.0.1:" + port + "/hook"
	c := newClient(t, nil, 0)
	snap := snapshot(url, routing.HookOnFailureReject, 5000)

	d, res := ask(t, c, snap, numA, "+15550001111")
	if res.Outcome != hook.OutcomeRoute || d.Agent.ID != "py-agent" ||
		len(res.Headers) != 1 || res.Headers[0] != (hook.Header{Name: "X-Py-Verified", Value: "call-1@carrier"}) {
		t.Fatalf("python hook: result %+v, agent %s", res, d.Agent.ID)
	}
	_, res = ask(t, c, snap, numA, "+15550000486")
	if !res.Reject || res.Status != 486 || res.Reason != "Busy (python)" {
		t.Fatalf("python reject: %+v", res)
	}
	// a wrong secret: the Python hook answers 401, on_failure rejects
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Endpoints: []routing.Endpoint{{Region: "eu", URI: "sip:a1@127.0.0.1:5091"}}})
	b.AddNumber(routing.Number{E164: numA, Workspace: "w", Status: routing.StatusActive, AgentID: "a1"})
	b.AddWorkspace(routing.Workspace{ID: "w", WebhookSecret: "not-the-secret",
		Hook: &routing.Hook{URL: url, OnFailure: routing.HookOnFailureReject, TimeoutMS: 5000}})
	_, res = ask(t, c, b.Build(), numA, "+15550001111")
	if res.Outcome != hook.OutcomeError || !res.Reject || !strings.Contains(res.Err.Error(), "401") {
		t.Fatalf("wrong secret: %+v", res)
	}
}
