package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

func TestCLIWorkspaceSettings(t *testing.T) {
	n := startNode(t)
	r := cg(t, n, "", "workspace", "set", "--routing-hook-url", "https://hooks.example.com/r", "--routing-hook-on-failure", "reject",
		"--max-concurrent-calls", "5", "--outbound-countries", "US,ca", "--allow-premium")
	if r.code != 0 {
		t.Fatal(r)
	}
	r = cg(t, n, "", "workspace", "get", "--json")
	var ws struct {
		RoutingHook *struct {
			URL       string `json:"url"`
			OnFailure string `json:"on_failure"`
		} `json:"routing_hook"`
		Limits struct {
			MaxConcurrentCalls int `json:"max_concurrent_calls"`
		} `json:"limits"`
		Outbound struct {
			AllowedCountries []string `json:"allowed_countries"`
			AllowPremium     bool     `json:"allow_premium"`
		} `json:"outbound"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &ws) != nil || ws.RoutingHook == nil || ws.RoutingHook.OnFailure != "reject" ||
		ws.Limits.MaxConcurrentCalls != 5 || strings.Join(ws.Outbound.AllowedCountries, ",") != "CA,US" || !ws.Outbound.AllowPremium {
		t.Fatalf("get: %s", r)
	}
	// The API's 400 is a usage error (2) naming the field; nothing sent
	// without a change.
	if r := cg(t, n, "", "workspace", "set", "--routing-hook-url", "http://hooks.example.com/"); r.code != 2 || !strings.Contains(r.errOut, "routing_hook.url") {
		t.Fatalf("bad hook: %s", r)
	}
	if r := cg(t, n, "", "workspace", "set"); r.code != 2 {
		t.Fatalf("nothing to change: %s", r)
	}
	if r := cg(t, n, "", "workspace", "set", "--no-routing-hook"); r.code != 0 || !strings.Contains(r.out, "routing_hook") {
		t.Fatalf("remove hook: %s", r)
	}
	if r := cg(t, n, "", "workspace", "rotate-secret"); r.code != 0 || !strings.Contains(r.out, "whsec_") {
		t.Fatalf("rotate: %s", r)
	}
}

func TestCLIAgentCredentialsAndNumberControl(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{})
	n := startNode(t, func(c *config.Config) { c.Carriers.Twilio.APIBase = fake.URL() })
	for _, id := range []string{"bot", "bot2"} {
		if r := cg(t, n, "", "agents", "create", id, "--endpoint", "us-east=sip:"+id+"@127.0.0.1:5090", "--source-cidr", "203.0.113.0/24"); r.code != 0 {
			t.Fatal(r)
		}
	}
	// agents update keeps the source ranges it is not asked to change.
	if r := cg(t, n, "", "agents", "update", "bot", "--name", "Bot"); r.code != 0 || !strings.Contains(r.out, "203.0.113.0/24") {
		t.Fatalf("update: %s", r)
	}
	r := cg(t, n, "", "agents", "credentials", "create", "bot", "--json")
	var cred struct{ Username, Password string }
	if r.code != 0 || json.Unmarshal([]byte(r.out), &cred) != nil || len(cred.Password) < 24 {
		t.Fatalf("credentials create: %s", r)
	}
	if r := cg(t, n, "", "agents", "credentials", "list", "bot"); r.code != 0 || !strings.Contains(r.out, cred.Username) || strings.Contains(r.out, cred.Password) {
		t.Fatalf("credentials list: %s", r)
	}
	if r := cg(t, n, "", "agents", "credentials", "revoke", "bot", cred.Username); r.code != 0 {
		t.Fatalf("revoke: %s", r)
	}
	if r := cg(t, n, "", "agents", "credentials", "revoke", "bot", cred.Username); r.code != 3 {
		t.Fatalf("revoke twice: %s; want exit 3", r)
	}

	r = cg(t, n, "", "numbers", "search", "--area-code", "228", "--limit", "1", "--json")
	var res struct {
		Numbers []struct {
			PhoneNumber string `json:"phone_number"`
		}
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &res) != nil || len(res.Numbers) != 1 {
		t.Fatal(r)
	}
	num := res.Numbers[0].PhoneNumber
	if r := cg(t, n, "", "numbers", "buy", num, "--agent", "bot", "--yes"); r.code != 0 {
		t.Fatal(r)
	}
	r = cg(t, n, "", "numbers", "set", num, "--agents", "bot:3,bot2:1", "--sms-agent", "bot2", "--fallback", "agent:bot2,sip:backup@127.0.0.1:5091,+14155550100", "--json")
	var got struct {
		AgentID  string           `json:"agent_id"`
		Agents   []map[string]any `json:"agents"`
		Fallback []map[string]any `json:"fallback"`
		SMS      string           `json:"sms_agent_id"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &got) != nil || got.AgentID != "bot" || len(got.Agents) != 2 || len(got.Fallback) != 3 || got.SMS != "bot2" {
		t.Fatalf("numbers set: %s", r)
	}
	if r := cg(t, n, "", "numbers", "set", num, "--agents", "bot:zero"); r.code != 2 {
		t.Fatalf("bad --agents: %s", r)
	}
	if r := cg(t, n, "", "agents", "delete", "bot2"); r.code != 4 || !strings.Contains(r.errOut, num) {
		t.Fatalf("delete an agent in use: %s; want exit 4 naming the number", r)
	}

	r = cg(t, n, "", "integrations", "create", "--carrier", "twilio", "--credential", "account_sid="+fake.AccountSID(), "--credential", "auth_token="+fake.AuthToken(), "--json")
	var it struct{ ID string }
	if r.code != 0 || json.Unmarshal([]byte(r.out), &it) != nil {
		t.Fatal(r)
	}
	r = cg(t, n, "trunk-secret\n", "integrations", "set-termination", it.ID, "--uri", "sip:acme.pstn.twilio.com", "--username", "trunk", "--password", "-")
	if r.code != 0 || !strings.Contains(r.out, "acme.pstn.twilio.com") || strings.Contains(r.out, "trunk-secret") {
		t.Fatalf("set-termination: %s", r)
	}
	if r := cg(t, n, "", "integrations", "set-termination", it.ID, "--uri", "http://x"); r.code != 2 {
		t.Fatalf("bad termination URI: %s", r)
	}
}
