package api

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/store/storetest"
)

// callsAPI is an API with a call history on an embedded store: workspaces
// "acme" and "beta", and calls recorded through a real Recorder.
type callsAPI struct {
	t                 *testing.T
	srv               *httptest.Server
	acme, beta, admin string
	rec               *callhistory.Recorder
	m                 *callhistory.Metrics
	published         int
}

func startCallsAPI(t *testing.T) *callsAPI {
	t.Helper()
	st := storetest.OpenEmbedded(t)
	box, err := secrets.NewBox(secrets.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	svc := provisioning.New(st, provisioning.Options{Sandbox: true, Box: box})
	ctx := context.Background()
	_, acme, err := svc.CreateWorkspace(ctx, "acme", "Acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, beta, err := svc.CreateWorkspace(ctx, "beta", "Beta", 0)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := svc.CreateKey(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	m := callhistory.NewMetrics(nil)
	rec, err := callhistory.NewRecorder(st.NC, st, callhistory.RecorderOptions{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rec.Close(ctx)
	})
	srv := httptest.NewServer(New(Options{Service: svc, Calls: callhistory.NewReader(st, nil)}))
	t.Cleanup(srv.Close)
	return &callsAPI{t: t, srv: srv, acme: acme, beta: beta, admin: admin, rec: rec, m: m}
}

func (x *callsAPI) publish(e calls.Event) {
	x.rec.Publish(e)
	x.published++
}

// stored waits until every published event is stored.
func (x *callsAPI) stored() {
	x.t.Helper()
	testwait.CheckFor(x.t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := testutil.ToFloat64(x.m.Events.WithLabelValues(callhistory.EventStored)); int(got) < x.published {
			return fmt.Errorf("%v of %d events stored", got, x.published)
		}
		return nil
	})
}

func (x *callsAPI) get(key, path string, hdr ...string) (*http.Response, []byte) {
	x.t.Helper()
	req, err := http.NewRequest("GET", x.srv.URL+path, nil)
	if err != nil {
		x.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		x.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

type callsPage struct {
	Calls []callhistory.Call `json:"calls"`
	Next  *string            `json:"next"`
}

func (x *callsAPI) list(key, query string) callsPage {
	x.t.Helper()
	resp, b := x.get(key, "/v1/calls"+query)
	if resp.StatusCode != 200 {
		x.t.Fatalf("GET /v1/calls%s: %d %s", query, resp.StatusCode, b)
	}
	var p callsPage
	if err := json.Unmarshal(b, &p); err != nil {
		x.t.Fatal(err)
	}
	return p
}

func ids(cs []callhistory.Call) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.ID)
	}
	return strings.Join(s, " ")
}

var callT0 = time.Date(2026, 11, 3, 9, 0, 0, 0, time.UTC)

func (x *callsAPI) answered(ws, id, from string, at time.Time) {
	x.publish(calls.Event{Kind: calls.Started, CallID: id, Time: at, Workspace: ws, Number: "+12025550100", Agent: "bot", From: from, To: "+12025550100"})
	x.publish(calls.Event{Kind: calls.Answered, CallID: id, Time: at.Add(time.Second), Workspace: ws, Number: "+12025550100", Agent: "bot", SetupMillis: 1000})
	x.publish(calls.Event{Kind: calls.Ended, CallID: id, Time: at.Add(31 * time.Second), Workspace: ws, Number: "+12025550100", Agent: "bot", Status: 200, Reason: "bye_agent", Duration: 30 * time.Second})
}

func TestCallsListShowAndScope(t *testing.T) {
	x := startCallsAPI(t)
	for i := 0; i < 4; i++ {
		x.answered("acme", fmt.Sprintf("c%d@10.0.0.1", i), "+447700900123", callT0.Add(time.Duration(i)*time.Minute))
	}
	x.answered("beta", "beta-call", "+447700900999", callT0.Add(time.Hour))
	x.publish(calls.Event{Kind: calls.Started, CallID: "busy/1", Time: callT0.Add(10 * time.Minute), Workspace: "acme", Number: "+12025550177", Direction: calls.Outbound, Agent: "bot"})
	x.publish(calls.Event{Kind: calls.Ended, CallID: "busy/1", Time: callT0.Add(11 * time.Minute), Workspace: "acme", Number: "+12025550177", Direction: calls.Outbound, Agent: "bot", Status: 486})
	x.stored()

	p := x.list(x.acme, "")
	if got := ids(p.Calls); got != "busy/1 c3@10.0.0.1 c2@10.0.0.1 c1@10.0.0.1 c0@10.0.0.1" || p.Next != nil {
		t.Fatalf("acme lists %q (next %v)", got, p.Next)
	}
	if got := ids(x.list(x.beta, "").Calls); got != "beta-call" {
		t.Errorf("beta lists %q", got)
	}
	if got := ids(x.list(x.admin, "?workspace=beta").Calls); got != "beta-call" {
		t.Errorf("admin lists beta's %q", got)
	}
	for q, want := range map[string]string{
		"?outcome=busy":                                      "busy/1",
		"?direction=outbound":                                "busy/1",
		"?direction=inbound&limit=2":                         "c3@10.0.0.1 c2@10.0.0.1",
		"?number=%2B12025550177":                             "busy/1",
		"?number=+12025550100&agent=bot":                     "c3@10.0.0.1 c2@10.0.0.1 c1@10.0.0.1 c0@10.0.0.1",
		"?from=2026-11-03T09:01:00Z&to=2026-11-03T09:03:00Z": "c2@10.0.0.1 c1@10.0.0.1",
		"?outcome=answered&workspace=acme":                   "c3@10.0.0.1 c2@10.0.0.1 c1@10.0.0.1 c0@10.0.0.1",
	} {
		if got := ids(x.list(x.acme, q).Calls); got != want {
			t.Errorf("%s: %q, want %q", q, got, want)
		}
	}
	// Pages: every call once.
	var all []string
	q := "?limit=2"
	for i := 0; ; i++ {
		p := x.list(x.acme, q)
		all = append(all, ids(p.Calls))
		if p.Next == nil {
			break
		}
		if i > 5 {
			t.Fatal("paging does not end")
		}
		q = "?limit=2&cursor=" + url.QueryEscape(*p.Next)
	}
	if got := strings.Join(all, " "); got != "busy/1 c3@10.0.0.1 c2@10.0.0.1 c1@10.0.0.1 c0@10.0.0.1" {
		t.Errorf("pages: %q", got)
	}

	// One call: its record; another workspace's id is 404.
	resp, b := x.get(x.acme, "/v1/calls/"+url.PathEscape("c1@10.0.0.1"))
	var c callhistory.Call
	if resp.StatusCode != 200 || json.Unmarshal(b, &c) != nil {
		t.Fatalf("show: %d %s", resp.StatusCode, b)
	}
	if c.ID != "c1@10.0.0.1" || c.From != "+447700900123" || c.Outcome != "answered" || c.DurationSeconds != 30 || c.SetupMillis == nil || *c.SetupMillis != 1000 ||
		c.SIPStatus != 200 || c.EndReason != "bye_agent" || c.AnsweredAt == nil || c.EndedAt == nil || !c.StartedAt.Equal(callT0.Add(time.Minute)) {
		t.Errorf("show: %s", b)
	}
	if resp, _ := x.get(x.acme, "/v1/calls/"+url.PathEscape("busy/1")); resp.StatusCode != 200 {
		t.Errorf("a call id with a slash: %d", resp.StatusCode)
	}
	for _, tc := range []struct{ key, path string }{
		{x.acme, "/v1/calls/beta-call"}, {x.beta, "/v1/calls/c1@10.0.0.1"}, {x.acme, "/v1/calls/nope"},
		{x.admin, "/v1/calls/beta-call?workspace=acme"},
	} {
		resp, b := x.get(tc.key, tc.path)
		if resp.StatusCode != 404 || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") {
			t.Errorf("%s: %d %s", tc.path, resp.StatusCode, b)
		}
	}
	if resp, _ := x.get(x.admin, "/v1/calls/beta-call?workspace=beta"); resp.StatusCode != 200 {
		t.Errorf("admin shows beta's call: %d", resp.StatusCode)
	}
}

func TestCallsBadRequestsNameTheField(t *testing.T) {
	x := startCallsAPI(t)
	for q, field := range map[string]string{
		"?limit=0":                 "limit",
		"?limit=501":               "limit",
		"?outcome=great":           "outcome",
		"?direction=sideways":      "direction",
		"?from=yesterday":          "from",
		"?to=2026-13-01T00:00:00Z": "to",
		"?from=2026-11-03T10:00:00Z&to=2026-11-03T09:00:00Z": "to",
		"?number=banana":       "number",
		"?agent=Not%20An%20Id": "agent",
		"?cursor=Zm9yZ2Vk":     "cursor",
		"?colour=red":          "colour",
		"?workspace=beta":      "workspace", // a workspace key reads only its own
	} {
		resp, b := x.get(x.acme, "/v1/calls"+q)
		var p Problem
		_ = json.Unmarshal(b, &p)
		if resp.StatusCode != 400 || len(p.Errors) == 0 || p.Errors[0].Field != field {
			t.Errorf("%s: %d %s (want 400 naming %s)", q, resp.StatusCode, b, field)
		}
	}
	if resp, b := x.get(x.admin, "/v1/calls"); resp.StatusCode != 400 || !strings.Contains(string(b), "workspace") {
		t.Errorf("admin without workspace: %d %s", resp.StatusCode, b)
	}
	if resp, _ := x.get("nokey", "/v1/calls"); resp.StatusCode != 401 {
		t.Errorf("bad key: %d", resp.StatusCode)
	}
	// A workspace with no call yet: an empty list, not null.
	if resp, b := x.get(x.beta, "/v1/calls"); resp.StatusCode != 200 || !strings.Contains(strings.Join(strings.Fields(string(b)), ""), `"calls":[]`) {
		t.Errorf("no calls: %d %s", resp.StatusCode, b)
	}
}

func TestCallsCSVExport(t *testing.T) {
	x := startCallsAPI(t)
	x.answered("acme", "=cmd|'/c calc'!A1", "@SUM(1+1)", callT0)
	x.answered("acme", "plain", "+447700900123", callT0.Add(time.Minute))
	x.stored()
	resp, b := x.get(x.acme, "/v1/calls?limit=1", "Accept", "text/csv")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		t.Fatalf("csv: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	next := resp.Header.Get("Callgate-Next-Cursor")
	if next == "" {
		t.Fatal("no Callgate-Next-Cursor on a page that has a next")
	}
	rows, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if err != nil || len(rows) != 2 || rows[0][0] != "id" || rows[1][0] != "plain" || rows[1][2] != "'+447700900123" {
		t.Fatalf("csv rows %q, %v", rows, err)
	}
	resp, b = x.get(x.acme, "/v1/calls?limit=1&cursor="+url.QueryEscape(next), "Accept", "text/csv;q=0.9, application/json;q=0.5")
	rows, err = csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if err != nil || resp.StatusCode != 200 || len(rows) != 2 || rows[1][0] != "'=cmd|'/c calc'!A1" || rows[1][2] != "'@SUM(1+1)" {
		t.Fatalf("second page %q, %v", rows, err)
	}
	if resp.Header.Get("Callgate-Next-Cursor") != "" {
		t.Error("a next cursor on the last page")
	}
	// JSON when preferred.
	if resp, _ := x.get(x.acme, "/v1/calls", "Accept", "application/json, text/csv;q=0.5"); !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("JSON preferred: %s", resp.Header.Get("Content-Type"))
	}
}
