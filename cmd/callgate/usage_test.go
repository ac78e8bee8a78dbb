package main

import (
	"context"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning"
)

// `callgate credits` lists an outbound call's usage charge with its call id.
func TestCreditsShowUsageCharges(t *testing.T) {
	n := startNode(t)
	if _, err := n.Service().ChargeUsage(context.Background(), provisioning.UsageCharge{Workspace: n.Config().Bootstrap.Workspace,
		CallID: "call-7f3a", Destination: "+442079460000", Minutes: 2, Amount: 10}); err != nil {
		t.Fatal(err)
	}
	r := cg(t, n, "", "credits")
	if r.code != 0 || !strings.Contains(r.out, "CALL") {
		t.Fatalf("credits: %s", r)
	}
	var line string
	for _, l := range strings.Split(r.out, "\n") {
		if strings.Contains(l, "usage") {
			line = l
		}
	}
	for _, want := range []string{"-10", "+442079460000", "call-7f3a", "2 min"} {
		if !strings.Contains(line, want) {
			t.Fatalf("usage line %q lacks %q:\n%s", line, want, r.out)
		}
	}
}
