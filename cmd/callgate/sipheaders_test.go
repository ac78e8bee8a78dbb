package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCLIWorkspaceSIPHeaders: workspace set --sip-headers-allow/--keep
// change the header policy (the API's 400 names the field for a bad name).
func TestCLIWorkspaceSIPHeaders(t *testing.T) {
	n := startNode(t)
	if r := cg(t, n, "", "workspace", "set", "--sip-headers-allow", "X-Acme-*,User-to-User", "--sip-headers-keep", "X-Acme-Ticket"); r.code != 0 {
		t.Fatal(r)
	}
	r := cg(t, n, "", "workspace", "get", "--json")
	var ws struct {
		SIPHeaders struct {
			Allow []string `json:"allow"`
			Keep  []string `json:"keep"`
		} `json:"sip_headers"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &ws) != nil || strings.Join(ws.SIPHeaders.Allow, ",") != "X-Acme-*,User-to-User" ||
		strings.Join(ws.SIPHeaders.Keep, ",") != "X-Acme-Ticket" {
		t.Fatalf("get: %s", r)
	}
	if r := cg(t, n, "", "workspace", "set", "--sip-headers-keep", "X Bad"); r.code != 2 || !strings.Contains(r.errOut, "sip_headers.keep") {
		t.Fatalf("bad name: %s", r)
	}
}
