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
	a, err := newAcks(nc, o.MaxPending, ackTimeout, time.Second, stored.Inc, func(ws string, err error) {
		r.failed(EventError, ws, err)
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

// queued is an event waiting to be stored: its workspace, call id and JSON.
type queued struct {
	ws, callID string
	data       []byte
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
	r.enqueue(queued{ws: e.Workspace, callID: e.CallID, data: data})
}

// PublishEncoded implements calls.EncodedPublisher: it queues data, e's
// JSON (with its time set), and returns at once.
func (r *Recorder) PublishEncoded(e calls.Event, data []byte) {
	if r == nil || !r.keep(&e) {
		return
	}
	r.enqueue(queued{ws: e.Workspace, callID: e.CallID, data: data})
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
// publishes that event and every one queued meanwhile. Events queued
// while it sleeps wake nobody (a send on a buffered channel with no
// receiver waiting), and a batch goes through the NATS connection's
// flusher, the server's read loop, the stream and the acknowledgements
// as one burst: at thousands of events a second, a few goroutine
// wake-ups per batch instead of per event (BenchmarkCallEventsPaced). An
// event is published at most the linger time later, in order; the events
// of a batch wait in the queue, not here, so Queue still bounds them.
//
// DefaultLinger is 20 ms: history is read by people and by API calls
// made seconds into a call, and against 1 ms it halves the goroutine
// wake-ups per call (BenchmarkCallEventsPaced: 9.5 → 4.1 at 4,000
// calls/s); in bench/sip/run.sh's five interleaved runs the median CPU
// per call at 5,000 calls/s went from 142 to 125 µs (bench/sip/README.md,
// fourth round, for the runs where it did not show). The queue holds
// DefaultQueue events, 20 ms of 400,000 events a second.
func (r *Recorder) run() {
	defer close(r.done)
	for e := range r.q {
		if r.linger > 0 && len(r.q) == 0 {
			time.Sleep(r.linger)
		}
		r.store(e)
		for more := true; more; {
			select {
			case e, ok := <-r.q:
				if !ok {
					return
				}
				r.store(e)
			default:
				more = false
			}
		}
	}
}

// store publishes e, creating its workspace's stream first if needed.
func (r *Recorder) store(e queued) {
	r.m.Queue.Dec()
	if _, ok := r.known.Load(e.ws); !ok {
		ctx, cancel := context.WithTimeout(context.Background(), ensureTimeout)
		err := r.streams.EnsureHistory(ctx, e.ws)
		cancel()
		if err != nil {
			r.failed(EventError, e.ws, err)
			return
		}
		r.known.Store(e.ws, true)
	}
	// publish waits (here, never in Publish) while MaxPending
	// publishes are unacknowledged, up to ackTimeout.
	if err := r.acks.publish(e.ws, Subject(e.ws, e.callID), e.data); err != nil {
		r.failed(EventError, e.ws, err)
		r.known.Delete(e.ws)
	}
}

// failed counts an event not stored and logs it, at most once a second.
func (r *Recorder) failed(outcome, where string, err error) {
	r.m.Events.WithLabelValues(outcome).Inc()
	r.logMu.Lock()
	now := time.Now()
	logIt := now.Sub(r.lastLog) >= time.Second
	if logIt {
		r.lastLog = now
	}
	r.logMu.Unlock()
	if logIt {
		r.log.Warn("callhistory: call event not stored (counted in callgate_history_events_total)", "outcome", outcome, "subject", where, "err", err)
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
