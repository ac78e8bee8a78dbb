package calls_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/store/storetest"
)

// The live publisher asks Interest for each event's subject (the event's
// region, else its own) and publishes only what it is told someone
// listens to; a skipped event costs no allocation.
func TestNATSPublisherAsksInterestPerSubject(t *testing.T) {
	srv := storetest.RunServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("callgate.calls.>")
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	p := &calls.NATSPublisher{NC: nc, Region: "eu-west", Interest: func(subject string) bool {
		asked = append(asked, subject)
		return subject == "callgate.calls.us-east.ended"
	}}
	p.Publish(calls.Event{Kind: calls.Started, CallID: "a"})
	p.Publish(calls.Event{Kind: calls.Ended, CallID: "b", Region: "us-east"})
	e := calls.Event{Kind: calls.Answered, CallID: "c", Time: time.Now()}
	data, _ := calls.Encode(&e)
	p.PublishEncoded(e, data)
	want := []string{"callgate.calls.eu-west.started", "callgate.calls.us-east.ended", "callgate.calls.eu-west.answered"}
	if len(asked) != len(want) {
		t.Fatalf("asked %v, want %v", asked, want)
	}
	for i := range want {
		if asked[i] != want[i] {
			t.Fatalf("asked %v, want %v", asked, want)
		}
	}
	if p.Skipped() != 2 {
		t.Fatalf("skipped %d, want 2", p.Skipped())
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil || m.Subject != "callgate.calls.us-east.ended" {
		t.Fatalf("got %v %v, want the us-east ended event", m, err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("skipped event published: %s", m.Subject)
	}

	quiet := &calls.NATSPublisher{NC: nc, Region: "eu-west", Interest: func(string) bool { return false }}
	quiet.PublishEncoded(e, data) // the subject is built once
	if n := testing.AllocsPerRun(100, func() { quiet.PublishEncoded(e, data) }); n != 0 {
		t.Fatalf("a skipped event allocates %v times", n)
	}
}
