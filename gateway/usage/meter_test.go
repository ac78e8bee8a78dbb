package usage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

var prices = Config{Prices: map[string]int64{"US": 2, "GB": 5, DefaultRow: 10}}

const (
	usNumber = "+12282001234"
	gbNumber = "+442079460000"
	frNumber = "+33142685300"
)

type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }
func (c *clock) now() time.Time   { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)  { c.ns.Store(t.UnixNano()) }

// ledger opens a real store and credits service with workspace ws holding credits.
func ledger(t *testing.T, ws string, credits int64) (*provisioning.Service, *store.Store) {
	t.Helper()
	st := storetest.OpenEmbedded(t)
	svc := provisioning.New(st, provisioning.Options{})
	if _, _, err := svc.CreateWorkspace(context.Background(), ws, ws, credits); err != nil {
		t.Fatal(err)
	}
	return svc, st
}

func newMeter(t *testing.T, svc *provisioning.Service, st *store.Store, clk *clock, m *Metrics) *Meter {
	t.Helper()
	o := Options{Interval: 50 * time.Millisecond, Metrics: m}
	if clk != nil {
		o.Now = clk.now
	}
	var nc = st.NC
	mt, err := New(prices, svc, nc, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mt.Close)
	return mt
}

// recordingEnder is the SIP edge's side of calls.Ender as the meter sees
// it: it records the calls it is asked to end and, like the edge, reports
// their end to the meter.
type recordingEnder struct {
	mu    sync.Mutex
	ended map[string]string // call id → reason
	m     *Meter
	at    func() time.Time
}

func (e *recordingEnder) EndCall(id, reason string) bool {
	e.mu.Lock()
	if e.ended == nil {
		e.ended = map[string]string{}
	}
	e.ended[id] = reason
	e.mu.Unlock()
	e.m.Ended(id, e.at())
	return true
}

func (e *recordingEnder) get() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]string{}
	for k, v := range e.ended {
		out[k] = v
	}
	return out
}

func usageEntries(t *testing.T, svc *provisioning.Service, ws string) map[string]provisioning.LedgerEntry {
	t.Helper()
	es, err := svc.Ledger(context.Background(), ws)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]provisioning.LedgerEntry{}
	for _, e := range es {
		if e.Kind != provisioning.KindUsage {
			continue
		}
		if _, dup := out[e.CallID]; dup {
			t.Fatalf("call %s charged twice", e.CallID)
		}
		out[e.CallID] = e
	}
	return out
}

func TestPricePerDestinationCountry(t *testing.T) {
	svc, st := ledger(t, "ws", 0)
	m := newMeter(t, svc, st, nil, nil)
	for dest, want := range map[string]int64{usNumber: 2, gbNumber: 5, frNumber: 10, "not-a-number": 10} {
		if got := m.Price(dest); got != want {
			t.Errorf("Price(%s) = %d, want %d", dest, got, want)
		}
	}
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{{0, 1}, {59 * time.Second, 1}, {time.Minute, 2}, {150 * time.Second, 3}} {
		t0 := time.Unix(1000, 0)
		if got := startedMinutes(t0, t0.Add(tc.d)); got != tc.want {
			t.Errorf("startedMinutes(%s) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

// TestConcurrentCallEndsChargeExactlyOnce: many calls ending at once (and
// each end reported twice) leave one usage entry per call, with its call
// id, and a balance that is exactly the credits less the calls' cost.
func TestConcurrentCallEndsChargeExactlyOnce(t *testing.T) {
	const credits = 100000
	svc, st := ledger(t, "ws", credits)
	reg := prometheus.NewRegistry()
	m := newMeter(t, svc, st, nil, NewMetrics(reg))
	t0 := time.Now().Add(-time.Hour)
	var want int64
	dests := []string{usNumber, gbNumber, frNumber}
	const n = 40
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("call-%02d", i)
		dest := dests[i%3]
		m.Answered(id, "ws", dest, t0)
		want += m.Price(dest) * startedMinutes(t0, t0.Add(time.Duration(i)*17*time.Second))
	}
	m.Answered("never-answered-is-not-here", "other", usNumber, t0)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		for twice := 0; twice < 2; twice++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				m.Ended(fmt.Sprintf("call-%02d", i), t0.Add(time.Duration(i)*17*time.Second))
			}(i)
		}
	}
	m.Ended("unknown-call", time.Now()) // not answered: free
	wg.Wait()
	testwait.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if got := len(usageEntries(t, svc, "ws")); got != n {
			return fmt.Errorf("%d usage entries, want %d", got, n)
		}
		return nil
	})
	m.Close()
	bal, err := svc.Balance(context.Background(), "ws")
	if err != nil {
		t.Fatal(err)
	}
	if bal != credits-want {
		t.Fatalf("balance %d, want %d - %d = %d", bal, credits, want, credits-want)
	}
	es := usageEntries(t, svc, "ws")
	e := es["call-04"] // GB, 4*17 s = 68 s: 2 started minutes at 5
	if e.Amount != -10 || e.Number != gbNumber || !strings.Contains(e.Reason, "2 min") {
		t.Fatalf("call-04's entry: %+v", e)
	}
	if got := testutil.ToFloat64(m.opts.Metrics.Charged); got != float64(want) {
		t.Fatalf("callgate_usage_charged_credits_total = %v, want %d", got, want)
	}
	// the same call ended again on another node (a new meter) is not charged again
	m2 := newMeter(t, svc, st, nil, nil)
	m2.Answered("call-07", "ws", usNumber, t0)
	m2.Ended("call-07", t0.Add(10*time.Minute))
	m2.Close()
	if b2, _ := svc.Balance(context.Background(), "ws"); b2 != bal {
		t.Fatalf("a repeated charge of call-07 changed the balance: %d → %d", bal, b2)
	}
}

func TestAuthorizeRefusesWhenTheFirstMinuteCannotBePaid(t *testing.T) {
	svc, st := ledger(t, "ws", 4)
	reg := prometheus.NewRegistry()
	m := newMeter(t, svc, st, nil, NewMetrics(reg))
	if err := m.Authorize("ws", usNumber); err != nil { // 2 ≤ 4
		t.Fatalf("US call refused with 4 credits: %v", err)
	}
	err := m.Authorize("ws", gbNumber) // 5 > 4
	if !errors.Is(err, ErrInsufficientCredits) || !errors.Is(err, provisioning.ErrInsufficientCredits) {
		t.Fatalf("GB call with 4 credits: %v, want ErrInsufficientCredits", err)
	}
	// running calls count against the balance: one US call answered
	// commits 2, a second commits 2 more, a third cannot be paid
	m.Answered("a", "ws", usNumber, time.Now())
	if err := m.Authorize("ws", usNumber); err != nil {
		t.Fatalf("second US call refused: %v", err)
	}
	m.Answered("b", "ws", usNumber, time.Now())
	if err := m.Authorize("ws", usNumber); !errors.Is(err, ErrInsufficientCredits) {
		t.Fatalf("third US call with 4 credits and two calls running: %v", err)
	}
	if got := testutil.ToFloat64(m.opts.Metrics.Refused); got != 2 {
		t.Fatalf("callgate_usage_refused_total = %v, want 2", got)
	}
	if err := m.Authorize("nobody", frNumber); !errors.Is(err, ErrInsufficientCredits) {
		t.Fatalf("workspace with no credits: %v", err)
	}
}

// TestCreditsRunningOutCutsTheWorkspacesCallsOnEveryNode: two calls on each
// of two nodes (2 credits a minute each, 10 credits): the first minute
// (8) is paid, the second (16) is not, so every call is ended just before
// it, on both nodes, though each node alone (4 a minute) could pay it.
func TestCreditsRunningOutCutsTheWorkspacesCallsOnEveryNode(t *testing.T) {
	svc, st := ledger(t, "ws", 10)
	if _, _, err := svc.CreateWorkspace(context.Background(), "rich", "rich", 1000); err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clk := newClock(t0)
	reg := prometheus.NewRegistry()
	met := NewMetrics(reg)
	a, b := newMeter(t, svc, st, clk, met), newMeter(t, svc, st, clk, nil)
	ea := &recordingEnder{m: a, at: clk.now}
	eb := &recordingEnder{m: b, at: clk.now}
	a.SetEnder(ea)
	b.SetEnder(eb)
	a.Answered("a1", "ws", usNumber, t0)
	a.Answered("a2", "ws", usNumber, t0)
	b.Answered("b1", "ws", usNumber, t0)
	b.Answered("b2", "ws", usNumber, t0)
	a.Answered("other-ws", "rich", usNumber, t0) // another workspace is not cut
	// each node sees the other's calls
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for name, m := range map[string]*Meter{"a": a, "b": b} {
			m.mu.Lock()
			c := m.committed("ws", t0)
			m.mu.Unlock()
			if c != 8 {
				return fmt.Errorf("node %s sees %d credits committed, want 8", name, c)
			}
		}
		return nil
	})
	// half-way through the first minute: nothing is cut (several checks pass)
	clk.set(t0.Add(30 * time.Second))
	for _, m := range []*Meter{a, b} {
		start := m.ticks.Load()
		testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			if m.ticks.Load() < start+3 {
				return errors.New("meter has not checked yet")
			}
			return nil
		})
	}
	if len(ea.get())+len(eb.get()) != 0 {
		t.Fatalf("calls cut while the minute is paid: %v %v", ea.get(), eb.get())
	}
	// just before the second minute: every call of ws is ended, on both nodes
	clk.set(t0.Add(59*time.Second + 900*time.Millisecond))
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		ga, gb := ea.get(), eb.get()
		if len(ga) != 2 || len(gb) != 2 {
			return fmt.Errorf("ended on a: %v, on b: %v; want a1, a2 and b1, b2", ga, gb)
		}
		for id, r := range ga {
			if r != EndReason || !strings.HasPrefix(id, "a") {
				return fmt.Errorf("a ended %s (%s)", id, r)
			}
		}
		for id, r := range gb {
			if r != EndReason || !strings.HasPrefix(id, "b") {
				return fmt.Errorf("b ended %s (%s)", id, r)
			}
		}
		return nil
	})
	// the ended calls are charged their one minute each: 8 of 10 credits
	testwait.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := len(usageEntries(t, svc, "ws")); n != 4 {
			return fmt.Errorf("%d usage entries, want 4", n)
		}
		return nil
	})
	if bal, _ := svc.Balance(context.Background(), "ws"); bal != 2 {
		t.Fatalf("balance after the cut calls: %d, want 2", bal)
	}
	if got := testutil.ToFloat64(met.Cut); got != 2 {
		t.Fatalf("node a's callgate_usage_calls_cut_total = %v, want 2", got)
	}
	if a.Running() != 1 {
		t.Fatalf("node a meters %d calls, want only the other workspace's", a.Running())
	}
}

// TestChargeLargerThanTheBalanceTakesWhatIsLeft: a call that ends owing
// more than the balance (cut late) never takes the balance below zero.
func TestChargeLargerThanTheBalanceTakesWhatIsLeft(t *testing.T) {
	svc, st := ledger(t, "ws", 7)
	m := newMeter(t, svc, st, nil, nil)
	t0 := time.Now().Add(-time.Hour)
	m.Answered("long", "ws", gbNumber, t0)
	m.Ended("long", t0.Add(3*time.Minute)) // 4 minutes × 5 = 20 > 7
	m.Close()
	e := usageEntries(t, svc, "ws")["long"]
	if e.Amount != -7 || e.Balance != 0 || !strings.Contains(e.Reason, "13 credits unpaid") {
		t.Fatalf("entry %+v: want -7, balance 0, 13 credits unpaid", e)
	}
}

func TestConfigValidation(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	err := Config{Prices: map[string]int64{"us": 2, "XX": 1, "GB": -1}}.Validate()
	for _, want := range []string{`"default" row is required`, "usage.prices.us", "(write US)", "usage.prices.XX", "usage.prices.GB"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want %q", err, want)
		}
	}
}

func TestGarbageReportsAreIgnored(t *testing.T) {
	svc, st := ledger(t, "ws", 100)
	m := newMeter(t, svc, st, nil, nil)
	for _, b := range []string{"{", `{"node":"x","ws":{"ws":[{"p":-5,"a":0}]}}`, `{"node":"y","ws":{"ws":[{"p":"a"}]}}`} {
		_ = st.NC.Publish(Subject, []byte(b))
	}
	_ = st.NC.Flush()
	if err := m.Authorize("ws", frNumber); err != nil {
		t.Fatalf("garbage reports counted: %v", err)
	}
}

// overlapLedger is the real credits service, counting how many charges
// of each workspace are being written at the same time. Each charge
// waits (up to hold) for another of its workspace to start, so that
// writers that could overlap do.
type overlapLedger struct {
	*provisioning.Service
	hold time.Duration

	mu      sync.Mutex
	cond    *sync.Cond
	active  map[string]int
	maxSeen map[string]int
}

func (l *overlapLedger) ChargeUsage(ctx context.Context, c provisioning.UsageCharge) (provisioning.LedgerEntry, error) {
	l.mu.Lock()
	l.active[c.Workspace]++
	if n := l.active[c.Workspace]; n > l.maxSeen[c.Workspace] {
		l.maxSeen[c.Workspace] = n
	}
	l.cond.Broadcast()
	deadline := time.Now().Add(l.hold)
	for l.active[c.Workspace] < 2 && time.Now().Before(deadline) {
		t := time.AfterFunc(time.Until(deadline), l.cond.Broadcast)
		l.cond.Wait()
		t.Stop()
	}
	l.mu.Unlock()
	e, err := l.Service.ChargeUsage(ctx, c)
	l.mu.Lock()
	l.active[c.Workspace]--
	l.mu.Unlock()
	return e, err
}

// TestChargesOfAWorkspaceAreWrittenOneAtATime: calls of one workspace
// ending together are charged one after the other (each charge is a
// compare-and-set on the balance: together they only conflict), and
// every one is charged once.
func TestChargesOfAWorkspaceAreWrittenOneAtATime(t *testing.T) {
	const credits = 100000
	svc, st := ledger(t, "ws", credits)
	if _, _, err := svc.CreateWorkspace(context.Background(), "other", "other", credits); err != nil {
		t.Fatal(err)
	}
	l := &overlapLedger{Service: svc, hold: 200 * time.Millisecond, active: map[string]int{}, maxSeen: map[string]int{}}
	l.cond = sync.NewCond(&l.mu)
	m, err := New(prices, l, st.NC, Options{Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	const n = 12
	for i := range n {
		for _, ws := range []string{"ws", "other"} {
			m.Answered(fmt.Sprintf("%s-%02d", ws, i), ws, usNumber, t0)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		for _, ws := range []string{"ws", "other"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.Ended(fmt.Sprintf("%s-%02d", ws, i), t0.Add(30*time.Second))
			}()
		}
	}
	wg.Wait()
	m.Close() // waits for the charges
	want := m.Price(usNumber) * n
	for _, ws := range []string{"ws", "other"} {
		if got := len(usageEntries(t, svc, ws)); got != n {
			t.Errorf("%s: %d usage entries, want %d", ws, got, n)
		}
		if bal, err := svc.Balance(context.Background(), ws); err != nil || bal != credits-want {
			t.Errorf("%s: balance %d (%v), want %d", ws, bal, err, credits-want)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for ws, max := range l.maxSeen {
		if max != 1 {
			t.Errorf("%s: %d charges written at once, want one at a time", ws, max)
		}
	}
	if len(l.maxSeen) != 2 {
		t.Errorf("charges seen for %v, want ws and other", l.maxSeen)
	}
}
