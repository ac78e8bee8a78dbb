package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testwait"
)

// TestCLICallsPlace: `calls place` prints the new call's id; a retry with
// the same --idempotency-key prints the same id; a caller ID the
// workspace does not hold is refused with the API's 403 and its field.
func TestCLICallsPlace(t *testing.T) {
	n := startNode(t, func(c *config.Config) {
		c.Carriers.Sandbox.TerminationURI = "sip:127.0.0.1:9" // discard: placed, never answered
		c.SIP.Probe.Interval = time.Hour                      // the endpoint stays up (not probed)
	})
	r := cg(t, n, "", "numbers", "search", "--area-code", "228", "--limit", "1", "--json")
	var res struct {
		Numbers []struct {
			PhoneNumber string `json:"phone_number"`
		}
	}
	if err := json.Unmarshal([]byte(r.out), &res); err != nil || len(res.Numbers) != 1 {
		t.Fatalf("search: %v %s", err, r)
	}
	num := res.Numbers[0].PhoneNumber
	if r := cg(t, n, "", "agents", "create", "bot", "--endpoint", "us-east=sip:bot@127.0.0.1:5090"); r.code != 0 {
		t.Fatal(r)
	}
	if r := cg(t, n, "", "numbers", "buy", num, "--yes", "--agent", "bot"); r.code != 0 {
		t.Fatal(r)
	}
	testwait.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error { // the number reaches the routing table
		r = cg(t, n, "", "calls", "place", "--from", num, "--to", "+1 202 555 0143", "--agent", "bot", "--idempotency-key", "k1")
		if r.code != 0 {
			return fmt.Errorf("place: %s", r)
		}
		return nil
	})
	if !regexp.MustCompile(`^call_[0-9a-f]{24}\n$`).MatchString(r.out) {
		t.Fatalf("place: %s", r)
	}
	if again := cg(t, n, "", "calls", "place", "--from", num, "--to", "+12025550143", "--agent", "bot", "--idempotency-key", "k1"); again.out != r.out {
		t.Fatalf("retry placed another call: %s vs %s", again, r)
	}
	r = cg(t, n, "", "calls", "place", "--from", "+12025550177", "--to", "+12025550143", "--agent", "bot")
	if r.code == 0 || !strings.Contains(r.errOut, "403 Caller ID not allowed") {
		t.Fatalf("foreign caller ID: %s", r)
	}
	if r := cg(t, n, "", "calls", "place", "--to", "+12025550143", "--agent", "bot"); r.code != exitUsage {
		t.Fatalf("missing --from: %s", r)
	}
}
