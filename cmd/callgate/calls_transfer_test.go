package main

import (
	"strings"
	"testing"

	"github.com/callgate/callgate/config"
)

// TestCLICallsTransfer: `calls transfer` needs --to and a known mode
// (usage errors, nothing sent), and reports the API's answer: a call no
// node holds is 404. (The transfer of a live call: e2e
// TestAPITransferFromAnotherNode and the API conformance test.)
func TestCLICallsTransfer(t *testing.T) {
	n := startNode(t, func(c *config.Config) {})
	if r := cg(t, n, "", "calls", "transfer", "c1"); r.code != exitUsage || !strings.Contains(r.errOut, "--to is required") {
		t.Fatalf("missing --to: %s", r)
	}
	if r := cg(t, n, "", "calls", "transfer", "c1", "--to", "tel:+14155550143", "--mode", "warm"); r.code != exitUsage || !strings.Contains(r.errOut, "blind or bridge") {
		t.Fatalf("bad --mode: %s", r)
	}
	if r := cg(t, n, "", "calls", "transfer", "no-such-call", "--to", "tel:+14155550143"); r.code == 0 || !strings.Contains(r.errOut, "404") {
		t.Fatalf("unknown call: %s", r)
	}
}
