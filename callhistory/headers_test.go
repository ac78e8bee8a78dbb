package callhistory_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
)

// TestKeptHeadersAndSessionExpiryAreRecorded: the headers a workspace
// keeps, on the started and ended events, are merged into the call's
// record (a later value of a name wins), and a dialog ended by its
// session timer shows end_reason session_expired as an answered call.
func TestKeptHeadersAndSessionExpiryAreRecorded(t *testing.T) {
	st, rec, m := recorder(t)
	id := "kept@10.0.0.1"
	rec.Publish(calls.Event{Kind: calls.Started, CallID: id, Time: t0, Workspace: "acme", Number: "+12025550100",
		Headers: map[string]string{"X-Customer": "42", "X-Ticket": "from-caller"}})
	rec.Publish(calls.Event{Kind: calls.Answered, CallID: id, Time: t0.Add(time.Second), Workspace: "acme", Status: 200})
	rec.Publish(calls.Event{Kind: calls.Ended, CallID: id, Time: t0.Add(100 * time.Second), Workspace: "acme", Status: 200,
		Reason: "session_expired", Duration: 99 * time.Second, Headers: map[string]string{"X-Ticket": "T-1", "X-Outcome": "sale"}})
	waitStored(t, m, 3)
	c, err := callhistory.NewReader(st, nil).Get(context.Background(), "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"X-Customer": "42", "X-Ticket": "T-1", "X-Outcome": "sale"}
	if !reflect.DeepEqual(c.Headers, want) {
		t.Errorf("headers %v, want %v", c.Headers, want)
	}
	if c.EndReason != "session_expired" || c.Outcome != callhistory.OutcomeAnswered || c.DurationSeconds != 99 {
		t.Errorf("record: end_reason %q outcome %q duration %v", c.EndReason, c.Outcome, c.DurationSeconds)
	}
}
