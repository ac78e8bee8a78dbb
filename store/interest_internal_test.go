package store

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/callgate/callgate/gateway/calls"
)

// openQuiet opens an embedded store listening on a loopback port (for
// subscribers connecting as a dashboard would) with its write probe
// stopped, so that the only messages its server receives are the test's.
func openQuiet(t *testing.T) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := Open(ctx, Config{Listen: "127.0.0.1:0"}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	st.stopHealth()
	return st
}

// inMsgs is how many messages srv has received (from every client,
// route and leaf node), counting all that nc published before.
func inMsgs(t *testing.T, srv *server.Server, nc *nats.Conn) int64 {
	t.Helper()
	flushCounted(t, nc)
	v, err := srv.Varz(nil)
	if err != nil {
		t.Fatal(err)
	}
	return v.InMsgs
}

// flushCounted returns once the server has processed and counted what
// nc published so far. The server adds a read buffer's messages to its
// counters after parsing the whole buffer, so after the PONG of a Flush
// is sent: the PING of a second Flush is parsed from a later buffer,
// after that.
func flushCounted(t *testing.T, nc *nats.Conn) {
	t.Helper()
	for i := 0; i < 2; i++ {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}

func liveEvent(kind, id string) calls.Event {
	return calls.Event{Kind: kind, CallID: id, Number: "+12025550100", Workspace: "acme", Source: "sip"} // the publisher's region
}

// publishCall sends a call's three events, by Publish and by
// PublishEncoded (the node's Tee) in turn.
func publishCall(p *calls.NATSPublisher, id string) {
	for i, kind := range []string{calls.Started, calls.Answered, calls.Ended} {
		e := liveEvent(kind, id)
		if i%2 == 0 {
			p.Publish(e)
			continue
		}
		e.Time = time.Now()
		b, _ := calls.Encode(&e)
		p.PublishEncoded(e, b)
	}
}

// TestLiveEventsOnlyReachTheServerWhenSubscribed: on the embedded server,
// the node's live publisher sends nothing while nobody subscribes to
// callgate.calls.> (the server's in_msgs does not move; the same
// publisher without the interest check moves it by one per event), and
// everything once a subscriber's Flush has returned, until it
// unsubscribes.
func TestLiveEventsOnlyReachTheServerWhenSubscribed(t *testing.T) {
	st := openQuiet(t)
	interest := st.SubjectInterest()
	if interest == nil {
		t.Fatal("no interest check with the embedded server")
	}
	p := &calls.NATSPublisher{NC: st.NC, Region: "eu-west", Interest: interest}
	always := &calls.NATSPublisher{NC: st.NC, Region: "eu-west"}

	in0 := inMsgs(t, st.srv, st.NC)
	for i := 0; i < 10; i++ {
		publishCall(p, "quiet-"+strconv.Itoa(i))
	}
	in1 := inMsgs(t, st.srv, st.NC)
	if in1 != in0 {
		t.Fatalf("server received %d messages for 30 events nobody subscribes to, want 0", in1-in0)
	}
	if p.Skipped() != 30 {
		t.Fatalf("skipped %d events, want 30", p.Skipped())
	}
	publishCall(always, "control")
	if in2 := inMsgs(t, st.srv, st.NC); in2-in1 != 3 {
		t.Fatalf("without the interest check the server received %d messages for 3 events, want 3", in2-in1)
	}

	// A dashboard subscribes over TCP; its Flush returns once the server
	// has its SUB: every later event reaches it.
	sc, err := nats.Connect(st.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sub, err := sc.SubscribeSync("callgate.calls.eu-west.*")
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}
	in3 := inMsgs(t, st.srv, st.NC)
	publishCall(p, "heard")
	if in4 := inMsgs(t, st.srv, st.NC); in4-in3 != 3 {
		t.Fatalf("server received %d messages for 3 events with a subscriber, want 3", in4-in3)
	}
	for _, want := range []string{"started", "answered", "ended"} {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if m.Subject != "callgate.calls.eu-west."+want {
			t.Fatalf("got %s, want %s", m.Subject, want)
		}
		var e calls.Event
		if err := json.Unmarshal(m.Data, &e); err != nil || e.CallID != "heard" {
			t.Fatalf("event %s: %+v %v", m.Subject, e, err)
		}
	}
	if p.Skipped() != 30 {
		t.Fatalf("skipped %d events, want still 30", p.Skipped())
	}

	// Other regions' subjects are not listened to.
	other := &calls.NATSPublisher{NC: st.NC, Region: "us-east", Interest: interest}
	in5 := inMsgs(t, st.srv, st.NC)
	publishCall(other, "elsewhere")
	if in6 := inMsgs(t, st.srv, st.NC); in6 != in5 || other.Skipped() != 3 {
		t.Fatalf("us-east events: server received %d, skipped %d; want 0 and 3", in6-in5, other.Skipped())
	}

	// Once it unsubscribes, nothing is sent again.
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}
	in7 := inMsgs(t, st.srv, st.NC)
	publishCall(p, "gone")
	if in8 := inMsgs(t, st.srv, st.NC); in8 != in7 || p.Skipped() != 33 {
		t.Fatalf("after unsubscribing: server received %d, skipped %d; want 0 and 33", in8-in7, p.Skipped())
	}
}

// TestLiveEventsSubscriberJoiningMidway: while calls keep coming, a
// subscriber that joins gets every event published after its Flush
// returned, with no gap: the interest check never answers from a stale
// cache.
func TestLiveEventsSubscriberJoiningMidway(t *testing.T) {
	st := openQuiet(t)
	p := &calls.NATSPublisher{NC: st.NC, Region: "eu-west", Interest: st.SubjectInterest()}
	var seq atomic.Int64 // calls begun
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := seq.Add(1) - 1
			p.Publish(liveEvent(calls.Ended, strconv.FormatInt(n, 10)))
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	// Let the publisher run unheard for a while.
	deadline := time.Now().Add(30 * time.Second)
	for p.Skipped() < 2000 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d events skipped in 30s", p.Skipped())
		}
		time.Sleep(time.Millisecond)
	}

	sc, err := nats.Connect(st.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	msgs := make(chan *nats.Msg, 1<<20)
	if _, err := sc.ChanSubscribe("callgate.calls.>", msgs); err != nil {
		t.Fatal(err)
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}
	from := seq.Load() // every call begun from here on is published after the Flush
	for seq.Load() < from+2000 {
		if time.Now().After(deadline) {
			t.Fatalf("publisher stalled at %d", seq.Load())
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	last := seq.Load() - 1
	skipped := p.Skipped()
	// The last event is received once the server has processed it.
	if err := st.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	got := map[int64]bool{}
	first := int64(-1)
	for !got[last] {
		select {
		case m := <-msgs:
			var e calls.Event
			if err := json.Unmarshal(m.Data, &e); err != nil {
				t.Fatal(err)
			}
			n, err := strconv.ParseInt(e.CallID, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if first < 0 {
				first = n
			}
			got[n] = true
		case <-time.After(30 * time.Second):
			t.Fatalf("event %d not received in 30s (%d received)", last, len(got))
		}
	}
	if first > from {
		t.Fatalf("first event received is %d, but events from %d on were published after the subscriber's Flush", first, from)
	}
	for n := first; n <= last; n++ {
		if !got[n] {
			t.Fatalf("event %d missing (received %d..%d, subscriber ready before %d)", n, first, last, from)
		}
	}
	if int64(len(got))+int64(skipped) != last+1 {
		t.Fatalf("%d received + %d skipped != %d published", len(got), skipped, last+1)
	}
	t.Logf("%d events skipped before the subscriber, %d received (subscriber ready at %d)", skipped, len(got), from)
}

// BenchmarkSubjectInterest is the cost of the check on a node's embedded
// server (every bucket and stream of the store, so the sublist of a real
// node): with nobody subscribed (the sublist's tree) and with a
// subscriber (the result cache, once a message was matched).
func BenchmarkSubjectInterest(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := Open(ctx, Config{}, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	interest := st.SubjectInterest()
	subject := calls.Subject("eu-west", calls.Answered)
	run := func(want bool) func(b *testing.B) {
		return func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if interest(subject) != want {
					b.Fatalf("interest in %s: want %v", subject, want)
				}
			}
		}
	}
	b.Run("none", run(false))
	sub, err := st.NC.SubscribeSync("callgate.calls.>")
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := st.NC.Publish(subject, nil); err != nil { // the server matches it: a cached result
		b.Fatal(err)
	}
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		b.Fatal(err)
	}
	b.Run("subscribed", run(true))
}
