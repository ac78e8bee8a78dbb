package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

// testAPI is an API on a real embedded JetStream store with the sandbox
// carrier, a workspace "acme" (1000 credits) and an admin key.
type testAPI struct {
	t        *testing.T
	srv      *httptest.Server
	reg      *prometheus.Registry
	audit    *audit.Log
	api      *API
	wsKey    string
	adminKey string
	logs     *lockedBuffer
}

// lockedBuffer collects log lines written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startTestAPI(t *testing.T, limits audit.Limits) *testAPI {
	t.Helper()
	st := storetest.OpenEmbedded(t)
	reg := prometheus.NewRegistry()
	box, err := secrets.NewBox(secrets.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	svc := provisioning.New(st, provisioning.Options{Sandbox: true, Log: log, Box: box,
		Carriers: provisioning.CarrierSettings{Metrics: carrier.NewMetrics(reg)}})
	ctx := context.Background()
	_, wsKey, err := svc.CreateWorkspace(ctx, "acme", "Acme", 1000)
	if err != nil {
		t.Fatal(err)
	}
	adminKey, err := svc.CreateKey(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	al := audit.New(st, audit.Options{Log: log, Metrics: audit.NewMetrics(reg), Limits: limits})
	a := New(Options{Service: svc, Log: log, Metrics: NewMetrics(reg), Audit: al})
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return &testAPI{t: t, srv: srv, reg: reg, audit: al, api: a, wsKey: wsKey, adminKey: adminKey, logs: logs}
}

// do sends a request and returns its status and decoded JSON body.
func (x *testAPI) do(key, method, path, body string, hdr ...string) (int, map[string]any) {
	x.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, x.srv.URL+path, rd)
	if err != nil {
		x.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		x.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// records reads GET /v1/audit with the admin key.
func (x *testAPI) records(query string) ([]audit.Record, *uint64) {
	x.t.Helper()
	req, _ := http.NewRequest("GET", x.srv.URL+"/v1/audit"+query, nil)
	req.Header.Set("Authorization", "Bearer "+x.adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		x.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		x.t.Fatalf("GET /v1/audit%s: %d %s", query, resp.StatusCode, b)
	}
	var out struct {
		Records    []audit.Record `json:"records"`
		NextBefore *uint64        `json:"next_before"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		x.t.Fatal(err)
	}
	return out.Records, out.NextBefore
}

// searchOne returns a sandbox number for sale in area code 228.
func (x *testAPI) searchOne() string {
	x.t.Helper()
	code, m := x.do(x.wsKey, "GET", "/v1/marketplace/numbers?country=US&area_code=228&limit=1", "")
	if code != 200 {
		x.t.Fatalf("search: %d %v", code, m)
	}
	return m["numbers"].([]any)[0].(map[string]any)["phone_number"].(string)
}

// TestAuditRecordsEachAction performs each audited operation, succeeding
// and failing, and finds one record per request with the right fields.
func TestAuditRecordsEachAction(t *testing.T) {
	x := startTestAPI(t, audit.Limits{})
	num := x.searchOne()
	admin, ws := x.adminKey, x.wsKey
	cases := []struct {
		name                 string
		key, method, path    string
		body                 string
		wantStatus           int
		action, result       string
		workspace, actor     string
		target, detailSubstr string
	}{
		{"create workspace", admin, "POST", "/v1/workspaces", `{"id":"beta","credits":5}`, 201,
			audit.ActionWorkspaceCreate, audit.ResultOK, "beta", audit.ActorAdmin, "beta", ""},
		{"create workspace twice", admin, "POST", "/v1/workspaces", `{"id":"beta"}`, 409,
			audit.ActionWorkspaceCreate, audit.ResultFailed, "beta", audit.ActorAdmin, "beta", "already exists"},
		{"create workspace bad id", admin, "POST", "/v1/workspaces", `{"id":"Not Valid"}`, 400,
			audit.ActionWorkspaceCreate, audit.ResultFailed, "", audit.ActorAdmin, "Not Valid", "id"},
		{"top up", admin, "POST", "/v1/workspaces/acme/credits", `{"amount":50,"reason":"promo"}`, 201,
			audit.ActionCreditsTopUp, audit.ResultOK, "acme", audit.ActorAdmin, "acme", "amount 50"},
		{"top up nobody", admin, "POST", "/v1/workspaces/ghost/credits", `{"amount":50}`, 404,
			audit.ActionCreditsTopUp, audit.ResultFailed, "ghost", audit.ActorAdmin, "ghost", "amount 50"},
		{"purchase", ws, "POST", "/v1/numbers", `{"phone_number":"` + num + `","carrier":"sandbox"}`, 201,
			audit.ActionNumberPurchase, audit.ResultOK, "acme", audit.ActorWorkspace, num, ""},
		{"purchase again", ws, "POST", "/v1/numbers", `{"phone_number":"` + num + `","carrier":"sandbox"}`, 409,
			audit.ActionNumberPurchase, audit.ResultFailed, "acme", audit.ActorWorkspace, num, ""},
		{"release", ws, "DELETE", "/v1/numbers/" + num, "", 204,
			audit.ActionNumberRelease, audit.ResultOK, "acme", audit.ActorWorkspace, num, ""},
		{"release again", ws, "DELETE", "/v1/numbers/" + num, "", 404,
			audit.ActionNumberRelease, audit.ResultFailed, "acme", audit.ActorWorkspace, num, ""},
		{"import from nothing", ws, "POST", "/v1/integrations/nope/import", `{"phone_numbers":["+12285550100"]}`, 404,
			audit.ActionNumberImport, audit.ResultFailed, "acme", audit.ActorWorkspace, "nope", ""},
		{"create integration invalid", ws, "POST", "/v1/integrations", `{"carrier":"pigeon"}`, 400,
			audit.ActionIntegrationCreate, audit.ResultFailed, "acme", audit.ActorWorkspace, "", "carrier"},
		{"delete integration missing", ws, "DELETE", "/v1/integrations/nope", "", 404,
			audit.ActionIntegrationDelete, audit.ResultFailed, "acme", audit.ActorWorkspace, "nope", ""},
		{"bad key", "cg_not_a_key", "GET", "/v1/numbers", "", 401,
			audit.ActionAuthFailed, audit.ResultDenied, "", audit.ActorAnonymous, "", "not valid"},
		{"no key", "", "POST", "/v1/numbers", `{}`, 401,
			audit.ActionAuthFailed, audit.ResultDenied, "", audit.ActorAnonymous, "", "no API key"},
		{"workspace key on admin route", ws, "POST", "/v1/workspaces", `{"id":"gamma"}`, 403,
			audit.ActionAuthForbidden, audit.ResultDenied, "acme", audit.ActorWorkspace, "", "admin endpoint"},
		{"admin key on workspace route", admin, "GET", "/v1/numbers", "", 403,
			audit.ActionAuthForbidden, audit.ResultDenied, "", audit.ActorAdmin, "", "workspace endpoint"},
	}
	for i, c := range cases {
		rid := fmt.Sprintf("req-%d", i)
		code, body := x.do(c.key, c.method, c.path, c.body, "X-Request-Id", rid)
		if code != c.wantStatus {
			t.Fatalf("%s: %s %s: %d %v, want %d", c.name, c.method, c.path, code, body, c.wantStatus)
		}
		recs, _ := x.records("?limit=1")
		if len(recs) != 1 {
			t.Fatalf("%s: no audit record", c.name)
		}
		r := recs[0]
		if r.RequestID != rid {
			t.Fatalf("%s: newest record is for request %q, want %q (%+v)", c.name, r.RequestID, rid, r)
		}
		if r.Action != c.action || r.Result != c.result || r.Status != c.wantStatus || r.Workspace != c.workspace ||
			r.Actor != c.actor || r.Target != c.target {
			t.Errorf("%s: record %+v\nwant action=%s result=%s status=%d workspace=%q actor=%s target=%q",
				c.name, r, c.action, c.result, c.wantStatus, c.workspace, c.actor, c.target)
		}
		if !strings.Contains(r.Detail, c.detailSubstr) {
			t.Errorf("%s: detail %q does not mention %q", c.name, r.Detail, c.detailSubstr)
		}
		if r.RemoteAddr != "127.0.0.1" || r.Time.IsZero() || time.Since(r.Time) > time.Minute {
			t.Errorf("%s: remote_addr %q time %v", c.name, r.RemoteAddr, r.Time)
		}
		if c.key != "" && (r.KeyID == "" || strings.Contains(c.key, r.KeyID)) {
			t.Errorf("%s: key_id %q must identify the key without being part of it", c.name, r.KeyID)
		}
		if c.key == ws && r.KeyID != keyID(ws) {
			t.Errorf("%s: key_id %q, want %q", c.name, r.KeyID, keyID(ws))
		}
	}
	// Each record is logged too, without keys; numbers masked in the log.
	logs := x.logs.String()
	for _, want := range []string{`msg=audit action=workspace.create result=ok status=201 workspace=beta actor=admin`,
		`msg=audit action=number.purchase result=ok status=201 workspace=acme actor=workspace key_id=` + keyID(ws) + ` target=` + num[:5] + "***" + num[len(num)-4:],
		`msg=audit action=auth.failed result=denied status=401`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(logs, ws) || strings.Contains(logs, admin) || strings.Contains(logs, num) {
		t.Error("the log holds an API key or an unmasked number")
	}
	// Reads are not audited: listing numbers left no record.
	before, _ := x.records("?limit=500")
	x.do(ws, "GET", "/v1/numbers", "")
	if after, _ := x.records("?limit=500"); len(after) != len(before) {
		t.Errorf("a read was audited: %d records, then %d", len(before), len(after))
	}
	// No record holds a key.
	for _, r := range before {
		b, _ := json.Marshal(r)
		if strings.Contains(string(b), ws) || strings.Contains(string(b), admin) {
			t.Errorf("record %d holds an API key: %s", r.Seq, b)
		}
	}
}

// TestAuditReadFiltersAndPaging reads with each filter and pages through
// everything newest first; a workspace key gets 403.
func TestAuditReadFiltersAndPaging(t *testing.T) {
	x := startTestAPI(t, audit.Limits{})
	for i := 0; i < 7; i++ {
		x.do(x.adminKey, "POST", "/v1/workspaces/acme/credits", fmt.Sprintf(`{"amount":%d}`, i+1))
	}
	x.do(x.adminKey, "POST", "/v1/workspaces", `{"id":"beta"}`)
	x.do(x.adminKey, "POST", "/v1/workspaces/beta/credits", `{"amount":100}`)
	x.do("", "GET", "/v1/numbers", "")

	all, next := x.records("")
	if len(all) != 10 || next != nil {
		t.Fatalf("all: %d records (next %v), want 10 and no next page", len(all), next)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq >= all[i-1].Seq {
			t.Fatalf("not newest first: %d after %d", all[i].Seq, all[i-1].Seq)
		}
	}
	if all[0].Action != audit.ActionAuthFailed {
		t.Errorf("newest is %s, want %s", all[0].Action, audit.ActionAuthFailed)
	}

	recs, _ := x.records("?workspace=acme")
	if len(recs) != 7 {
		t.Errorf("workspace=acme: %d records, want 7", len(recs))
	}
	for _, r := range recs {
		if r.Workspace != "acme" {
			t.Errorf("workspace=acme returned %+v", r)
		}
	}
	recs, _ = x.records("?action=credits.top_up&workspace=beta")
	if len(recs) != 1 || recs[0].Detail != "amount 100" {
		t.Errorf("action=credits.top_up&workspace=beta: %+v", recs)
	}
	recs, _ = x.records("?action=workspace.create")
	if len(recs) != 1 || recs[0].Target != "beta" {
		t.Errorf("action=workspace.create: %+v", recs)
	}

	// Pages of 3 walk every top-up of acme, newest first, once each.
	var paged []audit.Record
	q := "?workspace=acme&action=credits.top_up&limit=3"
	for i := 0; ; i++ {
		if i > 5 {
			t.Fatal("paging does not end")
		}
		page, next := x.records(q)
		paged = append(paged, page...)
		if next == nil {
			break
		}
		q = fmt.Sprintf("?workspace=acme&action=credits.top_up&limit=3&before=%d", *next)
	}
	if len(paged) != 7 {
		t.Fatalf("paged %d records, want 7", len(paged))
	}
	for i, r := range paged {
		if want := fmt.Sprintf("amount %d", 7-i); r.Detail != want {
			t.Errorf("page record %d: %q, want %q", i, r.Detail, want)
		}
	}

	if code, _ := x.do(x.wsKey, "GET", "/v1/audit", ""); code != 403 {
		t.Errorf("workspace key: %d, want 403", code)
	}
	if code, _ := x.do("", "GET", "/v1/audit", ""); code != 401 {
		t.Errorf("no key: %d, want 401", code)
	}
	for q, field := range map[string]string{
		"?limit=0": "limit", "?limit=501": "limit", "?before=x": "before", "?action=drop.tables": "action",
		"?workspace=Not%20Valid": "workspace", "?colour=red": "colour",
	} {
		code, body := x.do(x.adminKey, "GET", "/v1/audit"+q, "")
		errs, _ := body["errors"].([]any)
		if code != 400 || len(errs) == 0 || errs[0].(map[string]any)["field"] != field {
			t.Errorf("GET /v1/audit%s: %d %v, want 400 naming %s", q, code, body, field)
		}
	}
}

// TestAuditFailedKeyFloodBounded sends many bad keys from one source: a
// few records, then one summary with the count, not one record each.
func TestAuditFailedKeyFloodBounded(t *testing.T) {
	x := startTestAPI(t, audit.Limits{Window: time.Hour, PerSource: 3, Total: 10})
	const n = 200
	for i := 0; i < n; i++ {
		if code, _ := x.do(fmt.Sprintf("cg_guess_%d", i), "GET", "/v1/numbers", ""); code != 401 {
			t.Fatalf("bad key %d: %d, want 401", i, code)
		}
	}
	recs, _ := x.records("?action=auth.failed&limit=500")
	if len(recs) != 3 {
		t.Fatalf("%d bad keys left %d records before the window ended, want 3", n, len(recs))
	}
	x.audit.Flush(context.Background())
	recs, _ = x.records("?action=auth.failed&limit=500")
	if len(recs) != 4 {
		t.Fatalf("after the window: %d records, want 3 and a summary", len(recs))
	}
	s := recs[0]
	if s.Result != audit.ResultSuppressed || s.Count != n-3 || s.RemoteAddr != "127.0.0.1" || !strings.Contains(s.Detail, "127.0.0.1") {
		t.Errorf("summary %+v, want result suppressed, count %d from 127.0.0.1", s, n-3)
	}
	// A quiet window writes no summary.
	x.audit.Flush(context.Background())
	if recs, _ = x.records("?action=auth.failed&limit=500"); len(recs) != 4 {
		t.Errorf("an empty window wrote a summary: %d records", len(recs))
	}
	// The next window records a few again.
	x.do("cg_guess_again", "GET", "/v1/numbers", "")
	if recs, _ = x.records("?action=auth.failed&limit=500"); len(recs) != 5 || recs[0].Result != audit.ResultDenied {
		t.Errorf("next window: %d records, newest %+v", len(recs), recs[0])
	}
	got := testutil.ToFloat64(x.audit.Metrics().Records.WithLabelValues(audit.OutcomeSuppressed))
	if got != n-3 {
		t.Errorf("callgate_audit_records_total{outcome=suppressed} = %v, want %d", got, n-3)
	}
}

// TestAuditStoreDownStillAnswers: with NATS gone, a request is still
// answered as before; its audit record goes to the log (error level) and
// is counted as a write error instead of being lost silently.
func TestAuditStoreDownStillAnswers(t *testing.T) {
	srv := storetest.RunJetStreamServer(t)
	st, err := store.Open(context.Background(), store.Config{URL: srv.ClientURL()}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	reg := prometheus.NewRegistry()
	al := audit.New(st, audit.Options{Log: log, Metrics: audit.NewMetrics(reg)})
	a := New(Options{Service: provisioning.New(st, provisioning.Options{Log: log}), Log: log, Audit: al})
	hs := httptest.NewServer(a)
	t.Cleanup(hs.Close)
	srv.Shutdown()
	srv.WaitForShutdown()

	resp, err := http.Get(hs.URL + "/v1/numbers") // no key: 401 without asking NATS
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("no key with NATS down: %d, want 401", resp.StatusCode)
	}
	// The answer may come before the record has failed (it is flushed
	// first); wait for the failure to be counted.
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if got := testutil.ToFloat64(al.Metrics().Records.WithLabelValues(audit.OutcomeWriteError)); got != 1 {
			return fmt.Errorf("write errors counted: %v, want 1", got)
		}
		return nil
	})
	if l := logs.String(); !strings.Contains(l, "level=ERROR msg=\"audit: record not stored\" action=auth.failed") {
		t.Errorf("the unstored record is not in the log:\n%s", l)
	}
}
