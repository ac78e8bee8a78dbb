package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/callgate/callgate/audit"
)

// problemFields returns the fields a problem+json body names.
func problemFields(m map[string]any) []string {
	var out []string
	errs, _ := m["errors"].([]any)
	for _, e := range errs {
		out = append(out, e.(map[string]any)["field"].(string))
	}
	return out
}

func TestWorkspaceSettingsAPI(t *testing.T) {
	x := startTestAPI(t, audit.Limits{})
	ws, admin := x.wsKey, x.adminKey

	code, m := x.do(ws, "GET", "/v1/workspace", "")
	if code != 200 || m["id"] != "acme" || m["routing_hook"] != nil || m["webhook_secret_set"] != true {
		t.Fatalf("GET /v1/workspace: %d %v", code, m)
	}
	code, m = x.do(ws, "PATCH", "/v1/workspace", `{"routing_hook":{"url":"https://hooks.example.com/r","timeout_ms":800},"limits":{"max_concurrent_calls":10},"outbound":{"allowed_countries":["gb"],"allow_uan":true}}`)
	if code != 200 {
		t.Fatalf("PATCH: %d %v", code, m)
	}
	hook := m["routing_hook"].(map[string]any)
	if hook["url"] != "https://hooks.example.com/r" || hook["timeout_ms"] != 800.0 || hook["on_failure"] != "static" ||
		m["limits"].(map[string]any)["max_concurrent_calls"] != 10.0 || m["outbound"].(map[string]any)["allowed_countries"].([]any)[0] != "GB" {
		t.Fatalf("PATCH answer %v", m)
	}
	// A merge: a later limits patch keeps the hook and the other limit.
	_, m = x.do(ws, "PATCH", "/v1/workspace", `{"limits":{"max_calls_per_second":2}}`)
	if m["routing_hook"] == nil || m["limits"].(map[string]any)["max_concurrent_calls"] != 10.0 {
		t.Fatalf("merge lost fields: %v", m)
	}
	for _, tc := range []struct{ body, field string }{
		{`{"routing_hook":{"url":"http://hooks.example.com/"}}`, "routing_hook.url"},
		{`{"routing_hook":{"timeout_ms":9000}}`, "routing_hook.timeout_ms"},
		{`{"routing_hook":{"on_failure":"maybe"}}`, "routing_hook.on_failure"},
		{`{"limits":{"max_concurrent_calls":-3}}`, "limits.max_concurrent_calls"},
		{`{"limits":{"max_concurrent_calls":"ten"}}`, "limits.max_concurrent_calls"},
		{`{"outbound":{"allowed_countries":["ZZ"]}}`, "outbound.allowed_countries[0]"},
		{`{"outbound":{"allow_moon":true}}`, "allow_moon"},
		{`{"webhook_secret":"whsec_mine"}`, "webhook_secret"},
	} {
		code, m := x.do(ws, "PATCH", "/v1/workspace", tc.body)
		if code != 400 || strings.Join(problemFields(m), ",") != tc.field {
			t.Errorf("PATCH %s: %d %v; want 400 naming %s", tc.body, code, m, tc.field)
		}
	}
	code, m = x.do(ws, "PATCH", "/v1/workspace", `{"routing_hook":null}`)
	if code != 200 || m["routing_hook"] != nil {
		t.Fatalf("remove hook: %d %v", code, m)
	}

	// The admin key addresses any workspace; each key only its own routes.
	if code, m := x.do(admin, "GET", "/v1/workspaces/acme", ""); code != 200 || m["limits"].(map[string]any)["max_calls_per_second"] != 2.0 {
		t.Fatalf("admin GET: %d %v", code, m)
	}
	if code, m := x.do(admin, "PATCH", "/v1/workspaces/acme", `{"outbound":{"max_concurrent_calls":4}}`); code != 200 || m["outbound"].(map[string]any)["max_concurrent_calls"] != 4.0 {
		t.Fatalf("admin PATCH: %d %v", code, m)
	}
	for _, c := range []struct {
		key, method, path string
		want              int
	}{
		{admin, "GET", "/v1/workspaces/ghost", 404},
		{admin, "GET", "/v1/workspaces/a.b", 404},
		{ws, "GET", "/v1/workspaces/acme", 403},
		{ws, "PATCH", "/v1/workspaces/acme", 403},
		{admin, "GET", "/v1/workspace", 403},
		{admin, "POST", "/v1/workspace/webhook-secret", 403},
	} {
		body := ""
		if c.method == "PATCH" {
			body = `{}`
		}
		if code, m := x.do(c.key, c.method, c.path, body); code != c.want {
			t.Errorf("%s %s: %d %v; want %d", c.method, c.path, code, m, c.want)
		}
	}

	// Rotation: 201 with the secret once; never in GET, audit or logs.
	code, m = x.do(ws, "POST", "/v1/workspace/webhook-secret", "")
	secret, _ := m["webhook_secret"].(string)
	if code != 201 || !strings.HasPrefix(secret, "whsec_") || len(secret) != 70 {
		t.Fatalf("rotate: %d %v", code, m)
	}
	_, m = x.do(ws, "GET", "/v1/workspace", "")
	if b, _ := json.Marshal(m); strings.Contains(string(b), secret[6:]) || m["webhook_secret_set"] != true {
		t.Fatalf("GET shows the secret: %s", b)
	}
	recs, _ := x.records("?limit=20")
	found := map[string]bool{}
	for _, r := range recs {
		found[r.Action+" "+r.Result+" "+r.Workspace+" "+r.Target] = true
		if b, _ := json.Marshal(r); strings.Contains(string(b), secret[6:]) {
			t.Fatalf("audit record holds the secret: %s", b)
		}
	}
	for _, want := range []string{"webhook_secret.rotate ok acme acme", "workspace.update ok acme acme", "workspace.update failed acme acme"} {
		if !found[want] {
			t.Errorf("no audit record %q in %v", want, found)
		}
	}
	if strings.Contains(x.logs.String(), secret[6:]) {
		t.Fatal("the webhook secret was logged")
	}
}

func TestSIPCredentialsAPI(t *testing.T) {
	x := startTestAPI(t, audit.Limits{})
	ws := x.wsKey
	if code, m := x.do(ws, "POST", "/v1/agents", `{"id":"bot","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090"}],"source_cidrs":["203.0.113.0/24"]}`); code != 201 || m["source_cidrs"].([]any)[0] != "203.0.113.0/24" {
		t.Fatalf("create agent: %d %v", code, m)
	}
	if code, m := x.do(ws, "POST", "/v1/agents", `{"id":"bot2","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090"}],"source_cidrs":["nope"]}`); code != 400 || problemFields(m)[0] != "source_cidrs[0]" {
		t.Fatalf("bad source_cidrs: %d %v", code, m)
	}
	code, m := x.do(ws, "POST", "/v1/agents/bot/sip-credentials", "")
	user, _ := m["username"].(string)
	pass, _ := m["password"].(string)
	if code != 201 || user == "" || len(pass) < 24 || m["realm"] != "callgate" {
		t.Fatalf("create credential: %d %v", code, m)
	}
	code, m = x.do(ws, "GET", "/v1/agents/bot/sip-credentials", "")
	b, _ := json.Marshal(m)
	if code != 200 || !strings.Contains(string(b), user) || strings.Contains(string(b), pass) || strings.Contains(string(b), "ha1") {
		t.Fatalf("list: %d %s", code, b)
	}
	if code, _ := x.do(ws, "GET", "/v1/agents/ghost/sip-credentials", ""); code != 404 {
		t.Fatalf("list for an unknown agent: %d", code)
	}
	if code, _ := x.do(ws, "DELETE", "/v1/agents/bot/sip-credentials/ag_other", ""); code != 404 {
		t.Fatalf("revoke unknown: %d", code)
	}
	if code, _ := x.do(ws, "DELETE", "/v1/agents/bot/sip-credentials/"+user, ""); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	if code, _ := x.do(ws, "DELETE", "/v1/agents/bot/sip-credentials/"+user, ""); code != 404 {
		t.Fatalf("revoke twice: %d", code)
	}
	recs, _ := x.records("?limit=5")
	found := map[string]bool{}
	for _, r := range recs {
		found[r.Action+" "+r.Result+" "+r.Target] = true
	}
	for _, want := range []string{"sip_credential.create ok bot/" + user, "sip_credential.revoke ok bot/" + user, "sip_credential.revoke failed bot/" + user} {
		if !found[want] {
			t.Errorf("no audit record %q in %v", want, found)
		}
	}
	if strings.Contains(x.logs.String(), pass) {
		t.Fatal("the SIP password was logged")
	}
}

func TestNumberControlAPI(t *testing.T) {
	x := startTestAPI(t, audit.Limits{})
	ws := x.wsKey
	for _, id := range []string{"a", "b"} {
		if code, m := x.do(ws, "POST", "/v1/agents", `{"id":"`+id+`","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090"}]}`); code != 201 {
			t.Fatalf("create agent: %d %v", code, m)
		}
	}
	num := x.searchOne()
	if code, m := x.do(ws, "POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox","agent_id":"a"}`); code != 201 {
		t.Fatalf("buy: %d %v", code, m)
	}
	path := "/v1/numbers/" + strings.TrimPrefix(num, "+")
	code, m := x.do(ws, "PATCH", path, `{"agents":[{"agent_id":"a","weight":1},{"agent_id":"b","weight":9}],"fallback":[{"number":"+14155550100"}],"routing_hook":{"url":"https://h.example.com/"}}`)
	if code != 200 || m["agent_id"] != "a" || len(m["agents"].([]any)) != 2 || m["routing_hook"].(map[string]any)["timeout_ms"] != 1500.0 {
		t.Fatalf("PATCH control: %d %v", code, m)
	}
	if code, m := x.do(ws, "PATCH", path, `{"agents":[{"agent_id":"b","weight":1,"priority":2}]}`); code != 400 || problemFields(m)[0] != "agents[0].priority" && problemFields(m)[0] != "priority" {
		t.Fatalf("unknown field in agents: %d %v", code, m)
	}
	if code, m := x.do(ws, "DELETE", "/v1/agents/b", ""); code != 409 || !strings.Contains(m["detail"].(string), num) {
		t.Fatalf("delete an agent of the split: %d %v", code, m)
	}
	code, m = x.do(ws, "PATCH", path, `{"agent_id":"a"}`)
	if code != 200 || m["agents"] != nil || m["fallback"] == nil {
		t.Fatalf("agent_id clears agents only: %d %v", code, m)
	}
}
