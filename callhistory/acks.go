package callhistory

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// acks publishes events to JetStream and takes the acknowledgements the
// way jetstream.PublishAsync does (one reply subscription, bounded
// pending, a timeout, no-responders retried, pending failed on a
// reconnect), for less per event: no future, timer or message copies per
// publish, and an acknowledgement that is a plain PubAck is recognised
// from its bytes instead of decoded. It publishes from one goroutine
// (Recorder.run); acknowledgements arrive on the subscription's. A
// message's buffer is released (back to the Recorder's pool) when its
// acknowledgement, timeout or failure removes it (removeLocked), and not
// while a send of it (first or retry) is under way.
type acks struct {
	nc        *nats.Conn
	prefix    string // reply subjects: prefix + id (base 36)
	sub       *nats.Subscription
	status    chan nats.Status
	max       int
	timeout   time.Duration // acknowledgement wait (and stall wait)
	tick      time.Duration // how often timeouts are looked for
	retryWait time.Duration // wait before publishing again after no responders
	// stored and failed count an outcome; they are called with mu held
	// (so that complete's "nothing pending" means "everything counted")
	// and must not call back into acks.
	stored func(n int)
	failed func(ws string, n int, err error)

	mu      sync.Mutex
	next    uint64
	pending map[uint64]*pendingAck
	gen     uint64        // ticks so far: a pending ack times out timeout/tick ticks after it was sent
	unstall chan struct{} // closed when pending drops below max (made by a stalled publish)
	drained chan struct{} // closed when nothing is pending (made by complete)
	stop    chan struct{}
	once    sync.Once
}

type pendingAck struct {
	ws, subject string
	buf         *batchBuf // the message, kept to be sent again (retry); released by removeLocked
	gen         uint64
	retries     int
	n           int // events in the message (a batch of the workspace's events)
}

// Like jetstream.PublishAsync's defaults: a publish nobody answers (the
// stream not there yet, a leader moving) is retried twice, 250 ms apart.
const (
	noResponderRetries = 2
	noResponderWait    = 250 * time.Millisecond
)

func newAcks(nc *nats.Conn, max int, timeout, tick time.Duration, stored func(n int), failed func(ws string, n int, err error)) (*acks, error) {
	a := &acks{nc: nc, prefix: nc.NewInbox() + ".", max: max, timeout: timeout, tick: tick, retryWait: noResponderWait,
		stored: stored, failed: failed, pending: map[uint64]*pendingAck{}, stop: make(chan struct{})}
	sub, err := nc.Subscribe(a.prefix+"*", a.handle)
	if err != nil {
		return nil, err
	}
	a.sub = sub
	a.status = nc.StatusChanged(nats.RECONNECTING, nats.CLOSED)
	go a.watch()
	return a, nil
}

// publish sends b, b.n events, to subject for workspace ws. While max
// publishes are unacknowledged it waits, up to the timeout, for one to be.
// It takes the caller's reference to b: b must not be used after.
func (a *acks) publish(ws, subject string, b *batchBuf) error {
	a.mu.Lock()
	if len(a.pending) >= a.max {
		if err := a.stallLocked(); err != nil {
			a.mu.Unlock()
			b.release()
			return err
		}
	}
	a.next++
	id := a.next
	b.refs.Add(1) // the pending entry's; the caller's is this send's
	a.pending[id] = &pendingAck{ws: ws, subject: subject, buf: b, gen: a.gen, n: b.n}
	a.mu.Unlock()
	err := a.send(id, subject, b.data)
	b.release()
	if err != nil {
		a.mu.Lock()
		a.removeLocked(id) // the caller counts it
		a.mu.Unlock()
	}
	return err
}

// stallLocked waits until fewer than max are pending; a.mu held (and
// released while it waits).
func (a *acks) stallLocked() error {
	t := time.NewTimer(a.timeout)
	defer t.Stop()
	for len(a.pending) >= a.max {
		if a.unstall == nil {
			a.unstall = make(chan struct{})
		}
		ch := a.unstall
		a.mu.Unlock()
		select {
		case <-ch:
			a.mu.Lock()
		case <-t.C:
			a.mu.Lock()
			return jetstream.ErrTooManyStalledMsgs
		}
	}
	return nil
}

// send publishes data as pending id. nats.Conn.PublishRequest copies data
// into the connection's write buffer (or its reconnect buffer) before it
// returns (nats.go v1.55.0: Conn.publish, natsWriter.appendBufs): the
// caller's reference to data may be dropped when send returns.
func (a *acks) send(id uint64, subject string, data []byte) error {
	var buf [len("_INBOX.") + 64 + 16]byte
	reply := string(strconv.AppendUint(append(buf[:0], a.prefix...), id, 36))
	return a.nc.PublishRequest(subject, reply, data)
}

// removeLocked forgets pending id, releases its buffer, and wakes
// whoever waits for room or for nothing pending. a.mu held.
func (a *acks) removeLocked(id uint64) {
	if p := a.pending[id]; p != nil {
		delete(a.pending, id)
		p.buf.release() // a send under way holds its own reference
	}
	if a.unstall != nil && len(a.pending) < a.max {
		close(a.unstall)
		a.unstall = nil
	}
	if a.drained != nil && len(a.pending) == 0 {
		close(a.drained)
		a.drained = nil
	}
}

// handle takes an acknowledgement.
func (a *acks) handle(m *nats.Msg) {
	id, err := strconv.ParseUint(m.Subject[min(len(a.prefix), len(m.Subject)):], 36, 64)
	if err != nil {
		return
	}
	a.mu.Lock()
	p := a.pending[id]
	if p == nil { // timed out, or failed at a reconnect
		a.mu.Unlock()
		return
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" { // no responders
		if p.retries < noResponderRetries {
			p.retries++
			a.mu.Unlock()
			time.AfterFunc(a.retryWait, func() { a.retry(id) })
			return
		}
		a.failed(p.ws, p.n, jetstream.ErrNoStreamResponse)
		a.removeLocked(id)
		a.mu.Unlock()
		return
	}
	// Counted before it is removed, a.mu held: once nothing is pending
	// (complete, Recorder.Close returns) every outcome is counted.
	if err := ackError(m.Data); err != nil {
		a.failed(p.ws, p.n, err)
	} else {
		a.stored(p.n)
	}
	a.removeLocked(id)
	a.mu.Unlock()
}

// retry publishes pending id again (after no responders). It holds a
// reference to the message's buffer while it sends: the pending entry
// may be removed meanwhile (timed out, failed on a reconnect) and its
// buffer must not be reused before the send has copied it.
func (a *acks) retry(id uint64) {
	a.mu.Lock()
	p := a.pending[id]
	if p == nil {
		a.mu.Unlock()
		return
	}
	p.gen = a.gen // a new wait for its acknowledgement
	p.buf.refs.Add(1)
	a.mu.Unlock()
	err := a.send(id, p.subject, p.buf.data)
	p.buf.release()
	if err != nil {
		// Counted and removed under the lock, as an acknowledgement
		// is: once nothing is pending (complete), every outcome is
		// counted; and only while it is still pending (a timeout or a
		// reconnect meanwhile counted it already).
		a.mu.Lock()
		if a.pending[id] == p {
			a.failed(p.ws, p.n, err)
			a.removeLocked(id)
		}
		a.mu.Unlock()
	}
}

// ackError is nil when data is a JetStream PubAck, else the error it
// holds (jetstream.ErrInvalidJSAck when it is neither): decodeAck's
// answer, found from the bytes when they are a plain PubAck.
func ackError(data []byte) error {
	if plainPubAck(data) {
		return nil
	}
	return decodeAck(data)
}

// decodeAck reads an acknowledgement as jetstream.PublishAsync does.
func decodeAck(data []byte) error {
	var r struct {
		Error *jetstream.APIError `json:"error,omitempty"`
		*jetstream.PubAck
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return jetstream.ErrInvalidJSAck
	}
	if r.Error != nil {
		return r.Error
	}
	if r.PubAck == nil || r.Stream == "" {
		return jetstream.ErrInvalidJSAck
	}
	return nil
}

// plainPubAck reports whether data is an acknowledgement as a stream
// writes one for a stored message (nats-server's template):
// {"stream":"NAME","seq":N} or {"stream":"NAME","domain":"D","seq":N}.
// Anything else (errors, duplicates, other shapes) is decoded.
// FuzzAckError holds it to decodeAck.
func plainPubAck(b []byte) bool {
	b, ok := bytes.CutPrefix(b, []byte(`{"stream":"`))
	if !ok {
		return false
	}
	n := plainToken(b)
	if n == 0 {
		return false
	}
	if b, ok = bytes.CutPrefix(b[n:], []byte(`",`)); !ok {
		return false
	}
	if d, ok := bytes.CutPrefix(b, []byte(`"domain":"`)); ok {
		d = d[plainToken(d):]
		if b, ok = bytes.CutPrefix(d, []byte(`",`)); !ok {
			return false
		}
	}
	if b, ok = bytes.CutPrefix(b, []byte(`"seq":`)); !ok {
		return false
	}
	digits := 0
	for digits < len(b) && b[digits] >= '0' && b[digits] <= '9' {
		digits++
	}
	// 1-19 digits (any fits a uint64), no leading zero, then the end.
	return digits > 0 && digits < 20 && (b[0] != '0' || digits == 1) && string(b[digits:]) == "}"
}

// plainToken is the length of b's prefix of printable ASCII other than
// " and \ (a JSON string's contents as they are).
func plainToken(b []byte) int {
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return i
		}
	}
	return len(b)
}

// watch fails what is pending when the connection is lost (its
// acknowledgements will not come) and what waited too long.
func (a *acks) watch() {
	t := time.NewTicker(a.tick)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case s, ok := <-a.status:
			if !ok {
				return
			}
			if s == nats.CLOSED {
				a.expire(func(*pendingAck) bool { return true }, nats.ErrConnectionClosed)
				return
			}
			a.expire(func(*pendingAck) bool { return true }, nats.ErrDisconnected)
		case <-t.C:
			a.mu.Lock()
			a.gen++
			gen, ticks := a.gen, uint64(a.timeout/a.tick)
			a.mu.Unlock()
			a.expire(func(p *pendingAck) bool { return gen-p.gen > ticks }, jetstream.ErrAsyncPublishTimeout)
		}
	}
}

// expire fails the pending acknowledgements that old says are.
func (a *acks) expire(old func(*pendingAck) bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, p := range a.pending {
		if old(p) {
			a.failed(p.ws, p.n, err) // counted before removed (handle)
			a.removeLocked(id)
		}
	}
}

// complete is closed when nothing is pending.
func (a *acks) complete() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if a.drained == nil {
		a.drained = make(chan struct{})
	}
	return a.drained
}

// close stops taking acknowledgements; what is pending is not counted.
func (a *acks) close() {
	a.once.Do(func() {
		close(a.stop)
		a.nc.RemoveStatusListener(a.status)
		_ = a.sub.Unsubscribe()
	})
}
