package callhistory

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/store"
)

// Page sizes of List.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// MaxEvents bounds the events one listing reads (a workspace with more
// events in its retention than this lists its newest ones only).
const MaxEvents = 2_000_000

// ErrNotFound is a call id that the workspace has no call with.
var ErrNotFound = errors.New("callhistory: no such call")

// ErrBadCursor is a cursor that List did not issue.
var ErrBadCursor = errors.New("callhistory: invalid cursor")

// Query selects a workspace's calls; every filter but Workspace is optional.
type Query struct {
	Workspace string
	Number    string // E.164: the called number (or the caller-ID number of an outbound call)
	Agent     string
	Direction string // inbound, outbound
	Outcome   string // one of Outcomes
	// From and To bound the start time: From <= started_at < To.
	From, To time.Time
	Limit    int    // 1..MaxLimit (0: DefaultLimit)
	Cursor   string // Page.Next of the previous page
}

// Page is a page of calls, newest first. Next is the cursor of the next
// page ("" when this is the last). EventsRead is how many stored events
// the listing read (all of them the workspace's).
type Page struct {
	Calls      []Call
	Next       string
	EventsRead int
}

// Reader reads call records from the workspaces' history streams.
type Reader struct {
	st  *store.Store
	log *slog.Logger
}

// NewReader returns a Reader of st's history streams.
func NewReader(st *store.Store, log *slog.Logger) *Reader {
	if log == nil {
		log = slog.Default()
	}
	return &Reader{st: st, log: log}
}

// List returns q.Workspace's calls matching q, newest first.
func (r *Reader) List(ctx context.Context, q Query) (Page, error) {
	if !validWorkspace(q.Workspace) {
		return Page{}, fmt.Errorf("callhistory: invalid workspace %q", q.Workspace)
	}
	if q.Limit <= 0 {
		q.Limit = DefaultLimit
	}
	if q.Limit > MaxLimit {
		q.Limit = MaxLimit
	}
	var after *cursor
	if q.Cursor != "" {
		c, err := parseCursor(q.Cursor)
		if err != nil {
			return Page{}, err
		}
		after = &c
	}
	st, err := r.st.History(ctx, q.Workspace)
	if err != nil || st == nil {
		return Page{Calls: []Call{}}, err // no stream: no call recorded yet
	}
	// Read the workspace's stream backward in growing windows until the
	// page is known: the newest limit+1 matching calls whose events are
	// all read (their started event is in a window read), and every call
	// not read yet started before them (the stream is in time order,
	// within clock skew between nodes).
	events := map[string][]seqEvent{}
	var out []Call
	window := uint64(4 * (q.Limit + 1)) // messages: events, or batches of them
	read, err := r.backward(ctx, st, window, func(seq uint64, idx int, e storedEvent) {
		events[e.CallID] = append(events[e.CallID], seqEvent{seq, idx, e})
	}, func(oldest time.Time, all bool) bool {
		out = q.select_(events, after, all)
		return len(out) > q.Limit && out[q.Limit].StartedAt.After(oldest.Add(clockSkew)) ||
			!q.From.IsZero() && oldest.Before(q.From.Add(-clockSkew))
	})
	if err != nil {
		return Page{}, err
	}
	if out == nil {
		out = []Call{}
	}
	p := Page{Calls: out, EventsRead: read}
	if len(out) > q.Limit {
		p.Calls = out[:q.Limit]
		last := p.Calls[q.Limit-1]
		p.Next = cursor{t: last.StartedAt, id: last.ID}.String()
	}
	return p, nil
}

// clockSkew is how far apart the clocks of the nodes writing one
// workspace's history may be.
const clockSkew = 5 * time.Second

// seqEvent is an event and where it is stored: its message's stream
// sequence and its line in the message (a batch holds several events).
type seqEvent struct {
	seq uint64
	idx int
	e   storedEvent
}

// merged is the call of evs (one call's events), applied in the order
// they were stored.
func merged(evs []seqEvent) Call {
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].seq != evs[j].seq {
			return evs[i].seq < evs[j].seq
		}
		return evs[i].idx < evs[j].idx
	})
	var c Call
	for _, x := range evs {
		c.apply(x.e)
	}
	return c
}

// backward reads st's messages newest first, in windows of window
// messages that grow fourfold (up to 65,536), and calls fn with each
// event. After each window it asks done, with the oldest event time of
// the window and whether the stream's start was reached; it stops when
// done says so, at the stream's start, or after MaxEvents events. It
// returns how many events it read.
func (r *Reader) backward(ctx context.Context, st jetstream.Stream, window uint64, fn func(uint64, int, storedEvent),
	done func(oldest time.Time, all bool) bool) (int, error) {
	info, err := st.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("callhistory: stream info: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	read := 0
	for hi := last; info.State.Msgs > 0 && hi >= first; {
		lo := first
		if hi-first+1 > window {
			lo = hi - window + 1
		}
		oldest, n, err := r.scan(ctx, st, lo, hi, fn)
		read += n
		if err != nil {
			return read, err
		}
		if stop := done(oldest, lo == first); stop || lo == first || read >= MaxEvents {
			break
		}
		hi = lo - 1
		window = min(window*4, 1<<16)
	}
	return read, nil
}

// select_ merges each call's events in stream order and returns the
// calls matching q after the cursor, newest first. Unless all is set
// (the whole stream was read), a call whose started event was not read
// is left out: older events of it may be unread.
func (q Query) select_(events map[string][]seqEvent, after *cursor, all bool) []Call {
	out := make([]Call, 0, q.Limit+1)
	for _, evs := range events {
		c := merged(evs)
		if !c.startSeen && !all {
			continue
		}
		c.finish()
		if !q.match(&c) || (after != nil && !after.before(&c)) {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return newer(&out[i], &out[j]) })
	return out
}

// scan reads st's messages with lo <= seq <= hi, calls fn with each
// event in them (its message's sequence and its line in the message) and
// returns the oldest event time read and how many events it read.
func (r *Reader) scan(ctx context.Context, st jetstream.Stream, lo, hi uint64, fn func(uint64, int, storedEvent)) (time.Time, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*store.OpTimeout)
	defer cancel()
	c, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       lo,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("callhistory: read: %w", err)
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), store.OpTimeout)
		_ = st.DeleteConsumer(dctx, c.CachedInfo().Name)
		dcancel()
	}()
	var oldest time.Time
	read := 0
	for seq := lo; seq <= hi; {
		b, err := c.Fetch(int(min(hi-seq+1, 1000)), jetstream.FetchMaxWait(store.OpTimeout))
		if err != nil {
			return oldest, read, fmt.Errorf("callhistory: read: %w", err)
		}
		got := 0
		for m := range b.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return oldest, read, fmt.Errorf("callhistory: read: %w", err)
			}
			seq = md.Sequence.Stream + 1
			if md.Sequence.Stream > hi {
				continue
			}
			read += r.decode(md.Sequence.Stream, m.Data(), func(idx int, e storedEvent) {
				if oldest.IsZero() || e.Time.Before(oldest) {
					oldest = e.Time
				}
				fn(md.Sequence.Stream, idx, e)
			})
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return oldest, read, fmt.Errorf("callhistory: read: %w", err)
		}
		if got == 0 {
			break // the range's end is gone (retention) or never came
		}
	}
	return oldest, read, nil
}

// Get returns workspace ws's call id. Its events are in batches with
// other calls' (or, in history written before batches, on the call's own
// subject), so it reads the workspace's stream backward, in growing
// windows, until it has read the call's started event (and what was
// stored up to clockSkew before it): a call of the last minutes is found
// in the first windows; a call not in the history
// costs a reading of the whole stream, as a listing that matches nothing
// does (at most MaxEvents events).
func (r *Reader) Get(ctx context.Context, ws, id string) (Call, error) {
	if !validWorkspace(ws) {
		return Call{}, fmt.Errorf("callhistory: invalid workspace %q", ws)
	}
	st, err := r.st.History(ctx, ws)
	if err != nil || st == nil {
		if err == nil {
			err = ErrNotFound // no stream: no call recorded yet
		}
		return Call{}, err
	}
	var evs []seqEvent
	var startedAt time.Time // of the started event, once read
	_, err = r.backward(ctx, st, 64, func(seq uint64, idx int, e storedEvent) {
		if e.CallID == id {
			evs = append(evs, seqEvent{seq, idx, e})
			if e.Kind == calls.Started {
				startedAt = e.Time
			}
		}
	}, func(oldest time.Time, _ bool) bool {
		// Done once the started event is read and so is everything
		// stored up to clockSkew before it (another node's batch may
		// hold an event of the call stored before it).
		return !startedAt.IsZero() && oldest.Before(startedAt.Add(-clockSkew))
	})
	if err != nil {
		return Call{}, err
	}
	if len(evs) == 0 {
		return Call{}, ErrNotFound
	}
	c := merged(evs)
	c.finish()
	return c, nil
}

func (q Query) match(c *Call) bool {
	switch {
	case q.Number != "" && c.Number != q.Number:
		return false
	case q.Agent != "" && c.Agent != q.Agent:
		return false
	case q.Direction != "" && c.Direction != q.Direction:
		return false
	case q.Outcome != "" && c.Outcome != q.Outcome:
		return false
	case !q.From.IsZero() && c.StartedAt.Before(q.From):
		return false
	case !q.To.IsZero() && !c.StartedAt.Before(q.To):
		return false
	}
	return true
}

// newer orders calls newest first (start time, then id).
func newer(a, b *Call) bool {
	if !a.StartedAt.Equal(b.StartedAt) {
		return a.StartedAt.After(b.StartedAt)
	}
	return a.ID > b.ID
}

// decode calls fn with each event of a stored message (a batch: one
// event per line; history written before batches: one event) and its
// line, and returns how many lines it read. An unreadable line is
// logged and skipped.
func (r *Reader) decode(seq uint64, data []byte, fn func(int, storedEvent)) int {
	n := 0
	for idx := 0; len(data) > 0; idx++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		n++
		var e storedEvent
		if err := json.Unmarshal(line, &e); err != nil || e.CallID == "" {
			r.log.Warn("callhistory: unreadable event skipped", "seq", seq, "line", idx, "err", err)
			continue
		}
		fn(idx, e)
	}
	return n
}

// cursor is the position after which the next page starts: the last
// call's start time and id.
type cursor struct {
	t  time.Time
	id string
}

// before reports whether c comes after the cursor in newest-first order.
func (cu cursor) before(c *Call) bool {
	if !c.StartedAt.Equal(cu.t) {
		return c.StartedAt.Before(cu.t)
	}
	return c.ID < cu.id
}

func (cu cursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte("c1:" + strconv.FormatInt(cu.t.UnixNano(), 10) + ":" + cu.id))
}

func parseCursor(s string) (cursor, error) {
	if len(s) > 2048 {
		return cursor{}, ErrBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, ErrBadCursor
	}
	rest, ok := strings.CutPrefix(string(b), "c1:")
	if !ok {
		return cursor{}, ErrBadCursor
	}
	ns, id, ok := strings.Cut(rest, ":")
	if !ok {
		return cursor{}, ErrBadCursor
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return cursor{}, ErrBadCursor
	}
	return cursor{t: time.Unix(0, n).UTC(), id: id}, nil
}
