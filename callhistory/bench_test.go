package callhistory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
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
// through the publisher the node wires (core NATS callgate.calls.<region>.<kind>,
// where nobody subscribes here so nothing is sent, and the history
// recorder) into the embedded JetStream server, waiting
// until every event is acknowledged as stored. One op is one call (three
// events); allocations count the in-process server's too.
//
// Beside CPU it reports what a user of the edge pays for outside the Go
// heap: bytes and write calls to files (/proc/self/io: the history
// stream's block files; the in-process NATS connection is not a file),
// bytes stored in the stream, the process's context switches, and how
// many times a goroutine was scheduled to run (gruns), per call.
//
//	go test ./callhistory -run '^$' -bench 'CallEvents$' -benchmem -benchtime=20000x -count 5
func BenchmarkCallEvents(b *testing.B) { benchCallEvents(b, 0, true) }

// BenchmarkCallEventsUngated is BenchmarkCallEvents with every live event
// published, as with an external NATS (and as every node did before the
// live publisher asked the embedded server for interest): nobody
// subscribes, so the difference is what the check saves.
//
//	go test ./callhistory -run '^$' -bench 'CallEvents(Ungated)?$' -benchmem -benchtime=20000x -count 1
func BenchmarkCallEventsUngated(b *testing.B) { benchCallEvents(b, 0, false) }

// BenchmarkCallEventsPaced is BenchmarkCallEvents at 4,000 calls/s (the
// rate of the SIP bench, bench/sip/run.sh), as an edge takes them: the
// store's batching and its goroutines' wake-ups then look like a node's
// under load, not like a flat-out loop's (the pacing's own cost, a
// nanosleep per event, is in its CPU figure). One op is still one call; take
// at least 8,000 calls (two seconds), e.g.
//
//	go test ./callhistory -run '^$' -bench 'CallEventsPaced$' -benchmem -benchtime=12000x -count 5
func BenchmarkCallEventsPaced(b *testing.B) { benchCallEvents(b, 4000, true) }

// BenchmarkCallEventsPacedUngated is BenchmarkCallEventsPaced with every
// live event published (BenchmarkCallEventsUngated).
func BenchmarkCallEventsPacedUngated(b *testing.B) { benchCallEvents(b, 4000, false) }

// benchCallEvents publishes b.N calls' events, rate calls per second
// (0: as fast as they go). gated: the live publisher is wired as the node
// wires it (no event published while nobody subscribes); else every
// live event is published.
func benchCallEvents(b *testing.B, rate float64, gated bool) {
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
	live := &calls.NATSPublisher{NC: st.NC, Region: "eu-west"}
	if gated {
		live.Interest = st.SubjectInterest() // node/edges.go
	}
	events := callhistory.Tee{live, rec}
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
	io0, cs0, gs0 := procIO(b), ctxSwitches(b), goroutineRuns()
	st0, err := st.JS.Stream(context.Background(), "CALLGATE_HISTORY_acme")
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime(b)
	b.ResetTimer()
	// Paced: one event every 1/(3 rate) s, slept for with nanosleep on
	// a locked thread (time.Sleep wakes on the runtime's millisecond
	// ticks), so events come one by one as an edge's calls send them,
	// not in bursts.
	start, every, sent := time.Now(), time.Duration(0), 0
	if rate > 0 {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		every = time.Duration(float64(time.Second) / (3 * rate))
	}
	pace := func() {
		if rate == 0 {
			return
		}
		if wait := time.Until(start.Add(time.Duration(sent) * every)); wait > 0 {
			ts := syscall.NsecToTimespec(wait.Nanoseconds())
			_ = syscall.Nanosleep(&ts, nil)
		}
		sent++
	}
	for i := 0; i < b.N; i++ {
		id = append(strconv.AppendInt(id[:0], int64(i), 10), "-a84b4c76e66710@carrier.example"...)
		e := started
		pace()
		e.CallID, e.Time = string(id), time.Now()
		events.Publish(e)
		pace()
		e.Kind, e.Time, e.Status, e.SetupMillis = calls.Answered, time.Now(), 200, 812.5
		events.Publish(e)
		pace()
		e.Kind, e.Time, e.Reason, e.Duration = calls.Ended, time.Now(), "bye_caller", 93*time.Second
		events.Publish(e)
		// The recorder's stage (DefaultQueue events) must not overflow:
		// wait for the store every 1,000 calls, as a node's load would pace
		// it (each wait includes the linger time: ns/op is not CPU).
		if rate == 0 && (i+1)%1000 == 0 {
			waitStored(base + 3*(i+1))
		}
	}
	waitStored(base + 3*b.N)
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	// What the process wrote (the history stream's block files: the
	// in-process NATS connection is not a file) and its context switches.
	io1, cs1, gs1 := procIO(b), ctxSwitches(b), goroutineRuns()
	b.ReportMetric(float64(io1.wchar-io0.wchar)/float64(b.N), "written-B/op")
	b.ReportMetric(float64(io1.syscw-io0.syscw)/float64(b.N), "writes/op")
	b.ReportMetric(float64(cs1-cs0)/float64(b.N), "ctxsw/op")
	b.ReportMetric(float64(gs1-gs0)/float64(b.N), "gruns/op")
	info0 := st0.CachedInfo().State
	info1, err := st0.Info(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(info1.State.Bytes-info0.Bytes)/float64(b.N), "stored-B/op")
	if gated && live.Skipped() < uint64(3*b.N) {
		b.Fatalf("%d live events skipped, want %d (nobody subscribes)", live.Skipped(), 3*b.N)
	}
}

// ioCounts are the process's write counters from /proc/self/io.
type ioCounts struct{ wchar, syscw int64 }

func procIO(b *testing.B) ioCounts {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Skipf("no /proc/self/io: %v", err)
	}
	var c ioCounts
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "wchar":
			c.wchar = n
		case "syscw":
			c.syscw = n
		}
	}
	return c
}

// goroutineRuns is about how many times goroutines have been scheduled
// to run so far: the count of the runtime's /sched/latencies:seconds
// histogram, which takes one in eight of each goroutine's transitions
// from runnable to running (gTrackingPeriod), times eight. It counts the
// hand-offs between goroutines, which load changes less than CPU time.
func goroutineRuns() uint64 {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	var n uint64
	for _, c := range s[0].Value.Float64Histogram().Counts {
		n += c
	}
	return 8 * n
}

// ctxSwitches is the process's context switches so far (voluntary and
// involuntary, all threads).
func ctxSwitches(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Nvcsw + ru.Nivcsw
}

// cpuTime is the CPU time (user and system) the process has used so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
