package node_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// TestAuditIntegrationsAndImports: integration changes and imports on a
// whole node leave audit records (success, partial and failure) that the
// admin reads; carrier credentials appear in none of them.
func TestAuditIntegrationsAndImports(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{
		{PhoneNumber: "+14155550101", Voice: true, SMS: true}, {PhoneNumber: "+14155550102", Voice: true, SMS: true},
	}})
	n, _ := startNodeWithLog(t, func(c *config.Config) { c.Carriers.Twilio.APIBase = fake.URL() })
	defer n.Close()
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	admin := httpClient{t: t, base: n.HTTPAddr(), key: n.AdminKey()}

	if code, _ := c.do("POST", "/v1/integrations", `{"name":"acme","carrier":"twilio","credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"wrongtoken123"}}`); code != 400 {
		t.Fatalf("bad credentials: %d, want 400", code)
	}
	code, m := c.do("POST", "/v1/integrations", `{"name":"acme","carrier":"twilio","credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"`+fake.AuthToken()+`"}}`)
	if code != 201 {
		t.Fatalf("integration: %d %v", code, m)
	}
	intID := m["id"].(string)
	if code, m := c.do("POST", "/v1/integrations/"+intID+"/import", `{"phone_numbers":["+14155550101"]}`); code != 201 {
		t.Fatalf("import: %d %v", code, m)
	}
	if code, m := c.do("POST", "/v1/integrations/"+intID+"/import", `{"phone_numbers":["+14155550102","+14155550199"]}`); code != 200 {
		t.Fatalf("mixed import: %d %v", code, m)
	}
	for _, num := range []string{"+14155550101", "+14155550102"} {
		if code, m := c.do("DELETE", "/v1/numbers/"+num, ""); code != 204 {
			t.Fatalf("release %s: %d %v", num, code, m)
		}
	}
	if code, m := c.do("DELETE", "/v1/integrations/"+intID, ""); code != 204 {
		t.Fatalf("delete integration: %d %v", code, m)
	}

	code, m = admin.do("GET", "/v1/audit?workspace=default", "")
	if code != 200 {
		t.Fatalf("GET /v1/audit: %d %v", code, m)
	}
	type rec struct {
		Action, Result, Target, Detail, Actor, Workspace string
		Status                                           int
	}
	var got []rec
	for _, r := range m["records"].([]any) {
		b, _ := json.Marshal(r)
		if strings.Contains(string(b), fake.AuthToken()) || strings.Contains(string(b), "wrongtoken123") {
			t.Errorf("an audit record holds carrier credentials: %s", b)
		}
		var x rec
		_ = json.Unmarshal(b, &x)
		got = append(got, x)
	}
	want := []rec{ // newest first
		{"integration.delete", "ok", intID, "", "workspace", "default", 204},
		{"number.release", "ok", "+14155550102", "", "workspace", "default", 204},
		{"number.release", "ok", "+14155550101", "", "workspace", "default", 204},
		{"number.import", "partial", intID, "imported 1 of 2", "workspace", "default", 200},
		{"number.import", "ok", intID, "imported 1 of 1", "workspace", "default", 201},
		{"integration.create", "ok", intID, "", "workspace", "default", 201},
		{"integration.create", "failed", "", "", "workspace", "default", 400},
	}
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g := got[i]
		if i == len(want)-1 {
			g.Detail = "" // the carrier's refusal, worded by the adapter
		}
		if g != want[i] {
			t.Errorf("record %d: %+v, want %+v", i, g, want[i])
		}
	}
}
