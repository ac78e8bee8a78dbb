package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

func TestCLIIntegrationSetSRTP(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{})
	n := startNode(t, func(c *config.Config) { c.Carriers.Twilio.APIBase = fake.URL() })
	r := cg(t, n, "", "integrations", "create", "--carrier", "twilio", "--credential", "account_sid="+fake.AccountSID(), "--credential", "auth_token="+fake.AuthToken(), "--json")
	var it struct{ ID string }
	if r.code != 0 || json.Unmarshal([]byte(r.out), &it) != nil {
		t.Fatal(r)
	}
	r = cg(t, n, "", "integrations", "set-srtp", it.ID, "required", "--json")
	var got struct{ SRTP string }
	if r.code != 0 || json.Unmarshal([]byte(r.out), &got) != nil || got.SRTP != "required" {
		t.Fatalf("set-srtp: %s", r)
	}
	if r := cg(t, n, "", "integrations", "set-srtp", it.ID, "always"); r.code != 2 || !strings.Contains(r.errOut, "srtp") {
		t.Fatalf("bad policy: %s; want exit 2 naming srtp", r)
	}
}
