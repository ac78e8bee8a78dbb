package callhistory_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
)

// A call's dtmf events are kept in its record in order of time, capped;
// another workspace's digits never show.
func TestCallRecordKeepsItsDigits(t *testing.T) {
	st, rec, m := recorder(t)
	id := "dtmf-call@10.0.0.1"
	n := answeredCall(rec, "acme", id, t0)
	dtmf := func(at time.Duration, ws, from, via, digits string) {
		rec.Publish(calls.Event{Kind: calls.DTMF, CallID: id, Time: t0.Add(at), Workspace: ws, Digits: digits, DTMFFrom: from, DTMFVia: via})
		n++
	}
	dtmf(3*time.Second, "acme", "agent", "rfc4733", "12#")
	dtmf(2*time.Second, "acme", "caller", "rfc4733", "5") // stored after, happened before
	dtmf(4*time.Second, "acme", "caller", "info", "*")
	dtmf(5*time.Second, "other", "caller", "info", "9") // same Call-ID, another workspace
	waitStored(t, m, n)
	r := callhistory.NewReader(st, nil)
	c, err := r.Get(context.Background(), "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range c.DTMF {
		got = append(got, fmt.Sprintf("%s/%s/%s", d.From, d.Via, d.Digits))
	}
	if want := "caller/rfc4733/5 agent/rfc4733/12# caller/info/*"; strings.Join(got, " ") != want {
		t.Fatalf("digits %v, want %s", got, want)
	}
	if c.Outcome != callhistory.OutcomeAnswered || c.EndReason != "bye_caller" {
		t.Fatalf("dtmf events changed the record: %+v", c)
	}

	// capped
	id2 := "many-digits"
	n += answeredCall(rec, "acme", id2, t0)
	for i := 0; i < callhistory.MaxDTMF+20; i++ {
		rec.Publish(calls.Event{Kind: calls.DTMF, CallID: id2, Time: t0.Add(time.Duration(i) * time.Millisecond), Workspace: "acme", Digits: "1", DTMFFrom: "caller", DTMFVia: "rfc4733"})
		n++
	}
	waitStored(t, m, n)
	c, err = r.Get(context.Background(), "acme", id2)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.DTMF) != callhistory.MaxDTMF {
		t.Fatalf("%d dtmf entries kept, want the cap %d", len(c.DTMF), callhistory.MaxDTMF)
	}
}
