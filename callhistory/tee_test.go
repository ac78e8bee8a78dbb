package callhistory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
)

// countingPublisher is a plain calls.Publisher (no encoded events).
type countingPublisher struct{ got []calls.Event }

func (p *countingPublisher) Publish(e calls.Event) { p.got = append(p.got, e) }

// The node's publisher: subscribers of callgate.calls.> and the history
// get the same bytes, json.Marshal's of the event with one time set.
func TestTeeSendsOneEncodingToSubjectsAndHistory(t *testing.T) {
	st, rec, m := recorder(t)
	sub, err := st.NC.SubscribeSync("callgate.calls.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := st.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	plain := &countingPublisher{}
	tee := callhistory.Tee{&calls.NATSPublisher{NC: st.NC, Region: "eu-west"}, rec, plain}
	e := calls.Event{Kind: calls.Started, CallID: "a84b4c76e66710@pbx.example.com", Workspace: "acme", Number: "+12025550100",
		Source: "sip", From: "+447700900123", Headers: map[string]string{"X-Ticket": "<42>"}} // no time: the Tee sets it
	before := time.Now()
	tee.Publish(e)

	live, err := sub.NextMsg(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if live.Subject != "callgate.calls.eu-west.started" {
		t.Errorf("subject %s", live.Subject)
	}
	waitStored(t, m, 1)
	hs, err := st.History(context.Background(), "acme")
	if err != nil || hs == nil {
		t.Fatalf("history stream: %v", err)
	}
	stored, err := hs.GetLastMsgForSubject(context.Background(), callhistory.BatchSubject("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(live.Data, stored.Data) {
		t.Errorf("subject got\n%s\nhistory got\n%s", live.Data, stored.Data)
	}
	if len(plain.got) != 1 {
		t.Fatalf("plain publisher got %d events", len(plain.got))
	}
	withTime := e
	withTime.Time = plain.got[0].Time
	if withTime.Time.Before(before) {
		t.Errorf("time %v set before the publish (%v)", withTime.Time, before)
	}
	want, _ := json.Marshal(withTime)
	if !bytes.Equal(live.Data, want) {
		t.Errorf("published\n%s\njson.Marshal of the event\n%s", live.Data, want)
	}
	var back calls.Event
	if err := json.Unmarshal(stored.Data, &back); err != nil || !back.Time.Equal(withTime.Time) || back.CallID != e.CallID ||
		back.Headers["X-Ticket"] != "<42>" {
		t.Errorf("decoded %+v, %v", back, err)
	}
}
