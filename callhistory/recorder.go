package callhistory

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callgate/callgate/gateway/calls"
)

// Recorder defaults.
const (
	DefaultQueue      = 8192
	DefaultMaxPending = 1024
	DefaultLinger     = 20 * time.Millisecond
	ackTimeout        = 10 * time.Second
	ensureTimeout     = 5 * time.Second
)

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	Log     *slog.Logger
	Metrics *Metrics
	// Queue is how many events may wait for the publisher (0: DefaultQueue);
	// beyond it events are dropped and counted, never waited for.
	Queue int
	// MaxPending bounds unacknowledged publishes (0: DefaultMaxPending).
	MaxPending int
	// Linger is how long the publisher lets events gather after the
	// first of a batch before it publishes them together (0:
	// DefaultLinger; negative: none, each event at once).
	Linger time.Duration
}

// Recorder stores call events in the history stream. Publish never
// blocks: it copies the event into its workspace's batch in a bounded
// stage, from which one goroutine publishes the batches asynchronously
// to JetStream; an event that cannot be staged or is not acknowledged is
// counted (callgate_history_events_total dropped / error) and logged at
// a bounded rate.
type Recorder struct {
	acks    *acks
	streams Streams
	known   sync.Map // workspace → true: its stream exists (forgotten on a publish error)
	log     *slog.Logger
	m       *Metrics
	pool    *batchPool
	queue   int // events the stage holds at most
	linger  time.Duration
	wake    chan struct{} // capacity 1: sent to when the stage becomes non-empty
	stop    chan struct{} // closed by Close
	done    chan struct{}

	mu     sync.Mutex // guards stage, spare and closed
	stage  *stage     // events waiting for run
	spare  *stage     // the stage run took last, emptied
	closed bool

	lastLog time.Time
	logMu   sync.Mutex
}

// Streams creates a workspace's history stream (store.Store).
type Streams interface {
	EnsureHistory(ctx context.Context, ws string) error
}

// NewRecorder starts a Recorder publishing on nc (the node's NATS
// connection) into the workspaces' streams, created through streams on
// a workspace's first event. Close stops it after the staged events are
// published.
func NewRecorder(nc *nats.Conn, streams Streams, o RecorderOptions) (*Recorder, error) {
	r := &Recorder{log: o.Log, m: o.Metrics, streams: streams, pool: newBatchPool(),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		stage: newStage(), spare: newStage()}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.m == nil {
		r.m = NewMetrics(nil)
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	r.queue = o.Queue
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	switch {
	case o.Linger == 0:
		r.linger = DefaultLinger
	case o.Linger > 0:
		r.linger = o.Linger
	}
	stored := r.m.Events.WithLabelValues(EventStored)
	a, err := newAcks(nc, o.MaxPending, ackTimeout, time.Second, func(n int) { stored.Add(float64(n)) }, func(ws string, n int, err error) {
		r.failedN(EventError, ws, n, err)
		// The stream may be gone (deleted by an operator): create it
		// again before the workspace's next event.
		r.known.Delete(ws)
	})
	if err != nil {
		return nil, err
	}
	r.acks = a
	go r.run()
	return r, nil
}

// encodeBufs hold the JSON of an event being published (Tee.Publish,
// Recorder.Publish): *[]byte.
var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxEncodeBuf is the largest buffer kept in encodeBufs (an event with
// large media figures or headers leaves its buffer to the collector).
const maxEncodeBuf = 16 << 10

func getEncodeBuf() *[]byte { return encodeBufs.Get().(*[]byte) }

// putEncodeBuf gives back bp, now holding data (a buffer it grew to).
func putEncodeBuf(bp *[]byte, data []byte) {
	if cap(data) <= maxEncodeBuf {
		*bp = data[:0]
		encodeBufs.Put(bp)
	}
}

// Publish implements calls.Publisher: it stages e and returns at once.
func (r *Recorder) Publish(e calls.Event) {
	if r == nil || !r.keep(&e) {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	bp := getEncodeBuf()
	data, err := calls.AppendEncoded((*bp)[:0], &e)
	if err != nil {
		r.failed(EventError, e.Workspace, err)
	} else {
		r.add(e.Workspace, data)
	}
	putEncodeBuf(bp, data)
}

// PublishEncoded implements calls.EncodedPublisher: it copies data, e's
// JSON (with its time set), into the stage and returns at once; data is
// not kept.
func (r *Recorder) PublishEncoded(e calls.Event, data []byte) {
	if r == nil || !r.keep(&e) {
		return
	}
	r.add(e.Workspace, data)
}

// keep reports whether e belongs in a workspace's history.
func (r *Recorder) keep(e *calls.Event) bool {
	if !validWorkspace(e.Workspace) || e.CallID == "" {
		// Refused before its number was known: no workspace may see it.
		r.m.Events.WithLabelValues(EventSkipped).Inc()
		return false
	}
	return true
}

// stage is what the recorder holds for run: each workspace's batches, in
// the order of its events.
type stage struct {
	index map[string]int // workspace → its place in list
	list  []staged
	n     int       // events
	since time.Time // when its first event was staged
}

// staged are a workspace's batches: the last one is being filled; each
// other is as large as MaxBatchBytes lets it be.
type staged struct {
	ws      string
	batches []*batchBuf
}

func newStage() *stage { return &stage{index: map[string]int{}} }

// add copies data, an event of workspace ws, into ws's last batch, or a
// new one when it would take that one over MaxBatchBytes; false when the
// stage holds max events already.
func (s *stage) add(pool *batchPool, max int, ws string, data []byte) bool {
	if s.n >= max {
		return false
	}
	i, ok := s.index[ws]
	if !ok {
		i = len(s.list)
		s.index[ws] = i
		if i < cap(s.list) { // an entry of an earlier batch: its slice is reused
			s.list = s.list[:i+1]
			s.list[i].ws = ws
		} else {
			s.list = append(s.list, staged{ws: ws})
		}
	}
	w := &s.list[i]
	last := len(w.batches) - 1
	if last < 0 || len(w.batches[last].data)+1+len(data) > MaxBatchBytes {
		w.batches = append(w.batches, pool.get(len(data)))
		last++
	}
	w.batches[last] = w.batches[last].add(data)
	s.n++
	return true
}

// reset empties s (its batches were handed on), keeping its memory.
func (s *stage) reset() {
	clear(s.index)
	for i := range s.list {
		w := &s.list[i]
		clear(w.batches)
		w.ws, w.batches = "", w.batches[:0]
	}
	s.list, s.n = s.list[:0], 0
}

// add stages data, an event of workspace ws, for run: copied into the
// workspace's batch under the lock, without allocating once the stage
// and the pool have grown to the load. It wakes run when the stage was
// empty; beyond Queue staged events, data is dropped and counted.
func (r *Recorder) add(ws string, data []byte) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.failed(EventDropped, "", errStopped)
		return
	}
	if !r.stage.add(r.pool, r.queue, ws, data) {
		r.mu.Unlock()
		r.failed(EventDropped, ws, errQueueFull)
		return
	}
	r.m.Queue.Inc() // under the lock: run's Sub comes after
	first := r.stage.n == 1
	if first {
		r.stage.since = time.Now()
	}
	r.mu.Unlock()
	if first {
		select {
		case r.wake <- struct{}{}:
		default: // already woken
		}
	}
}

type recorderError string

func (e recorderError) Error() string { return string(e) }

const (
	errQueueFull = recorderError("callhistory: queue full")
	errStopped   = recorderError("callhistory: recorder stopped")
)

// run publishes the staged events in batches: when an event comes to an
// empty stage it wakes run, which sleeps until the linger time has
// passed since that event (less, if run was busy publishing the last
// batch when it came) and then takes the stage, that event and every one
// staged meanwhile (swapped for an empty one under the lock), and
// publishes each workspace's events of the batch as one message
// (MaxBatchBytes at most; more make several), one event per line, in
// order. Events staged while it sleeps wake nobody (the stage is not
// empty), and a batch is one message through the NATS connection, the
// server's read loop, the stream and the acknowledgements instead of
// one per event. Publish copies an event into its workspace's batch
// buffer (from a pool, given back when the message is acknowledged or
// failed): no allocation and no channel operation per event. An event is
// published at most the linger time later (or once the last batch is
// published, if that takes longer). What the recorder holds is bounded:
// Queue staged events, the batches of the events taken (each published
// before more are taken) and MaxPending unacknowledged messages.
//
// DefaultLinger is 20 ms: history is read by people and by API calls
// made seconds into a call. At 4,000 calls/s (BenchmarkCallEventsPaced)
// a call's events took 9.5 goroutine hand-offs with 1 ms batches of one
// message per event, 4.1 with 20 ms ones, and 1.2 with 20 ms batches
// in one message; the messages per call fall from 3 to a few
// hundredths (issue 15: bench/sip/README.md, fourth and fifth rounds).
// BenchmarkCallEvents: 33-36 µs of CPU per call before, 12-14 after.
// Staged instead of queued on a channel (five interleaved runs each):
// BenchmarkCallEvents 7.5-11 µs of CPU per call against 11.4-16.4,
// 3.3 KB (the in-process server's) and 1 allocation per call (the
// benchmark's call id) against 9.4 KB and 4-5; BenchmarkCallEventsPaced 70-76 µs against 75-87 (its
// pacing included), 0.27 goroutine runs per call against 0.75-2.0, and
// half the writes (one batch a linger time: the events staged while a
// batch is published no longer go out at once as a small one of their
// own). The stage holds DefaultQueue events, 20 ms of 400,000 events a
// second.
func (r *Recorder) run() {
	defer close(r.done)
	var t *time.Timer
	if r.linger > 0 {
		t = time.NewTimer(r.linger)
		t.Stop()
	}
	for stopping := false; !stopping; {
		select {
		case <-r.wake:
			// The linger time runs from the first event staged: events
			// staged while run published the last batch wait only what
			// is left of it.
			r.mu.Lock()
			wait := r.linger - time.Since(r.stage.since)
			r.mu.Unlock()
			if t != nil && wait > 0 {
				t.Reset(wait)
				select {
				case <-t.C:
				case <-r.stop: // Close: publish what is staged now
					t.Stop()
					stopping = true
				}
			}
		case <-r.stop:
			stopping = true
		}
		// Once Close has set closed, nothing more is staged: the last
		// take has every event.
		r.mu.Lock()
		s := r.stage
		r.stage, r.spare = r.spare, nil
		r.mu.Unlock()
		r.m.Queue.Sub(float64(s.n))
		r.flush(s)
		s.reset()
		r.mu.Lock()
		r.spare = s
		r.mu.Unlock()
	}
}

// flush publishes every workspace's batches of s.
func (r *Recorder) flush(s *stage) {
	for i := range s.list {
		w := &s.list[i]
		for _, b := range w.batches {
			r.store(w.ws, b)
		}
	}
}

// store publishes b, a workspace's batch, creating its stream first if
// needed. b is handed on: released here or by acks when its
// acknowledgement comes (or its failure).
func (r *Recorder) store(ws string, b *batchBuf) {
	n := b.n
	if _, ok := r.known.Load(ws); !ok {
		ctx, cancel := context.WithTimeout(context.Background(), ensureTimeout)
		err := r.streams.EnsureHistory(ctx, ws)
		cancel()
		if err != nil {
			b.release()
			r.failedN(EventError, ws, n, err)
			return
		}
		r.known.Store(ws, true)
	}
	// publish waits (here, never in Publish) while MaxPending
	// publishes are unacknowledged, up to ackTimeout.
	if err := r.acks.publish(ws, BatchSubject(ws), b); err != nil {
		r.failedN(EventError, ws, n, err)
		r.known.Delete(ws)
	}
}

// failed counts an event not stored and logs it, at most once a second.
func (r *Recorder) failed(outcome, where string, err error) { r.failedN(outcome, where, 1, err) }

// failedN counts n events not stored and logs it, at most once a second.
func (r *Recorder) failedN(outcome, where string, n int, err error) {
	r.m.Events.WithLabelValues(outcome).Add(float64(n))
	r.logMu.Lock()
	now := time.Now()
	logIt := now.Sub(r.lastLog) >= time.Second
	if logIt {
		r.lastLog = now
	}
	r.logMu.Unlock()
	if logIt {
		r.log.Warn("callhistory: call event not stored (counted in callgate_history_events_total)", "outcome", outcome, "subject", where, "events", n, "err", err)
	}
}

// Close stops taking events, publishes the staged ones and waits for
// their acknowledgements until ctx ends.
func (r *Recorder) Close(ctx context.Context) {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.stop)
	}
	r.mu.Unlock()
	defer r.acks.close()
	select {
	case <-r.done:
	case <-ctx.Done():
		return
	}
	select {
	case <-r.acks.complete():
	case <-ctx.Done():
	}
}

// Tee sends every event to each publisher in turn (the core NATS
// subjects, then the history). The event is encoded once, its time set
// first, into a pooled buffer for all the publishers that take encoded
// events (calls.EncodedPublisher, which copy what they keep).
type Tee []calls.Publisher

// Publish implements calls.Publisher.
func (t Tee) Publish(e calls.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	var (
		bp      *[]byte
		data    []byte
		encoded bool
	)
	for _, p := range t {
		ep, ok := p.(calls.EncodedPublisher)
		if !ok {
			p.Publish(e)
			continue
		}
		if !encoded {
			bp = getEncodeBuf()
			var err error
			if data, err = calls.AppendEncoded((*bp)[:0], &e); err != nil {
				data = nil // each publisher encodes it (and counts its error)
			}
			encoded = true
		}
		if data == nil {
			p.Publish(e)
			continue
		}
		ep.PublishEncoded(e, data)
	}
	if bp != nil {
		if data == nil {
			data = *bp
		}
		putEncodeBuf(bp, data)
	}
}

var (
	_ calls.Publisher = (*Recorder)(nil)
	_ calls.Publisher = Tee(nil)
)
