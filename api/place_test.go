package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/placer"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store/storetest"
)

// usage and caps stand in for h-limits' UsageMeter and Limiter at their
// interface boundary: usage refuses every call; caps is always full.
type usage struct{}

func (usage) Authorize(ws, dest string) error            { return errors.New("balance 0") }
func (usage) Answered(string, string, string, time.Time) {}
func (usage) Ended(string, time.Time)                    {}

type caps struct{}

func (caps) Admit(ws, dir string, c calls.LimitCaps) (string, time.Duration, bool) {
	return "outbound.max_calls_per_second", 1500 * time.Millisecond, false
}
func (caps) Release(string, string) {}

// TestPlaceCallProblems: POST /v1/calls maps the placer's refusals to
// problems: 402 short of credits, 503 with the limiter's Retry-After
// (rounded up to whole seconds) and the rule, 403 naming from.
func TestPlaceCallProblems(t *testing.T) {
	ctx := context.Background()
	svc := provisioning.New(storetest.OpenEmbedded(t), provisioning.Options{Sandbox: true})
	if _, _, err := svc.CreateWorkspace(ctx, "acme", "Acme", 0); err != nil {
		t.Fatal(err)
	}
	key, err := svc.CreateKey(ctx, "acme", false)
	if err != nil {
		t.Fatal(err)
	}
	b := routing.NewBuilder()
	b.AddNumber(routing.Number{E164: "+12125550100", Workspace: "acme", Carrier: "sandbox", Status: routing.StatusActive})
	b.AddAgent(routing.Agent{ID: "bot", Workspace: "acme", Endpoints: []routing.Endpoint{{Region: "local", URI: "sip:bot@127.0.0.1:5999"}}})
	tab := &routing.Table{}
	tab.Store(b.Build())
	post := func(p *placer.Placer, body string) (*http.Response, map[string]any) {
		t.Helper()
		srv := httptest.NewServer(New(Options{Service: svc, Placer: p}))
		defer srv.Close()
		req, _ := http.NewRequest("POST", srv.URL+"/v1/calls", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}
	call := `{"from":"+12125550100","to":"+12125550155","agent_id":"bot"}`
	resp, m := post(placer.New(placer.Config{}, placer.Deps{Table: tab, Usage: usage{}}), call)
	if resp.StatusCode != 402 || resp.Header.Get("Content-Type") != "application/problem+json" || m["title"] != "Insufficient credits" {
		t.Fatalf("402: %d %v", resp.StatusCode, m)
	}
	resp, m = post(placer.New(placer.Config{}, placer.Deps{Table: tab, Limits: caps{}}), call)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "2" || !strings.Contains(m["detail"].(string), "outbound.max_calls_per_second") {
		t.Fatalf("503: %d %q %v", resp.StatusCode, resp.Header.Get("Retry-After"), m)
	}
	resp, m = post(placer.New(placer.Config{}, placer.Deps{Table: tab}), `{"from":"+12125550199","to":"+12125550155","agent_id":"bot"}`)
	errs, _ := m["errors"].([]any)
	if resp.StatusCode != 403 || len(errs) != 1 || errs[0].(map[string]any)["field"] != "from" {
		t.Fatalf("403: %d %v", resp.StatusCode, m)
	}
	resp, m = post(nil, call)
	if resp.StatusCode != 503 {
		t.Fatalf("no placer: %d %v", resp.StatusCode, m)
	}
}
