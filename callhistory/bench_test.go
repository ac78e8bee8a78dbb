package callhistory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/store/storetest"
)

// BenchmarkListAmongOthers lists 50 calls of one workspace stored among
// 1,000,000 calls of 20 other workspaces (one ended event each) on the
// embedded server: the listing reads the workspace's own stream only.
// Storing the million takes minutes on a loaded machine: run it once, e.g.
//
//	go test ./callhistory -run '^$' -bench ListAmongOthers -benchtime=3x
func BenchmarkListAmongOthers(b *testing.B) {
	const others, mine, nws = 1_000_000, 50, 20
	st := storetest.OpenEmbedded(b)
	js, err := jetstream.New(st.NC, jetstream.WithPublishAsyncMaxPending(512))
	if err != nil {
		b.Fatal(err)
	}
	ev := calls.Event{Kind: calls.Ended, Number: "+12025550100", Agent: "agent-1", Region: "eu-west", Carrier: "twilio",
		Origin: "purchased", Source: "sip", Status: 200, Reason: "bye_caller", SetupMillis: 812.5, Duration: 93 * time.Second,
		From: "+447700900123", To: "+12025550100", Direction: calls.Inbound}
	ctx := context.Background()
	for i := 0; i < nws; i++ {
		if err := st.EnsureHistory(ctx, fmt.Sprintf("ws-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.EnsureHistory(ctx, "mine"); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().Add(-24 * time.Hour)
	every := others / mine
	publish := func(ws, id string, at time.Time) {
		e := ev
		e.Workspace, e.CallID, e.Time = ws, id, at
		data, _ := json.Marshal(e)
		for try := 0; ; try++ {
			_, err := js.PublishAsync(callhistory.Subject(ws, id), data, jetstream.WithStallWait(time.Minute))
			if err == nil {
				return
			}
			if try == 100 {
				b.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // a reconnect of the loaded in-process connection
		}
	}
	start := time.Now()
	for i := 0; i < others; i++ {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		publish(fmt.Sprintf("ws-%d", i%nws), fmt.Sprintf("%d@carrier.example", i), at)
		if i%every == every/2 {
			publish("mine", fmt.Sprintf("mine-%d@carrier.example", i), at)
		}
		if i%10_000 == 0 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("publish acknowledgements did not arrive within a minute")
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish acknowledgements did not arrive within a minute")
	}
	b.Logf("stored %d events in %v", others+mine, time.Since(start).Round(time.Second))
	r := callhistory.NewReader(st, nil)
	b.Run("list50", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			p, err := r.List(context.Background(), callhistory.Query{Workspace: "mine", Limit: 50})
			if err != nil {
				b.Fatal(err)
			}
			if len(p.Calls) != mine || p.EventsRead != mine {
				b.Fatalf("listed %d calls reading %d events", len(p.Calls), p.EventsRead)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/list")
	})
}

// BenchmarkCallEvents is the whole per-call cost of a call's events on
// one node: the started, answered and ended events of an inbound SIP call
// through the publisher the node wires (core NATS callgate.calls.<region>.<kind>
// and the history recorder) into the embedded JetStream server, waiting
// until every event is acknowledged as stored. One op is one call (three
// events); allocations count the in-process server's too.
//
//	go test ./callhistory -run '^$' -bench 'CallEvents$' -benchmem -benchtime=20000x -count 5
func BenchmarkCallEvents(b *testing.B) {
	st := storetest.OpenEmbedded(b)
	m := callhistory.NewMetrics(nil)
	rec, err := callhistory.NewRecorder(st.NC, st, callhistory.RecorderOptions{Metrics: m})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rec.Close(ctx)
	}()
	events := callhistory.Tee{&calls.NATSPublisher{NC: st.NC, Region: "eu-west"}, rec}
	started := calls.Event{Kind: calls.Started, Number: "+12025550100", Workspace: "acme", Agent: "agent-1",
		Region: "eu-west", Carrier: "twilio", Origin: "purchased", Source: "sip", Direction: calls.Inbound,
		From: "+447700900123", To: "+12025550100", Endpoint: "sip:bot@10.0.0.7:5070", HookOutcome: "none"}
	stored := func() int { return int(testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventStored))) }
	waitStored := func(n int) {
		deadline := time.Now().Add(time.Minute)
		for stored() < n {
			if lost := testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventDropped)) +
				testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventError)); lost > 0 {
				b.Fatalf("%v events dropped or refused", lost)
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d events stored after a minute", stored(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// The workspace's stream exists before the clock starts.
	events.Publish(calls.Event{Kind: calls.Started, CallID: "warm-up", Workspace: "acme", Number: "+12025550100"})
	waitStored(1)
	base := 1
	id := make([]byte, 0, 64)
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id = append(strconv.AppendInt(id[:0], int64(i), 10), "-a84b4c76e66710@carrier.example"...)
		e := started
		e.CallID, e.Time = string(id), time.Now()
		events.Publish(e)
		e.Kind, e.Time, e.Status, e.SetupMillis = calls.Answered, time.Now(), 200, 812.5
		events.Publish(e)
		e.Kind, e.Time, e.Reason, e.Duration = calls.Ended, time.Now(), "bye_caller", 93*time.Second
		events.Publish(e)
		// The recorder's queue (DefaultQueue events) must not overflow:
		// wait for the store every 1,000 calls, as a node's load would pace it.
		if (i+1)%1000 == 0 {
			waitStored(base + 3*(i+1))
		}
	}
	waitStored(base + 3*b.N)
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time (user and system) the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
