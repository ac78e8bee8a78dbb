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
// blocks: events go through a bounded queue to one goroutine that
// publishes them asynchronously to JetStream; an event that cannot be
// queued or is not acknowledged is counted (callgate_history_events_total
// dropped / error) and logged at a bounded rate.
type Recorder struct {
	acks    *acks
	streams Streams
	known   sync.Map // workspace → true: its stream exists (forgotten on a publish error)
	log     *slog.Logger
	m       *Metrics
	q       chan queued
	linger  time.Duration
	done    chan struct{}

	mu      sync.RWMutex // guards closed and the sends on q against Close
	closed  bool
	lastLog time.Time
	logMu   sync.Mutex
}

// Streams creates a workspace's history stream (store.Store).
type Streams interface {
	EnsureHistory(ctx context.Context, ws string) error
}

// NewRecorder starts a Recorder publishing on nc (the node's NATS
// connection) into the workspaces' streams, created through streams on
// a workspace's first event. Close stops it after the queued events are
// published.
func NewRecorder(nc *nats.Conn, streams Streams, o RecorderOptions) (*Recorder, error) {
	r := &Recorder{log: o.Log, m: o.Metrics, done: make(chan struct{}), streams: streams}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.m == nil {
		r.m = NewMetrics(nil)
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
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
	r.q = make(chan queued, o.Queue)
	go r.run()
	return r, nil
}

// queued is an event waiting to be stored: its workspace and JSON.
type queued struct {
	ws   string
	data []byte
}

// Publish implements calls.Publisher: it queues e and returns at once.
func (r *Recorder) Publish(e calls.Event) {
	if r == nil || !r.keep(&e) {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	data, err := calls.Encode(&e)
	if err != nil {
		r.failed(EventError, e.Workspace, err)
		return
	}
	r.enqueue(queued{ws: e.Workspace, data: data})
}

// PublishEncoded implements calls.EncodedPublisher: it queues data, e's
// JSON (with its time set), and returns at once.
func (r *Recorder) PublishEncoded(e calls.Event, data []byte) {
	if r == nil || !r.keep(&e) {
		return
	}
	r.enqueue(queued{ws: e.Workspace, data: data})
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

func (r *Recorder) enqueue(q queued) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		r.failed(EventDropped, "", errStopped)
		return
	}
	select {
	case r.q <- q:
		r.m.Queue.Inc()
	default:
		r.failed(EventDropped, q.ws, errQueueFull)
	}
}

type recorderError string

func (e recorderError) Error() string { return string(e) }

const (
	errQueueFull = recorderError("callhistory: queue full")
	errStopped   = recorderError("callhistory: recorder stopped")
)

// run publishes the queued events in batches: when an event comes to an
// empty queue it sleeps for the linger time, not listening, and then
// takes that event and every one queued meanwhile, and publishes each
// workspace's events of the batch as one message (MaxBatchBytes at
// most; more make several), one event per line, in order. Events queued
// while it sleeps wake nobody (a send on a buffered channel with no
// receiver waiting), and a batch is one message through the NATS
// connection, the server's read loop, the stream and the
// acknowledgements instead of one per event. An event is published at
// most the linger time later. What the recorder holds is bounded: Queue
// events, the batches of the events taken from it (each published
// before more are taken) and MaxPending unacknowledged messages.
//
// DefaultLinger is 20 ms: history is read by people and by API calls
// made seconds into a call. At 4,000 calls/s (BenchmarkCallEventsPaced)
// a call's events took 9.5 goroutine hand-offs with 1 ms batches of one
// message per event, 4.1 with 20 ms ones, and 1.2 with 20 ms batches
// in one message; the messages per call fall from 3 to a few
// hundredths (issue 15: bench/sip/README.md, fourth and fifth rounds).
// BenchmarkCallEvents: 33-36 µs of CPU per call before, 12-14 after.
// The queue holds DefaultQueue events, 20 ms of 400,000 events a second.
func (r *Recorder) run() {
	defer close(r.done)
	b := batches{}
	for e := range r.q {
		if r.linger > 0 && len(r.q) == 0 {
			time.Sleep(r.linger)
		}
		r.add(b, e)
		for more := true; more; {
			select {
			case e, ok := <-r.q:
				if !ok {
					r.flush(b)
					return
				}
				r.add(b, e)
			default:
				more = false
			}
		}
		r.flush(b)
	}
}

// MaxBatchBytes bounds one history message (a workspace's events of a
// batch, one per line); the stream takes messages up to
// store.HistoryMaxMsgSize.
const MaxBatchBytes = 64 << 10

// batch is a workspace's events waiting for one message.
type batch struct {
	data []byte // events, one per line
	n    int
}

type batches map[string]*batch

// add puts e in its workspace's batch, publishing the batch first if e
// would take it over MaxBatchBytes.
func (r *Recorder) add(b batches, e queued) {
	r.m.Queue.Dec()
	w := b[e.ws]
	if w == nil {
		w = &batch{}
		b[e.ws] = w
	}
	if w.n > 0 && len(w.data)+1+len(e.data) > MaxBatchBytes {
		r.store(e.ws, w)
		*w = batch{}
	}
	if w.n > 0 {
		w.data = append(w.data, '\n')
	}
	w.data = append(w.data, e.data...)
	w.n++
}

// flush publishes every workspace's batch.
func (r *Recorder) flush(b batches) {
	for ws, w := range b {
		if w.n > 0 {
			r.store(ws, w)
		}
		delete(b, ws)
	}
}

// store publishes a workspace's batch, creating its stream first if needed.
func (r *Recorder) store(ws string, w *batch) {
	if _, ok := r.known.Load(ws); !ok {
		ctx, cancel := context.WithTimeout(context.Background(), ensureTimeout)
		err := r.streams.EnsureHistory(ctx, ws)
		cancel()
		if err != nil {
			r.failedN(EventError, ws, w.n, err)
			return
		}
		r.known.Store(ws, true)
	}
	// publish waits (here, never in Publish) while MaxPending
	// publishes are unacknowledged, up to ackTimeout.
	if err := r.acks.publish(ws, BatchSubject(ws), w.data, w.n); err != nil {
		r.failedN(EventError, ws, w.n, err)
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

// Close stops taking events, publishes the queued ones and waits for
// their acknowledgements until ctx ends.
func (r *Recorder) Close(ctx context.Context) {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.q)
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
// first, for all the publishers that take encoded events
// (calls.EncodedPublisher).
type Tee []calls.Publisher

// Publish implements calls.Publisher.
func (t Tee) Publish(e calls.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	var data []byte
	encoded := false
	for _, p := range t {
		ep, ok := p.(calls.EncodedPublisher)
		if !ok {
			p.Publish(e)
			continue
		}
		if !encoded {
			var err error
			if data, err = calls.Encode(&e); err != nil {
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
}

var (
	_ calls.Publisher = (*Recorder)(nil)
	_ calls.Publisher = Tee(nil)
)
