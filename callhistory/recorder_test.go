package callhistory_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

// lingering opens an embedded store and a Recorder on it that holds its
// events for an hour: what a test publishes stays staged until Close.
func lingering(t *testing.T, queue int) (*store.Store, *callhistory.Recorder, *callhistory.Metrics) {
	t.Helper()
	st := storetest.OpenEmbedded(t)
	m := callhistory.NewMetrics(nil)
	rec, err := callhistory.NewRecorder(st.NC, st, callhistory.RecorderOptions{Metrics: m, Queue: queue, Linger: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeRecorder(rec) })
	return st, rec, m
}

func closeRecorder(rec *callhistory.Recorder) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec.Close(ctx)
}

func count(m *callhistory.Metrics, outcome string) int {
	return int(testutil.ToFloat64(m.Events.WithLabelValues(outcome)))
}

// storedLines reads every message of ws's history stream: its events'
// kinds and call ids in the order stored, and each message's size.
func storedLines(t *testing.T, st *store.Store, ws string) (events []string, sizes []int) {
	t.Helper()
	ctx := context.Background()
	stream, err := st.JS.Stream(ctx, store.HistoryStreamName(ws))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		sizes = append(sizes, len(msg.Data))
		for _, line := range bytes.Split(msg.Data, []byte("\n")) {
			var e calls.Event
			if err := json.Unmarshal(line, &e); err != nil {
				t.Fatalf("message %d: %v", seq, err)
			}
			events = append(events, e.Kind+" "+e.CallID)
		}
	}
	return events, sizes
}

// The stage holds Queue events at most: the rest are dropped and
// counted, Publish never waits, the gauge shows what is staged, and
// Close stores what was staged (creating the workspace's stream) without
// waiting for the linger time.
func TestRecorderStagesAtMostQueueEventsAndCloseStoresThem(t *testing.T) {
	st, rec, m := lingering(t, 10)
	var want []string
	for i := 0; i < 25; i++ {
		rec.Publish(calls.Event{Kind: calls.Started, CallID: fmt.Sprint("call-", i), Time: t0, Workspace: "acme"})
		if i < 10 {
			want = append(want, fmt.Sprint("started call-", i))
		}
	}
	if got := count(m, callhistory.EventDropped); got != 15 {
		t.Errorf("dropped %d of 25 with a queue of 10", got)
	}
	if got := testutil.ToFloat64(m.Queue); got != 10 {
		t.Errorf("queue gauge %v, want 10", got)
	}
	if got := count(m, callhistory.EventStored); got != 0 {
		t.Errorf("%d stored before the linger time", got)
	}
	closeRecorder(rec) // 30 s at most, the linger time is an hour
	if got := count(m, callhistory.EventStored); got != 10 {
		t.Fatalf("%d stored after Close, want 10", got)
	}
	if got := testutil.ToFloat64(m.Queue); got != 0 {
		t.Errorf("queue gauge %v after Close", got)
	}
	got, _ := storedLines(t, st, "acme")
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("stored %v, want %v", got, want)
	}
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "late", Time: t0, Workspace: "acme"})
	if got := count(m, callhistory.EventDropped); got != 16 {
		t.Errorf("dropped %d after Close, want 16", got)
	}
}

// Events larger than a few per message: a workspace's batch is split in
// messages of at most MaxBatchBytes (one larger event alone in its own),
// in the order published, interleaved with another workspace's events.
func TestRecorderSplitsBatchesAtMaxBatchBytesInOrder(t *testing.T) {
	st, rec, m := lingering(t, 1000)
	pad := strings.Repeat("x", 9000)
	var want []string
	for i := 0; i < 30; i++ {
		e := calls.Event{Kind: calls.Started, CallID: fmt.Sprint("call-", i), Time: t0, Workspace: "acme",
			Headers: map[string]string{"X-Pad": pad}}
		if i == 11 {
			e.Headers["X-Pad"] = strings.Repeat("y", callhistory.MaxBatchBytes+100)
		}
		rec.Publish(e)
		want = append(want, "started "+e.CallID)
		rec.Publish(calls.Event{Kind: calls.Started, CallID: fmt.Sprint("other-", i), Time: t0, Workspace: "beta"})
	}
	closeRecorder(rec)
	if got := count(m, callhistory.EventStored); got != 60 {
		t.Fatalf("%d of 60 stored (errors %d, dropped %d)", got, count(m, callhistory.EventError), count(m, callhistory.EventDropped))
	}
	got, sizes := storedLines(t, st, "acme")
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("stored %v, want %v", got, want)
	}
	over := 0
	for _, n := range sizes {
		if n > callhistory.MaxBatchBytes {
			over++
		}
	}
	// 29 events of about 9 KB, 7 to a message, and the large one alone.
	if over != 1 || len(sizes) != 6 {
		t.Errorf("message sizes %v: want 6 messages, one (the large event) over %d", sizes, callhistory.MaxBatchBytes)
	}
	if others, sizes := storedLines(t, st, "beta"); len(others) != 30 || len(sizes) != 1 {
		t.Errorf("beta: %d events in %d messages", len(others), len(sizes))
	}
}

// The node's publisher (the live subjects, nobody listening, and the
// history) takes an event without allocating: encoded once into a pooled
// buffer, copied into the workspace's staged batch.
func TestTeeAndRecorderTakeAnEventWithoutAllocating(t *testing.T) {
	st, rec, m := lingering(t, 100000)
	live := &calls.NATSPublisher{NC: st.NC, Region: "eu-west", Interest: st.SubjectInterest()}
	tee := callhistory.Tee{live, rec}
	e := calls.Event{Kind: calls.Ended, CallID: "a84b4c76e66710@pbx.example.com", Time: t0, Number: "+12025550100",
		Workspace: "acme", Agent: "agent-1", Region: "eu-west", Carrier: "twilio", Origin: "purchased", Source: "sip",
		SetupMillis: 812.5, Status: 200, Reason: "bye_caller", Duration: 93 * time.Second, Direction: calls.Inbound,
		From: "+447700900123", To: "+12025550100", Endpoint: "sip:bot@10.0.0.7:5070", HookOutcome: "none"}
	const runs = 5000
	// Averaged over the runs: the stage's buffers (64 KiB, about 150
	// events each) are made as it fills, then come from the pool.
	if n := testing.AllocsPerRun(runs, func() { tee.Publish(e) }); n != 0 {
		t.Errorf("%v allocations per event", n)
	}
	closeRecorder(rec)
	if got := count(m, callhistory.EventStored); got != runs+1 {
		t.Fatalf("%d of %d events stored", got, runs+1)
	}
}
