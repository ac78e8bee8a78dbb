// Package limits counts calls against workspace limits across every node
// of a cluster (issue 13: max_concurrent_calls, max_calls_per_second and
// the outbound policy's caps). It implements calls.Limiter.
//
// Each node keeps its own calls exactly (live counts and a sliding
// one-second window of admissions, in 100 ms buckets) and publishes them
// on a NATS subject every interval (250 ms by default, sooner after a
// change). Every node sums the latest report of each peer with its own
// live counts; a peer that stops reporting is forgotten after the expiry
// (default 2 s), a node that closes says so at once. Admit never waits on
// the network: it reads the sums under one mutex.
//
// Limits are therefore exact on one node and, across nodes, exact up to
// what other nodes admitted within the last report interval (calls that
// arrive on several nodes within the same ~250 ms may pass together).
package limits

import (
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callgate/callgate/gateway/calls"
)

// Subject is where nodes publish their per-workspace counts.
const Subject = "callgate.limits.counts"

// Rules named in refusals (calls.Limiter's rule, the metric's label).
const (
	RuleConcurrent    = "max_concurrent_calls"
	RuleRate          = "max_calls_per_second"
	RuleOutConcurrent = "outbound.max_concurrent_calls"
	RuleOutRate       = "outbound.max_calls_per_second"
)

// Rules is every rule, in the order they are checked.
var Rules = []string{RuleConcurrent, RuleRate, RuleOutConcurrent, RuleOutRate}

// Retry-After suggested with a refusal: a concurrency cap frees up when a
// call ends (seconds to minutes), a rate cap within a second.
const (
	retryConcurrent = 5 * time.Second
	retryRate       = time.Second
)

const (
	buckets     = 10 // the one-second window, in 100 ms buckets
	bucketWidth = time.Second / buckets
)

// Options tune the counter; zero values take the defaults.
type Options struct {
	NodeID   string        // unique per node; default random
	Interval time.Duration // report period; default 250 ms
	Expiry   time.Duration // a peer silent this long is forgotten; default 2 s
	Log      *slog.Logger
	Metrics  *Metrics         // nil: not counted
	Now      func() time.Time // clock of the one-second windows; nil: time.Now
}

// counts is one workspace's calls on one node.
type counts struct {
	Conc    int64 `json:"c,omitempty"`  // calls in progress
	OutConc int64 `json:"oc,omitempty"` // of which outbound
	Recent  int64 `json:"r,omitempty"`  // admitted in the last second
	OutRec  int64 `json:"or,omitempty"` // of which outbound
}

func (c counts) zero() bool { return c == counts{} }

// local is this node's live state of one workspace.
type local struct {
	conc, outConc int64
	win, outWin   [buckets]int64 // admissions per 100 ms bucket
	epoch         int64          // bucket number (time/bucketWidth) of the newest bucket
}

// advance moves the window to bucket now, clearing buckets that left it.
func (l *local) advance(now int64) {
	if now <= l.epoch {
		return
	}
	n := now - l.epoch
	if n > buckets {
		n = buckets
	}
	for i := int64(1); i <= n; i++ {
		k := (l.epoch + i) % buckets
		l.win[k], l.outWin[k] = 0, 0
	}
	l.epoch = now
}

func (l *local) recent() (all, out int64) {
	for i := range l.win {
		all += l.win[i]
		out += l.outWin[i]
	}
	return all, out
}

// report is what a node publishes.
type report struct {
	Node    string            `json:"node"`
	Closing bool              `json:"closing,omitempty"`
	WS      map[string]counts `json:"ws,omitempty"`
}

type peer struct {
	seen time.Time
	ws   map[string]counts
}

// Counter is a cluster-wide calls.Limiter.
type Counter struct {
	nc   *nats.Conn
	sub  *nats.Subscription
	opts Options
	now  func() time.Time

	mu      sync.Mutex
	locals  map[string]*local
	peers   map[string]*peer
	peerSum map[string]counts // sum of peers' latest reports, by workspace

	nudge chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

var _ calls.Limiter = (*Counter)(nil)

// New starts a counter on nc. Close stops it.
func New(nc *nats.Conn, o Options) (*Counter, error) {
	if nc == nil {
		return nil, errors.New("limits: a NATS connection is required")
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
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Counter{nc: nc, opts: o, now: o.Now, locals: map[string]*local{}, peers: map[string]*peer{},
		peerSum: map[string]counts{}, nudge: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	sub, err := nc.Subscribe(Subject, c.onReport)
	if err != nil {
		return nil, err
	}
	// reports are small and frequent: never let a slow handler block the connection
	_ = sub.SetPendingLimits(65536, 64<<20)
	c.sub = sub
	go c.run()
	return c, nil
}

// NodeID is this counter's id in reports.
func (c *Counter) NodeID() string { return c.opts.NodeID }

// Admit implements calls.Limiter.
func (c *Counter) Admit(ws, dir string, caps calls.LimitCaps) (string, time.Duration, bool) {
	out := dir == calls.Outbound
	now := c.now()
	c.mu.Lock()
	l := c.locals[ws]
	if l == nil {
		l = &local{epoch: now.UnixNano() / int64(bucketWidth)}
		c.locals[ws] = l
	}
	l.advance(now.UnixNano() / int64(bucketWidth))
	rec, outRec := l.recent()
	p := c.peerSum[ws]
	conc, outConc := l.conc+p.Conc, l.outConc+p.OutConc
	rate, outRate := rec+p.Recent, outRec+p.OutRec
	rule, retry := "", time.Duration(0)
	switch {
	case caps.MaxConcurrent > 0 && conc >= int64(caps.MaxConcurrent):
		rule, retry = RuleConcurrent, retryConcurrent
	case caps.MaxPerSecond > 0 && rate >= int64(caps.MaxPerSecond):
		rule, retry = RuleRate, retryRate
	case out && caps.MaxOutConcurrent > 0 && outConc >= int64(caps.MaxOutConcurrent):
		rule, retry = RuleOutConcurrent, retryConcurrent
	case out && caps.MaxOutPerSecond > 0 && outRate >= int64(caps.MaxOutPerSecond):
		rule, retry = RuleOutRate, retryRate
	}
	if rule != "" {
		if l.conc == 0 && rec == 0 {
			delete(c.locals, ws)
		}
		c.mu.Unlock()
		c.opts.Metrics.refused(rule)
		return rule, retry, false
	}
	k := l.epoch % buckets
	l.conc++
	l.win[k]++
	if out {
		l.outConc++
		l.outWin[k]++
	}
	c.mu.Unlock()
	c.poke()
	return "", 0, true
}

// Release implements calls.Limiter.
func (c *Counter) Release(ws, dir string) {
	c.mu.Lock()
	if l := c.locals[ws]; l != nil && l.conc > 0 {
		l.conc--
		if dir == calls.Outbound && l.outConc > 0 {
			l.outConc--
		}
	}
	c.mu.Unlock()
	c.poke()
}

// Totals returns the cluster-wide calls in progress and admissions in
// the last second of workspace ws as this node sees them.
func (c *Counter) Totals(ws string) (concurrent, lastSecond int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peerSum[ws]
	concurrent, lastSecond = p.Conc, p.Recent
	if l := c.locals[ws]; l != nil {
		l.advance(c.now().UnixNano() / int64(bucketWidth))
		r, _ := l.recent()
		concurrent += l.conc
		lastSecond += r
	}
	return concurrent, lastSecond
}

// Peers is the number of other nodes whose reports count.
func (c *Counter) Peers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.peers)
}

func (c *Counter) poke() {
	select {
	case c.nudge <- struct{}{}:
	default:
	}
}

// Close stops reporting and tells the peers this node's calls are gone.
func (c *Counter) Close() {
	c.once.Do(func() {
		close(c.stop)
		<-c.done
		_ = c.sub.Unsubscribe()
		b, _ := json.Marshal(report{Node: c.opts.NodeID, Closing: true})
		_ = c.nc.Publish(Subject, b)
		_ = c.nc.Flush()
	})
}

// minGap bounds how often a change triggers a report before the period.
const minGap = 50 * time.Millisecond

func (c *Counter) run() {
	defer close(c.done)
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		case <-c.nudge:
			if d := minGap - time.Since(last); d > 0 {
				select {
				case <-c.stop:
					return
				case <-time.After(d):
				}
			}
		}
		last = time.Now()
		c.publish()
		c.expire()
	}
}

// publish sends this node's counts (every workspace with calls in
// progress or admitted in the last second; a report is complete).
func (c *Counter) publish() {
	now := c.now().UnixNano() / int64(bucketWidth)
	r := report{Node: c.opts.NodeID, WS: map[string]counts{}}
	c.mu.Lock()
	for ws, l := range c.locals {
		l.advance(now)
		rec, outRec := l.recent()
		k := counts{Conc: l.conc, OutConc: l.outConc, Recent: rec, OutRec: outRec}
		if k.zero() {
			delete(c.locals, ws)
			continue
		}
		r.WS[ws] = k
	}
	c.mu.Unlock()
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	if err := c.nc.Publish(Subject, b); err != nil {
		c.opts.Log.Debug("limits: report not published", "err", err)
	}
}

// maxCount bounds a count in a report (anything larger is not ours).
const maxCount = 1 << 30

// decodeReport parses a report; false when it is not one of ours
// (malformed, no node id, a count negative or absurd).
func decodeReport(b []byte) (report, bool) {
	var r report
	if len(b) > 1<<20 || json.Unmarshal(b, &r) != nil || r.Node == "" || len(r.Node) > 256 {
		return report{}, false
	}
	for _, k := range r.WS {
		for _, v := range []int64{k.Conc, k.OutConc, k.Recent, k.OutRec} {
			if v < 0 || v > maxCount {
				return report{}, false
			}
		}
	}
	return r, true
}

// onReport takes a peer's report (its own come back too: ignored).
func (c *Counter) onReport(m *nats.Msg) {
	r, ok := decodeReport(m.Data)
	if !ok || r.Node == c.opts.NodeID {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Closing {
		delete(c.peers, r.Node)
	} else {
		c.peers[r.Node] = &peer{seen: c.now(), ws: r.WS}
	}
	c.resum()
}

// expire forgets peers that stopped reporting.
func (c *Counter) expire() {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	gone := false
	for id, p := range c.peers {
		if now.Sub(p.seen) > c.opts.Expiry {
			delete(c.peers, id)
			gone = true
			c.opts.Log.Info("limits: peer stopped reporting; its calls no longer count", "node", id)
		}
	}
	if gone {
		c.resum()
	}
	c.opts.Metrics.peers(len(c.peers))
}

// resum rebuilds peerSum. c.mu held.
func (c *Counter) resum() {
	sum := make(map[string]counts, len(c.peerSum))
	for _, p := range c.peers {
		for ws, k := range p.ws {
			s := sum[ws]
			s.Conc += k.Conc
			s.OutConc += k.OutConc
			s.Recent += k.Recent
			s.OutRec += k.OutRec
			sum[ws] = s
		}
	}
	c.peerSum = sum
}
