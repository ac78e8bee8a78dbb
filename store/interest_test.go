package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

// connInMsgs is how many messages srv has received from nc's connection,
// counting all that nc published before. The server adds a read
// buffer's messages to its counters after parsing the whole buffer, so
// after the PONG of a Flush is sent: the PING of a second Flush is
// parsed from a later buffer, after that.
func connInMsgs(t *testing.T, srv *server.Server, nc *nats.Conn) int64 {
	t.Helper()
	for i := 0; i < 2; i++ {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	cz, err := srv.Connz(&server.ConnzOptions{CID: cid})
	if err != nil || len(cz.Conns) != 1 {
		t.Fatalf("connz of client %d: %v %+v", cid, err, cz)
	}
	return cz.Conns[0].InMsgs
}

func publishLiveCall(p *calls.NATSPublisher, id string) {
	for _, kind := range []string{calls.Started, calls.Answered, calls.Ended} {
		p.Publish(calls.Event{Kind: kind, CallID: id, Number: "+12025550100", Workspace: "acme"})
	}
}

// TestLiveEventsAlwaysPublishedToExternalNATS: with nats.url the store
// has no interest check and the node's live publisher sends every event,
// subscribed to or not, as before.
func TestLiveEventsAlwaysPublishedToExternalNATS(t *testing.T) {
	srv := storetest.RunJetStreamServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{URL: srv.ClientURL()}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if st.SubjectInterest() != nil {
		t.Fatal("an interest check with an external NATS")
	}
	p := &calls.NATSPublisher{NC: st.NC, Region: "eu-west", Interest: st.SubjectInterest()} // as node/edges.go wires it
	in0 := connInMsgs(t, srv, st.NC)
	publishLiveCall(p, "unheard")
	// (the store's write probe may add its own message meanwhile)
	if in1 := connInMsgs(t, srv, st.NC); in1-in0 < 3 || p.Skipped() != 0 {
		t.Fatalf("external server received %d messages for 3 events, %d skipped; want at least 3 and 0", in1-in0, p.Skipped())
	}
}

// TestLiveEventsFollowRouteInterest: in a 3-server cluster, events from a
// node on server A reach a subscriber connected to server B (interest
// that A knows through its routes), and are not sent while nobody on any
// server subscribes.
func TestLiveEventsFollowRouteInterest(t *testing.T) {
	srvs := storetest.RunJetStreamCluster(t, 3)
	a, b := srvs[0], srvs[1]
	interest := store.Interest(a)
	if interest == nil {
		t.Fatal("no interest check for a routed server")
	}
	nc, err := nats.Connect("", nats.InProcessServer(a)) // the node's connection
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p := &calls.NATSPublisher{NC: nc, Region: "eu-west", Interest: interest}

	in0 := connInMsgs(t, a, nc)
	publishLiveCall(p, "unheard")
	if in1 := connInMsgs(t, a, nc); in1 != in0 || p.Skipped() != 3 {
		t.Fatalf("no subscriber in the cluster: A received %d messages, %d skipped; want 0 and 3", in1-in0, p.Skipped())
	}

	sc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sub, err := sc.SubscribeSync("callgate.calls.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}
	// B tells A about the subscription on its own time, as it would for
	// any publisher on A: wait until a plain publish from A reaches B.
	testwait.CheckFor(t, 30*time.Second, 0, func() error {
		if err := nc.Publish("callgate.calls.probe.ping", nil); err != nil {
			return err
		}
		if _, err := sub.NextMsg(50 * time.Millisecond); err != nil {
			return fmt.Errorf("a publish on A does not reach B yet: %w", err)
		}
		return nil
	})
	for ok := true; ok; { // drop the probes still in flight
		_, err := sub.NextMsg(200 * time.Millisecond)
		ok = err == nil
	}

	skipped := p.Skipped()
	publishLiveCall(p, "heard")
	for _, want := range []string{"started", "answered", "ended"} {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("B waiting for %s: %v", want, err)
		}
		if m.Subject != "callgate.calls.eu-west."+want {
			t.Fatalf("B got %s, want %s", m.Subject, want)
		}
	}
	if p.Skipped() != skipped {
		t.Fatalf("%d events skipped with a subscriber on B", p.Skipped()-skipped)
	}

	// B's subscriber leaves; once A knows, nothing is sent again.
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 30*time.Second, 10*time.Millisecond, func() error {
		if interest("callgate.calls.eu-west.started") {
			return fmt.Errorf("A still sees interest")
		}
		return nil
	})
	in2 := connInMsgs(t, a, nc)
	publishLiveCall(p, "gone")
	if in3 := connInMsgs(t, a, nc); in3 != in2 || p.Skipped() != skipped+3 {
		t.Fatalf("after B unsubscribed: A received %d messages, %d skipped; want 0 and 3", in3-in2, p.Skipped()-skipped)
	}
}
