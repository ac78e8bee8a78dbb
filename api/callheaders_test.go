package api

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
)

// TestCallShowsKeptHeaders: GET /v1/calls/{id} shows the SIP headers the
// workspace keeps (sip_headers.keep) as an object of names to values,
// and a call ended by its session timer with end_reason session_expired.
func TestCallShowsKeptHeaders(t *testing.T) {
	x := startCallsAPI(t)
	at := time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)
	x.publish(calls.Event{Kind: calls.Started, CallID: "h1@10.0.0.1", Time: at, Workspace: "acme", Number: "+12025550100",
		Headers: map[string]string{"X-Customer": "42"}})
	x.publish(calls.Event{Kind: calls.Ended, CallID: "h1@10.0.0.1", Time: at.Add(time.Minute), Workspace: "acme", Status: 200,
		Reason: "session_expired", Duration: 50 * time.Second, Headers: map[string]string{"X-Ticket": "T-1"}})
	x.stored()
	resp, b := x.get(x.acme, "/v1/calls/"+url.PathEscape("h1@10.0.0.1"))
	var c struct {
		Headers   map[string]string `json:"headers"`
		EndReason string            `json:"end_reason"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &c) != nil {
		t.Fatalf("show: %d %s", resp.StatusCode, b)
	}
	if len(c.Headers) != 2 || c.Headers["X-Customer"] != "42" || c.Headers["X-Ticket"] != "T-1" || c.EndReason != "session_expired" {
		t.Errorf("show: %s", b)
	}
}
