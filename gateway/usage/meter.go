// Package usage meters outbound calls and charges their minutes to the
// workspace's credits (issue 12). It implements calls.UsageMeter.
//
// A call costs its destination country's price (Config.Prices) per
// started minute from answer to end, charged as one ledger entry of kind
// usage when it ends (idempotent by call id). Inbound calls are free.
//
// While calls run, every node publishes its answered outbound calls
// (price and answer time, per workspace) on a NATS subject every 250 ms;
// each node adds its peers' calls to its own to know what a workspace's
// calls have committed so far, on every node. When that reaches the
// balance, so that the next started minute of the workspace's calls could
// not be paid, every node ends its calls of that workspace (EndCall,
// reason "credits_exhausted", BYE both ways) just before that minute.
package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning"
)

// Subject is where nodes publish their running outbound calls.
const Subject = "callgate.usage.running"

// EndReason is the end reason of calls cut for want of credits.
const EndReason = "credits_exhausted"

// ErrInsufficientCredits: the balance cannot pay the first minute (the
// SIP edge answers 402, the API 402). It wraps provisioning's error.
var ErrInsufficientCredits = fmt.Errorf("%w: the balance cannot pay the first minute of this call", provisioning.ErrInsufficientCredits)

// Ledger is the credits ledger as the meter uses it (provisioning.Service).
type Ledger interface {
	Balance(ctx context.Context, ws string) (int64, error)
	ChargeUsage(ctx context.Context, c provisioning.UsageCharge) (provisioning.LedgerEntry, error)
}

var _ Ledger = (*provisioning.Service)(nil)

// Options tune the meter; zero values take the defaults.
type Options struct {
	NodeID    string        // unique per node; default random
	Interval  time.Duration // report and check period; default 250 ms
	Expiry    time.Duration // a silent peer is forgotten after this; default 2 s
	Lookahead time.Duration // calls are cut this long before a minute they cannot pay; default 2 intervals
	Now       func() time.Time
	Log       *slog.Logger
	Metrics   *Metrics
}

// call is an answered outbound call on this node.
type call struct {
	id, ws, dest string
	price        int64
	at           time.Time // answered
	minutes      int64     // > 0 once ended: the minutes being charged
	cut          bool      // EndCall asked
}

// run is a call as reported to peers: price, answer time (Unix ms) and,
// once ended and until charged, its fixed minutes.
type run struct {
	P int64 `json:"p"`
	A int64 `json:"a"`
	M int64 `json:"m,omitempty"`
}

type report struct {
	Node    string           `json:"node"`
	Closing bool             `json:"closing,omitempty"`
	WS      map[string][]run `json:"ws,omitempty"`
}

type peer struct {
	seen time.Time
	ws   map[string][]run
}

type balance struct {
	v  int64
	at time.Time
}

// Meter is a cluster-aware calls.UsageMeter.
type Meter struct {
	cfg    Config
	ledger Ledger
	nc     *nats.Conn
	sub    *nats.Subscription
	opts   Options
	ender  atomic.Pointer[enderBox]

	mu       sync.Mutex
	calls    map[string]*call            // call id → call (until charged)
	byWS     map[string]map[string]*call // workspace → its calls (the same calls; no empty entry): kept by add and forget
	peers    map[string]*peer
	balances map[string]balance // last balance read per workspace
	reported bool               // the last report had calls

	charges sync.WaitGroup
	pending map[string][]provisioning.UsageCharge // workspace → its charges waiting; present while its drain runs (under mu)
	ctx     context.Context                       // cancelled by Close after the charges' grace
	cancel  context.CancelFunc
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	ticks   atomic.Int64
}

type enderBox struct{ calls.Ender }

var _ calls.UsageMeter = (*Meter)(nil)

// New starts a meter. nc may be nil (one node: no sharing).
func New(cfg Config, ledger Ledger, nc *nats.Conn, o Options) (*Meter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ledger == nil {
		return nil, errors.New("usage: a ledger is required")
	}
	if o.NodeID == "" {
		o.NodeID = nats.NewInbox()[len(nats.InboxPrefix):]
	}
	if o.Interval <= 0 {
		o.Interval = 250 * time.Millisecond
	}
	if o.Expiry <= 0 {
		o.Expiry = 2 * time.Second
	}
	if o.Expiry < 2*o.Interval {
		o.Expiry = 2 * o.Interval
	}
	if o.Lookahead <= 0 {
		o.Lookahead = 2 * o.Interval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Meter{cfg: cfg, ledger: ledger, nc: nc, opts: o, calls: map[string]*call{}, byWS: map[string]map[string]*call{}, peers: map[string]*peer{},
		balances: map[string]balance{}, pending: map[string][]provisioning.UsageCharge{}, ctx: ctx, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	if nc != nil {
		sub, err := nc.Subscribe(Subject, m.onReport)
		if err != nil {
			cancel()
			return nil, err
		}
		_ = sub.SetPendingLimits(65536, 64<<20)
		m.sub = sub
	}
	go m.run()
	return m, nil
}

// SetEnder sets what ends calls whose workspace ran out of credits (the
// SIP edge). Without one, such calls are only logged.
func (m *Meter) SetEnder(e calls.Ender) {
	if e == nil {
		m.ender.Store(nil)
		return
	}
	m.ender.Store(&enderBox{e})
}

// Price is the credits per started minute of a call to dest (E.164).
func (m *Meter) Price(dest string) int64 {
	if country, _, ok := phone.Classify(dest); ok {
		if p, ok := m.cfg.Prices[country]; ok {
			return p
		}
	}
	return m.cfg.Prices[DefaultRow]
}

// startedMinutes of a call answered at a, at t (at least 1).
func startedMinutes(a, t time.Time) int64 {
	d := t.Sub(a)
	if d < 0 {
		return 1
	}
	return int64(d/time.Minute) + 1
}

func (r run) cost(t time.Time) int64 {
	if r.M > 0 {
		return r.P * r.M
	}
	return r.P * startedMinutes(time.UnixMilli(r.A), t)
}

// committed is what workspace ws's calls on every node have cost by t
// (started minutes, ended calls not yet charged included). m.mu held.
// It reads only ws's calls, so that a call's setup does not cost more
// with other workspaces' calls (issue 15).
func (m *Meter) committed(ws string, t time.Time) int64 {
	var sum int64
	for _, c := range m.byWS[ws] {
		sum += c.run().cost(t)
	}
	for _, p := range m.peers {
		for _, r := range p.ws[ws] {
			sum += r.cost(t)
		}
	}
	return sum
}

func (c *call) run() run { return run{P: c.price, A: c.at.UnixMilli(), M: c.minutes} }

// readBalance reads ws's balance (bounded wait), falling back to the
// last one read when the ledger cannot be reached.
func (m *Meter) readBalance(ws string) (int64, error) {
	ctx, cancel := context.WithTimeout(m.ctx, 2*time.Second)
	defer cancel()
	b, err := m.ledger.Balance(ctx, ws)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if last, ok := m.balances[ws]; ok {
			return last.v, nil
		}
		return 0, err
	}
	m.balances[ws] = balance{v: b, at: m.opts.Now()}
	return b, nil
}

// recentBalance is ws's balance read within the last interval (the
// checks of running calls and the charges keep it fresh), else read now.
func (m *Meter) recentBalance(ws string) (int64, error) {
	m.mu.Lock()
	b, ok := m.balances[ws]
	m.mu.Unlock()
	if ok {
		if age := m.opts.Now().Sub(b.at); age >= 0 && age < m.opts.Interval {
			return b.v, nil
		}
	}
	return m.readBalance(ws)
}

// Authorize implements calls.UsageMeter: nil when ws's balance, less what
// its running calls on every node have committed, pays the first minute
// of a call to dest.
func (m *Meter) Authorize(ws, dest string) error {
	price := m.Price(dest)
	if price == 0 {
		return nil
	}
	bal, err := m.recentBalance(ws)
	if err != nil {
		m.opts.Metrics.refused()
		return fmt.Errorf("usage: read the balance of %s: %w", ws, err)
	}
	m.mu.Lock()
	left := bal - m.committed(ws, m.opts.Now())
	m.mu.Unlock()
	if left < price {
		m.opts.Metrics.refused()
		return ErrInsufficientCredits
	}
	return nil
}

// Answered implements calls.UsageMeter.
func (m *Meter) Answered(callID, ws, dest string, at time.Time) {
	c := &call{id: callID, ws: ws, dest: dest, price: m.Price(dest), at: at}
	m.mu.Lock()
	if _, dup := m.calls[callID]; !dup {
		m.add(c)
	}
	m.mu.Unlock()
}

// add meters c, in calls and its workspace's byWS entry. m.mu held.
func (m *Meter) add(c *call) {
	m.calls[c.id] = c
	cs := m.byWS[c.ws]
	if cs == nil {
		cs = map[string]*call{}
		m.byWS[c.ws] = cs
	}
	cs[c.id] = c
}

// Ended implements calls.UsageMeter: the call's started minutes are
// charged (in the background; Close waits for them).
func (m *Meter) Ended(callID string, at time.Time) {
	m.mu.Lock()
	c := m.calls[callID]
	if c == nil || c.minutes > 0 {
		m.mu.Unlock()
		return // never answered here, or already ending
	}
	c.minutes = startedMinutes(c.at, at)
	ch := provisioning.UsageCharge{Workspace: c.ws, CallID: c.id, Destination: c.dest, Minutes: c.minutes,
		Amount: c.price * c.minutes}
	m.mu.Unlock()
	if ch.Amount == 0 {
		m.forget(callID)
		return
	}
	m.charges.Add(1)
	m.mu.Lock()
	q, running := m.pending[ch.Workspace]
	m.pending[ch.Workspace] = append(q, ch)
	m.mu.Unlock()
	if !running {
		go m.drain(ch.Workspace)
	}
}

// drain writes ws's charges in order, one after the other, until none is
// waiting; one runs per workspace with charges waiting. Every charge is a
// compare-and-set on the workspace's balance, so charges written at once
// only conflict and retry: at 2,500 outbound calls/s of one workspace
// (bench/sip), a goroutine per charge made thousands of writers conflict
// until their deadlines passed, and most calls were never charged. In a
// row, this node's charges no longer conflict with each other.
func (m *Meter) drain(ws string) {
	for {
		m.mu.Lock()
		q := m.pending[ws]
		if len(q) == 0 {
			delete(m.pending, ws)
			m.mu.Unlock()
			return
		}
		ch := q[0]
		q[0] = provisioning.UsageCharge{}
		m.pending[ws] = q[1:]
		m.mu.Unlock()
		m.charge(ch)
		m.forget(ch.CallID)
		m.charges.Done()
	}
}

// forget stops metering a call (charged, or free), removing its
// workspace's byWS entry with its last call.
func (m *Meter) forget(callID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.calls[callID]
	if c == nil {
		return
	}
	delete(m.calls, callID)
	cs := m.byWS[c.ws]
	delete(cs, callID)
	if len(cs) == 0 {
		delete(m.byWS, c.ws)
	}
}

// charge writes the call's ledger entry, retrying a failed write (the
// entry is idempotent by call id) for up to a minute.
func (m *Meter) charge(ch provisioning.UsageCharge) {
	backoff := 100 * time.Millisecond
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
		e, err := m.ledger.ChargeUsage(ctx, ch)
		cancel()
		if err == nil {
			m.opts.Metrics.charged(-e.Amount)
			m.mu.Lock()
			m.balances[ch.Workspace] = balance{v: e.Balance, at: m.opts.Now()}
			m.mu.Unlock()
			return
		}
		if time.Now().After(deadline) || m.ctx.Err() != nil {
			m.opts.Metrics.chargeFailed()
			m.opts.Log.Error("usage: call not charged", "call_id", ch.CallID, "workspace", ch.Workspace,
				"credits", ch.Amount, "err", err)
			return
		}
		select {
		case <-time.After(backoff):
		case <-m.ctx.Done():
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// Close stops the meter: it waits (up to 30 s) for charges in flight and
// tells the peers this node's calls are gone.
func (m *Meter) Close() {
	m.once.Do(func() {
		close(m.stop)
		<-m.done
		wait := make(chan struct{})
		go func() { m.charges.Wait(); close(wait) }()
		select {
		case <-wait:
		case <-time.After(30 * time.Second):
		}
		m.cancel()
		if m.nc != nil {
			_ = m.sub.Unsubscribe()
			b, _ := json.Marshal(report{Node: m.opts.NodeID, Closing: true})
			_ = m.nc.Publish(Subject, b)
			_ = m.nc.Flush()
		}
	})
}

func (m *Meter) run() {
	defer close(m.done)
	t := time.NewTicker(m.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.publish()
		m.expire()
		m.check()
		m.ticks.Add(1)
	}
}

// publish sends this node's calls (a report is complete; after the last
// call ends, one empty report).
func (m *Meter) publish() {
	if m.nc == nil {
		return
	}
	r := report{Node: m.opts.NodeID, WS: map[string][]run{}}
	m.mu.Lock()
	for ws, cs := range m.byWS {
		runs := make([]run, 0, len(cs))
		for _, c := range cs {
			runs = append(runs, c.run())
		}
		r.WS[ws] = runs
	}
	had := m.reported
	m.reported = len(r.WS) > 0
	m.mu.Unlock()
	if len(r.WS) == 0 && !had {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	if err := m.nc.Publish(Subject, b); err != nil {
		m.opts.Log.Debug("usage: report not published", "err", err)
	}
}

// Bounds of a reported call: its minutes (a year) and answer time (Unix
// ms, years 2000 to 2200), so that no cost overflows.
const (
	maxMinutes = 366 * 24 * 60
	minAnswer  = 946684800000
	maxAnswer  = 7258118400000
)

// decodeReport parses a report; false when it is not one of ours
// (malformed, no node id, a price or minutes out of range).
func decodeReport(b []byte) (report, bool) {
	var r report
	if len(b) > 4<<20 || json.Unmarshal(b, &r) != nil || r.Node == "" || len(r.Node) > 256 {
		return report{}, false
	}
	for _, runs := range r.WS {
		for _, x := range runs {
			if x.P < 0 || x.P > maxPrice || x.M < 0 || x.M > maxMinutes || x.A < minAnswer || x.A > maxAnswer {
				return report{}, false
			}
		}
	}
	return r, true
}

func (m *Meter) onReport(msg *nats.Msg) {
	r, ok := decodeReport(msg.Data)
	if !ok || r.Node == m.opts.NodeID {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.Closing || len(r.WS) == 0 {
		delete(m.peers, r.Node)
		return
	}
	m.peers[r.Node] = &peer{seen: m.opts.Now(), ws: r.WS}
}

func (m *Meter) expire() {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, p := range m.peers {
		if now.Sub(p.seen) > m.opts.Expiry {
			delete(m.peers, id)
		}
	}
}

// check ends this node's calls of every workspace whose calls, on every
// node, are about to start a minute the balance cannot pay.
func (m *Meter) check() {
	m.mu.Lock()
	var wss []string
	for ws, cs := range m.byWS {
		for _, c := range cs {
			if c.minutes == 0 && !c.cut {
				wss = append(wss, ws)
				break
			}
		}
	}
	m.mu.Unlock()
	for _, ws := range wss {
		bal, err := m.readBalance(ws)
		if err != nil {
			m.opts.Log.Warn("usage: balance not read; calls not checked", "workspace", ws, "err", err)
			continue
		}
		var cut []string
		m.mu.Lock()
		if m.committed(ws, m.opts.Now().Add(m.opts.Lookahead)) > bal {
			for _, c := range m.byWS[ws] {
				if c.minutes == 0 && !c.cut {
					c.cut = true
					cut = append(cut, c.id)
				}
			}
		}
		m.mu.Unlock()
		if len(cut) == 0 {
			continue
		}
		m.opts.Log.Info("usage: credits exhausted; ending the workspace's calls", "workspace", ws,
			"balance", bal, "calls", len(cut))
		e := m.ender.Load()
		for _, id := range cut {
			m.opts.Metrics.cut()
			if e == nil {
				m.opts.Log.Warn("usage: no call ender; call not cut", "call_id", id)
				continue
			}
			if !e.EndCall(id, EndReason) {
				m.opts.Log.Debug("usage: call to cut already gone", "call_id", id)
			}
		}
	}
}

// Running is the number of answered outbound calls metered on this node.
func (m *Meter) Running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.calls)
}
