package callhistory_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

// noStreams creates no stream (a NATS without JetStream, or none answering).
type noStreams struct{}

func (noStreams) EnsureHistory(context.Context, string) error { return nil }

var t0 = time.Date(2026, 11, 3, 12, 0, 0, 0, time.UTC)

// recorder opens an embedded store and a Recorder on it.
// Its queue holds every event a test publishes in one burst.
func recorder(t *testing.T) (*store.Store, *callhistory.Recorder, *callhistory.Metrics) {
	t.Helper()
	st := storetest.OpenEmbedded(t)
	m := callhistory.NewMetrics(nil)
	rec, err := callhistory.NewRecorder(st.NC, st, callhistory.RecorderOptions{Metrics: m, Queue: 20000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rec.Close(ctx)
	})
	return st, rec, m
}

// waitStored waits until n events are stored in all.
func waitStored(t *testing.T, m *callhistory.Metrics, n int) {
	t.Helper()
	testwait.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventStored)); int(got) < n {
			return fmt.Errorf("%v of %d events stored (errors %v, dropped %v)", got, n,
				testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventError)),
				testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventDropped)))
		}
		return nil
	})
}

// answeredCall publishes the started, answered and ended events of a call.
func answeredCall(p calls.Publisher, ws, id string, at time.Time) int {
	p.Publish(calls.Event{Kind: calls.Started, CallID: id, Time: at, Workspace: ws, Number: "+12025550100", Agent: "ag1", Region: "eu", From: "+447700900123", To: "+12025550100", Source: "sip"})
	p.Publish(calls.Event{Kind: calls.Answered, CallID: id, Time: at.Add(800 * time.Millisecond), Workspace: ws, Number: "+12025550100", Agent: "ag1", Region: "eu", SetupMillis: 800, Status: 200, Endpoint: "sip:bot@agent.example"})
	p.Publish(calls.Event{Kind: calls.Ended, CallID: id, Time: at.Add(10800 * time.Millisecond), Workspace: ws, Number: "+12025550100", Agent: "ag1", Region: "eu", SetupMillis: 800, Status: 200, Reason: "bye_caller", Duration: 10 * time.Second})
	return 3
}

func TestRecordedCallsAreListedNewestFirstWithTheirEventsMerged(t *testing.T) {
	st, rec, m := recorder(t)
	n := 0
	for i := 0; i < 5; i++ {
		n += answeredCall(rec, "acme", fmt.Sprintf("call-%d@10.0.0.1", i), t0.Add(time.Duration(i)*time.Minute))
	}
	n += answeredCall(rec, "other", "theirs@10.0.0.2", t0.Add(time.Hour))
	// A refused call: started and ended at once, 480.
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "refused", Time: t0.Add(30 * time.Second), Workspace: "acme", Number: "+12025550199"})
	rec.Publish(calls.Event{Kind: calls.Ended, CallID: "refused", Time: t0.Add(30 * time.Second), Workspace: "acme", Number: "+12025550199", Status: 480, Reason: "unassigned"})
	n += 2
	waitStored(t, m, n)

	r := callhistory.NewReader(st, nil)
	p, err := r.List(context.Background(), callhistory.Query{Workspace: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range p.Calls {
		ids = append(ids, c.ID)
		if c.Workspace != "acme" {
			t.Errorf("%s: workspace %q listed for acme", c.ID, c.Workspace)
		}
	}
	want := "call-4@10.0.0.1 call-3@10.0.0.1 call-2@10.0.0.1 call-1@10.0.0.1 refused call-0@10.0.0.1"
	if got := strings.Join(ids, " "); got != want {
		t.Fatalf("listed %s, want %s", got, want)
	}
	if p.Next != "" {
		t.Errorf("next %q on the only page", p.Next)
	}
	c := p.Calls[0]
	if c.Direction != calls.Inbound || c.From != "+447700900123" || c.To != "+12025550100" || c.Number != "+12025550100" ||
		c.Agent != "ag1" || c.Region != "eu" || c.Endpoint != "sip:bot@agent.example" || c.Outcome != callhistory.OutcomeAnswered ||
		c.SIPStatus != 200 || c.EndReason != "bye_caller" || c.DurationSeconds != 10 || c.SetupMillis == nil || *c.SetupMillis != 800 {
		t.Errorf("merged record: %+v", c)
	}
	if !c.StartedAt.Equal(t0.Add(4*time.Minute)) || c.AnsweredAt == nil || !c.AnsweredAt.Equal(t0.Add(4*time.Minute+800*time.Millisecond)) ||
		c.EndedAt == nil || !c.EndedAt.Equal(t0.Add(4*time.Minute+10800*time.Millisecond)) {
		t.Errorf("times: started %v answered %v ended %v", c.StartedAt, c.AnsweredAt, c.EndedAt)
	}
	if last := p.Calls[4]; last.Outcome != callhistory.OutcomeRejected || last.SIPStatus != 480 || last.AnsweredAt != nil {
		t.Errorf("refused call: %+v", last)
	}
	if p.EventsRead != n-3 {
		t.Errorf("read %d events, want acme's %d", p.EventsRead, n-3)
	}
}

func TestListingReadsOnlyTheWorkspacesEvents(t *testing.T) {
	st, rec, m := recorder(t)
	n := 0
	for i := 0; i < 3000; i++ {
		n += answeredCall(rec, "big", fmt.Sprintf("big-%d", i), t0.Add(time.Duration(i)*time.Second))
		if i%300 == 0 {
			n += answeredCall(rec, "small", fmt.Sprintf("small-%d", i), t0.Add(time.Duration(i)*time.Second))
		}
	}
	waitStored(t, m, n)
	p, err := callhistory.NewReader(st, nil).List(context.Background(), callhistory.Query{Workspace: "small"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Calls) != 10 || p.EventsRead != 30 {
		t.Fatalf("listed %d calls reading %d events; want 10 calls from small's 30 events (of %d stored)", len(p.Calls), p.EventsRead, n)
	}
}

// storeBatches stores each of batches as the Recorder does: one message
// on the workspace's batch subject, one event per line.
func storeBatches(t *testing.T, st *store.Store, ws string, batches [][]calls.Event) {
	t.Helper()
	ctx := context.Background()
	if err := st.EnsureHistory(ctx, ws); err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		var data []byte
		for i := range b {
			e, err := calls.Encode(&b[i])
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 {
				data = append(data, '\n')
			}
			data = append(data, e...)
		}
		if _, err := st.JS.Publish(ctx, callhistory.BatchSubject(ws), data); err != nil {
			t.Fatal(err)
		}
	}
}

// answeredEvents are the started, answered and ended events of a call
// (answeredCall's).
func answeredEvents(ws, id string, at time.Time) []calls.Event {
	var c collect
	answeredCall(&c, ws, id, at)
	return c
}

type collect []calls.Event

func (c *collect) Publish(e calls.Event) { *c = append(*c, e) }

func TestListingANewPageReadsAboutThePage(t *testing.T) {
	// 3000 calls in 300 stored batches of 10 calls (30 events): the
	// newest page reads the newest batches, not the stream.
	st := storetest.OpenEmbedded(t)
	var batches [][]calls.Event
	n := 0
	for i := 0; i < 3000; i += 10 {
		var b []calls.Event
		for j := i; j < i+10; j++ {
			b = append(b, answeredEvents("big", fmt.Sprintf("big-%04d", j), t0.Add(time.Duration(j)*time.Second))...)
		}
		batches = append(batches, b)
		n += len(b)
	}
	storeBatches(t, st, "big", batches)
	r := callhistory.NewReader(st, nil)
	p, err := r.List(context.Background(), callhistory.Query{Workspace: "big", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 2999; i >= 2990; i-- {
		want = append(want, fmt.Sprintf("big-%04d", i))
	}
	var got []string
	for _, c := range p.Calls {
		got = append(got, c.ID)
	}
	if strings.Join(got, " ") != strings.Join(want, " ") || p.Next == "" {
		t.Fatalf("newest 10: %v (next %q)", got, p.Next)
	}
	// The first window is 4 × (10 + 1) messages, 30 events each.
	if p.EventsRead > 44*30 {
		t.Errorf("the newest 10 of 3000 calls read %d of %d events", p.EventsRead, n)
	}
	// The oldest page reads on to the stream's start, and ends there.
	p, err = r.List(context.Background(), callhistory.Query{Workspace: "big", Limit: 5, To: t0.Add(5 * time.Second)})
	if err != nil || len(p.Calls) != 5 || p.Calls[4].ID != "big-0000" || p.Next != "" {
		t.Fatalf("oldest page: %+v %v", p, err)
	}
}

func TestListPagesAndFilters(t *testing.T) {
	st, rec, m := recorder(t)
	n := 0
	for i := 0; i < 7; i++ {
		n += answeredCall(rec, "acme", fmt.Sprintf("a%d", i), t0.Add(time.Duration(i)*time.Minute))
	}
	// same start time: ordered by id, never lost between pages
	n += answeredCall(rec, "acme", "tie-1", t0.Add(3*time.Minute))
	outs := []struct {
		id, reason, dir, agent string
		status                 int
	}{
		{"busy", "", "outbound", "ag2", 486}, {"cancel", "cancel", "", "ag2", 487}, {"noans", "ring_timeout", "", "ag2", 408},
		{"fail", "no_endpoint", "", "ag2", 503}, {"rej", "", "", "ag2", 603},
	}
	for i, o := range outs {
		at := t0.Add(time.Hour + time.Duration(i)*time.Second)
		rec.Publish(calls.Event{Kind: calls.Started, CallID: o.id, Time: at, Workspace: "acme", Number: "+12025550111", Agent: o.agent, Direction: o.dir})
		rec.Publish(calls.Event{Kind: calls.Ended, CallID: o.id, Time: at.Add(time.Second), Workspace: "acme", Number: "+12025550111", Agent: o.agent, Status: o.status, Reason: o.reason})
		n += 2
	}
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "ringing", Time: t0.Add(2 * time.Hour), Workspace: "acme", Number: "+12025550111"})
	n++
	waitStored(t, m, n)
	r := callhistory.NewReader(st, nil)
	ctx := context.Background()

	var all []string
	q := callhistory.Query{Workspace: "acme", Number: "+12025550100", Limit: 3}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		p, err := r.List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Calls {
			all = append(all, c.ID)
		}
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	if got, want := strings.Join(all, " "), "a6 a5 a4 tie-1 a3 a2 a1 a0"; got != want {
		t.Errorf("pages: %s, want %s", got, want)
	}

	for _, tc := range []struct {
		q    callhistory.Query
		want string
	}{
		{callhistory.Query{Outcome: callhistory.OutcomeBusy}, "busy"},
		{callhistory.Query{Outcome: callhistory.OutcomeCancelled}, "cancel"},
		{callhistory.Query{Outcome: callhistory.OutcomeNoAnswer}, "noans"},
		{callhistory.Query{Outcome: callhistory.OutcomeFailed}, "fail"},
		{callhistory.Query{Outcome: callhistory.OutcomeRejected}, "rej"},
		{callhistory.Query{Outcome: callhistory.OutcomeInProgress}, "ringing"},
		{callhistory.Query{Direction: calls.Outbound}, "busy"},
		{callhistory.Query{Agent: "ag2", Direction: calls.Inbound}, "rej fail noans cancel"},
		{callhistory.Query{From: t0.Add(2 * time.Minute), To: t0.Add(4 * time.Minute)}, "tie-1 a3 a2"},
		{callhistory.Query{From: t0.Add(90 * time.Minute)}, "ringing"},
	} {
		tc.q.Workspace = "acme"
		p, err := r.List(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range p.Calls {
			ids = append(ids, c.ID)
		}
		if got := strings.Join(ids, " "); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.q, got, tc.want)
		}
	}
	if _, err := r.List(ctx, callhistory.Query{Workspace: "acme", Cursor: "bm9wZQ"}); !errors.Is(err, callhistory.ErrBadCursor) {
		t.Errorf("forged cursor: %v", err)
	}
}

func TestGetIsScopedToTheWorkspaceAndTakesAnyCallID(t *testing.T) {
	st, rec, m := recorder(t)
	id := "a.b*c >d e@[::1]" // characters a subject cannot hold
	n := answeredCall(rec, "acme", id, t0)
	mediaStats := &media.CallStats{CallID: id, Caller: media.LegStats{Packets: 500, Lost: 3, LossRatio: 0.006, JitterMillis: 2.5, RTTMillis: 41},
		Agent: media.LegStats{Packets: 498, JitterMillis: 1.5}}
	rec.Publish(calls.Event{Kind: calls.Ended, CallID: "relayed", Time: t0, Workspace: "acme", Status: 200, Duration: time.Second, Media: mediaStats})
	waitStored(t, m, n+1)
	r := callhistory.NewReader(st, nil)
	ctx := context.Background()
	c, err := r.Get(ctx, "acme", id)
	if err != nil || c.ID != id || c.Outcome != callhistory.OutcomeAnswered {
		t.Fatalf("get: %+v, %v", c, err)
	}
	if _, err := r.Get(ctx, "other", id); !errors.Is(err, callhistory.ErrNotFound) {
		t.Errorf("another workspace's call: %v", err)
	}
	if _, err := r.Get(ctx, "acme", "nope"); !errors.Is(err, callhistory.ErrNotFound) {
		t.Errorf("unknown call: %v", err)
	}
	rc, err := r.Get(ctx, "acme", "relayed")
	if err != nil {
		t.Fatal(err)
	}
	if rc.Media == nil || rc.Media.Caller.Packets != 500 || rc.Media.Caller.Lost != 3 || rc.Media.Caller.JitterMillis != 2.5 ||
		rc.Media.Caller.RTTMillis != 41 || rc.Media.Agent.Packets != 498 || rc.Media.Agent.JitterMillis != 1.5 {
		t.Errorf("media figures: %+v", rc.Media)
	}
	if !rc.StartedAt.Equal(t0.Add(-time.Second)) {
		t.Errorf("a call without its started event starts at ended - duration: %v", rc.StartedAt)
	}
}

func TestRecorderCountsWhatItCannotStore(t *testing.T) {
	// A NATS without JetStream: every publish is refused (no responders).
	srv := storetest.RunServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	m := callhistory.NewMetrics(nil)
	rec, err := callhistory.NewRecorder(nc, noStreams{}, callhistory.RecorderOptions{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "x", Workspace: "acme"})
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "y"}) // no workspace
	testwait.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventError)); got != 1 {
			return fmt.Errorf("%v errors counted", got)
		}
		return nil
	})
	if got := testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventSkipped)); got != 1 {
		t.Errorf("skipped: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec.Close(ctx)
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "z", Workspace: "acme"})
	if got := testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventDropped)); got != 1 {
		t.Errorf("dropped after close: %v", got)
	}
}

func TestRecorderPublishDoesNotWaitForAStalledStore(t *testing.T) {
	// NATS that accepts the publishes but never answers: the queue and the
	// pending acknowledgements fill, Publish still returns at once.
	srv := storetest.RunServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("callgate.history.>") // a responder that never replies
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	m := callhistory.NewMetrics(nil)
	rec, err := callhistory.NewRecorder(nc, noStreams{}, callhistory.RecorderOptions{Metrics: m, Queue: 16, MaxPending: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		rec.Close(ctx)
	}()
	// What the recorder holds while the store does not answer: the stage
	// (16 events), MaxPending (4) unacknowledged batches and the batch
	// being published, each at most MaxBatchBytes of events. The rest is
	// dropped, and Publish never waits.
	ev := func(i int) calls.Event {
		return calls.Event{Kind: calls.Started, CallID: fmt.Sprintf("%06d", i), Workspace: "acme", Time: t0}
	}
	sample := ev(0)
	enc, err := calls.Encode(&sample)
	if err != nil {
		t.Fatal(err)
	}
	perBatch := callhistory.MaxBatchBytes / (len(enc) + 1)
	const total = 20000
	start := time.Now()
	for i := 0; i < total; i++ {
		rec.Publish(ev(i))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%d publishes took %v", total, d)
	}
	held := 16 + (4+1)*perBatch
	if got := testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventDropped)); got < float64(total-held) {
		t.Errorf("dropped %v of %d; the stage of 16 and 5 batches of %d hold %d", got, total, perBatch, held)
	}
}

func TestCSVIsRFC4180AndFormulaSafe(t *testing.T) {
	setup := 12.5
	cs := []callhistory.Call{
		{ID: "=HYPERLINK(\"http://evil\")", From: "+15551234567", To: "@SUM(A1)", EndReason: "a,b \"quoted\"\nline", StartedAt: t0, Outcome: "answered", SetupMillis: &setup},
		{ID: "-2+3", From: "\tx", StartedAt: t0, Media: &callhistory.Media{Caller: callhistory.MediaLeg{Packets: 7, Lost: -1}}},
	}
	var b bytes.Buffer
	if err := callhistory.WriteCSV(&b, cs); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\r\n") {
		t.Error("rows do not end in CRLF")
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(callhistory.CSVHeader, ",") {
		t.Fatalf("rows: %q", rows)
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	checks := []struct{ row, col, want string }{
		{"1", "id", "'=HYPERLINK(\"http://evil\")"}, {"1", "from", "'+15551234567"}, {"1", "to", "'@SUM(A1)"},
		{"1", "end_reason", "a,b \"quoted\"\nline"}, {"1", "setup_ms", "12.5"}, {"1", "started_at", "2026-11-03T12:00:00Z"},
		{"2", "id", "'-2+3"}, {"2", "from", "'\tx"}, {"2", "caller_packets", "7"}, {"2", "caller_lost", "'-1"},
	}
	for _, c := range checks {
		r := rows[1]
		if c.row == "2" {
			r = rows[2]
		}
		if got := r[col[c.col]]; got != c.want {
			t.Errorf("row %s %s: %q, want %q", c.row, c.col, got, c.want)
		}
	}
}

func TestOutcome(t *testing.T) {
	for _, tc := range []struct {
		answered, ended bool
		status          int
		reason, want    string
	}{
		{true, true, 200, "bye_caller", callhistory.OutcomeAnswered},
		{false, false, 0, "", callhistory.OutcomeInProgress},
		{false, true, 200, "completed", callhistory.OutcomeAnswered},
		{false, true, 487, "cancel", callhistory.OutcomeCancelled},
		{false, true, 487, "canceled", callhistory.OutcomeCancelled},
		{false, true, 486, "", callhistory.OutcomeBusy},
		{false, true, 600, "", callhistory.OutcomeBusy},
		{false, true, 486, "busy", callhistory.OutcomeBusy},
		{false, true, 408, "ring_timeout", callhistory.OutcomeNoAnswer},
		{false, true, 480, "", callhistory.OutcomeNoAnswer},
		{false, true, 480, "no_answer", callhistory.OutcomeNoAnswer},
		{false, true, 480, "unassigned", callhistory.OutcomeRejected},
		{false, true, 404, "unknown_number", callhistory.OutcomeRejected},
		{false, true, 603, "", callhistory.OutcomeRejected},
		{false, true, 503, "max_concurrent_calls", callhistory.OutcomeRejected},
		{false, true, 503, "limit_concurrent", callhistory.OutcomeRejected},
		{false, true, 503, "limit_rate", callhistory.OutcomeRejected},
		{true, true, 200, "credits_exhausted", callhistory.OutcomeAnswered},
		{false, true, 503, "no_endpoint", callhistory.OutcomeFailed},
		{false, true, 500, "failed", callhistory.OutcomeFailed},
	} {
		if got := callhistory.Outcome(tc.answered, tc.ended, tc.status, tc.reason); got != tc.want {
			t.Errorf("Outcome(%v, %v, %d, %q) = %s, want %s", tc.answered, tc.ended, tc.status, tc.reason, got, tc.want)
		}
	}
}

func TestRecorderRecreatesADeletedStream(t *testing.T) {
	st, rec, m := recorder(t)
	n := answeredCall(rec, "acme", "before", t0)
	waitStored(t, m, n)
	if err := st.JS.DeleteStream(context.Background(), store.HistoryStreamName("acme")); err != nil {
		t.Fatal(err)
	}
	// The first event after the deletion fails and is counted; a later
	// one creates the stream again.
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "lost", Time: t0.Add(time.Minute), Workspace: "acme"})
	testwait.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if got := testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventError)); got != 1 {
			return fmt.Errorf("%v errors counted", got)
		}
		return nil
	})
	n += answeredCall(rec, "acme", "after", t0.Add(2*time.Minute))
	waitStored(t, m, n)
	p, err := callhistory.NewReader(st, nil).List(context.Background(), callhistory.Query{Workspace: "acme"})
	if err != nil || len(p.Calls) != 1 || p.Calls[0].ID != "after" {
		t.Fatalf("after the stream was recreated: %+v %v", p.Calls, err)
	}
}

func TestRecorderBatchesKeepTheOrderAndCloseStoresTheQueue(t *testing.T) {
	// A long linger: each burst of events waits in the queue and is
	// published as one batch. The stream holds them in the order they
	// were published, across batches, and Close publishes what is still
	// queued.
	st := storetest.OpenEmbedded(t)
	m := callhistory.NewMetrics(nil)
	rec, err := callhistory.NewRecorder(st.NC, st, callhistory.RecorderOptions{Metrics: m, Queue: 1000, Linger: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{calls.Started, calls.Answered, calls.Ended}
	var want []string
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			for _, k := range kinds {
				rec.Publish(calls.Event{Kind: k, CallID: fmt.Sprint("call-", i), Time: t0.Add(time.Duration(i) * time.Second), Workspace: "acme", Number: "+12025550100"})
				want = append(want, fmt.Sprint(k, " call-", i))
			}
		}
	}
	publish(0, 100)
	waitStored(t, m, len(want))
	publish(100, 200)
	waitStored(t, m, len(want))
	publish(200, 300) // stored by Close
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rec.Close(ctx)
	if got := int(testutil.ToFloat64(m.Events.WithLabelValues(callhistory.EventStored))); got != len(want) {
		t.Fatalf("%d of %d events stored after Close", got, len(want))
	}
	stream, err := st.JS.Stream(ctx, store.HistoryStreamName("acme"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Each burst waits in the queue and goes out as one message (or a
	// few, if a loaded machine stalls the burst past the linger time).
	if info.State.Msgs > uint64(len(want)/10) {
		t.Errorf("%d events stored in %d messages: not batched", len(want), info.State.Msgs)
	}
	var got []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		if msg.Subject != callhistory.BatchSubject("acme") {
			t.Errorf("message %d on %s", seq, msg.Subject)
		}
		for _, line := range bytes.Split(msg.Data, []byte("\n")) {
			var e calls.Event
			if err := json.Unmarshal(line, &e); err != nil {
				t.Fatalf("message %d: %v", seq, err)
			}
			got = append(got, e.Kind+" "+e.CallID)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("stored in this order:\n%v\npublished:\n%v", got, want)
	}
}

func TestGetReadsBatchesAndPerCallMessages(t *testing.T) {
	// History written before batches (one message per event, on the
	// call's own subject) and batches after it, in one stream: Get and
	// List find every call, its events merged in the order stored, a
	// call's events spread over several batches included.
	st := storetest.OpenEmbedded(t)
	ctx := context.Background()
	if err := st.EnsureHistory(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, e := range answeredEvents("acme", "old-1@pbx", t0) {
		data, err := calls.Encode(&e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.JS.Publish(ctx, callhistory.Subject("acme", e.CallID), data); err != nil {
			t.Fatal(err)
		}
	}
	spread := answeredEvents("acme", "spread@pbx", t0.Add(time.Minute))
	var batches [][]calls.Event
	batches = append(batches, []calls.Event{spread[0]}) // started alone
	for i := 0; i < 200; i++ {                          // other calls between
		batches = append(batches, answeredEvents("acme", fmt.Sprintf("other-%d@pbx", i), t0.Add(time.Minute+time.Duration(i)*time.Millisecond)))
	}
	// answered and ended in one batch, after a call of their own batch
	last := append(answeredEvents("acme", "last@pbx", t0.Add(2*time.Minute)), spread[1], spread[2])
	batches = append(batches, last)
	storeBatches(t, st, "acme", batches)

	r := callhistory.NewReader(st, nil)
	for _, id := range []string{"old-1@pbx", "spread@pbx", "last@pbx", "other-7@pbx"} {
		c, err := r.Get(ctx, "acme", id)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if c.ID != id || c.Outcome != callhistory.OutcomeAnswered || c.AnsweredAt == nil || c.EndedAt == nil ||
			c.Agent != "ag1" || c.EndReason != "bye_caller" || c.DurationSeconds != 10 {
			t.Errorf("%s: %+v", id, c)
		}
	}
	if _, err := r.Get(ctx, "acme", "nope@pbx"); !errors.Is(err, callhistory.ErrNotFound) {
		t.Errorf("unknown call: %v", err)
	}
	p, err := r.List(ctx, callhistory.Query{Workspace: "acme", Limit: callhistory.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Calls) != 203 || p.Calls[0].ID != "last@pbx" || p.Calls[len(p.Calls)-1].ID != "old-1@pbx" {
		t.Fatalf("listed %d calls, newest %q, oldest %q", len(p.Calls), p.Calls[0].ID, p.Calls[len(p.Calls)-1].ID)
	}
	for _, c := range p.Calls {
		if c.Outcome != callhistory.OutcomeAnswered || c.EndedAt == nil {
			t.Fatalf("listed %s: %+v", c.ID, c)
		}
	}
}
