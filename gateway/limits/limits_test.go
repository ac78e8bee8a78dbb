package limits

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/store/storetest"
)

// clock is a test clock shared by the counters of one cluster.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// cluster starts n counters, each on its own connection to one NATS
// server (as n gateway nodes would be), sharing clk (nil: real time).
func cluster(t *testing.T, n int, clk *clock, m *Metrics) ([]*Counter, []*nats.Conn) {
	t.Helper()
	srv := storetest.RunServer(t)
	var cs []*Counter
	var ncs []*nats.Conn
	for i := 0; i < n; i++ {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		o := Options{NodeID: fmt.Sprintf("node%d", i), Interval: 50 * time.Millisecond, Expiry: time.Second, Metrics: m}
		if clk != nil {
			o.Now = clk.now
		}
		c, err := New(nc, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		cs = append(cs, c)
		ncs = append(ncs, nc)
	}
	return cs, ncs
}

// seen waits until every counter sees want calls in progress of ws.
func seen(t *testing.T, cs []*Counter, ws string, want int64) {
	t.Helper()
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for i, c := range cs {
			if got, _ := c.Totals(ws); got != want {
				return fmt.Errorf("node%d sees %d calls of %s, want %d", i, got, ws, want)
			}
		}
		return nil
	})
}

func TestConcurrentCapCountsCallsOnEveryNode(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	cs, _ := cluster(t, 3, nil, m)
	caps := calls.LimitCaps{MaxConcurrent: 3}
	// one call on each node: each node alone is far below the cap
	for i, c := range cs {
		if rule, _, ok := c.Admit("ws1", calls.Inbound, caps); !ok {
			t.Fatalf("node%d refused call %d: %s", i, i+1, rule)
		}
	}
	seen(t, cs, "ws1", 3)
	for i, c := range cs {
		rule, retry, ok := c.Admit("ws1", calls.Inbound, caps)
		if ok || rule != RuleConcurrent || retry <= 0 {
			t.Fatalf("node%d: 4th call: ok=%v rule=%q retry=%s; want refused by %s with a retry delay", i, ok, rule, retry, RuleConcurrent)
		}
	}
	if got := testutil.ToFloat64(m.Refused.WithLabelValues(RuleConcurrent)); got != 3 {
		t.Fatalf("callgate_limit_refused_total{rule=%q} = %v, want 3", RuleConcurrent, got)
	}
	// another workspace is not affected
	if _, _, ok := cs[0].Admit("ws2", calls.Inbound, caps); !ok {
		t.Fatal("ws2 refused by ws1's calls")
	}
	// a call ending on node 1 frees a place on node 2
	cs[1].Release("ws1", calls.Inbound)
	seen(t, cs, "ws1", 2)
	if rule, _, ok := cs[2].Admit("ws1", calls.Inbound, caps); !ok {
		t.Fatalf("node2 refused after a release on node1: %s", rule)
	}
}

func TestRateCapCountsNewCallsOnEveryNode(t *testing.T) {
	clk := newClock()
	cs, _ := cluster(t, 3, clk, nil)
	caps := calls.LimitCaps{MaxPerSecond: 4}
	admitted := 0
	for i := 0; i < 4; i++ {
		c := cs[i%3]
		if _, _, ok := c.Admit("ws1", calls.Inbound, caps); !ok {
			t.Fatalf("call %d refused below the rate", i)
		}
		admitted++
		c.Release("ws1", calls.Inbound) // short calls: only the rate counts
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for i, c := range cs {
			if _, r := c.Totals("ws1"); r != 4 {
				return fmt.Errorf("node%d sees %d new calls in the last second, want 4", i, r)
			}
		}
		return nil
	})
	for i, c := range cs {
		rule, retry, ok := c.Admit("ws1", calls.Inbound, caps)
		if ok || rule != RuleRate || retry != time.Second {
			t.Fatalf("node%d: 5th call in the second: ok=%v rule=%q retry=%s", i, ok, rule, retry)
		}
	}
	// a second later the window is empty on every node
	clk.advance(1100 * time.Millisecond)
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		for i, c := range cs {
			if _, r := c.Totals("ws1"); r != 0 {
				return fmt.Errorf("node%d still sees %d new calls", i, r)
			}
		}
		return nil
	})
	if rule, _, ok := cs[1].Admit("ws1", calls.Inbound, caps); !ok {
		t.Fatalf("refused in the next second: %s", rule)
	}
}

func TestOutboundCapsApplyToOutboundCallsOnly(t *testing.T) {
	cs, _ := cluster(t, 2, newClock(), nil)
	caps := calls.LimitCaps{MaxConcurrent: 10, MaxOutConcurrent: 1}
	if _, _, ok := cs[0].Admit("ws", calls.Outbound, caps); !ok {
		t.Fatal("first outbound call refused")
	}
	seen(t, cs, "ws", 1)
	if rule, _, ok := cs[1].Admit("ws", calls.Outbound, caps); ok || rule != RuleOutConcurrent {
		t.Fatalf("second outbound call on the other node: ok=%v rule=%q, want %s", ok, rule, RuleOutConcurrent)
	}
	if rule, _, ok := cs[1].Admit("ws", calls.Inbound, caps); !ok {
		t.Fatalf("inbound call refused by the outbound cap: %s", rule)
	}
	caps = calls.LimitCaps{MaxOutPerSecond: 2}
	if _, _, ok := cs[0].Admit("ws9", calls.Outbound, caps); !ok {
		t.Fatal("outbound call refused")
	}
	if _, _, ok := cs[0].Admit("ws9", calls.Outbound, caps); !ok {
		t.Fatal("outbound call refused")
	}
	if rule, _, ok := cs[0].Admit("ws9", calls.Outbound, caps); ok || rule != RuleOutRate {
		t.Fatalf("3rd outbound call in a second: ok=%v rule=%q", ok, rule)
	}
	if _, _, ok := cs[0].Admit("ws9", calls.Inbound, caps); !ok {
		t.Fatal("inbound call refused by the outbound rate")
	}
}

func TestPeersThatStopReportingStopCounting(t *testing.T) {
	cs, ncs := cluster(t, 3, nil, nil)
	caps := calls.LimitCaps{MaxConcurrent: 2}
	cs[1].Admit("ws", calls.Inbound, caps)
	cs[2].Admit("ws", calls.Inbound, caps)
	seen(t, cs, "ws", 2)
	if _, _, ok := cs[0].Admit("ws", calls.Inbound, caps); ok {
		t.Fatal("admitted over the cap")
	}
	// node 1 shuts down cleanly: its calls stop counting at once
	cs[1].Close()
	seen(t, []*Counter{cs[0], cs[2]}, "ws", 1)
	// node 2 dies (its connection drops, no goodbye): expired after 1 s
	ncs[2].Close()
	seen(t, cs[:1], "ws", 0)
	if n := cs[0].Peers(); n != 0 {
		t.Fatalf("node0 still counts %d peers", n)
	}
	if rule, _, ok := cs[0].Admit("ws", calls.Inbound, caps); !ok {
		t.Fatalf("refused with no peer left: %s", rule)
	}
}

func TestConcurrentAdmitsOnOneNodeNeverPassTheCap(t *testing.T) {
	cs, _ := cluster(t, 1, nil, nil)
	caps := calls.LimitCaps{MaxConcurrent: 25}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, y := cs[0].Admit("ws", calls.Inbound, caps); y {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 25 {
		t.Fatalf("%d calls admitted, want exactly 25", ok.Load())
	}
}

func TestGarbageReportsAreIgnored(t *testing.T) {
	cs, ncs := cluster(t, 1, nil, nil)
	for _, b := range []string{"", "{", `{"node":""}`, `[1,2]`, `{"node":"x","ws":{"ws":{"c":"a"}}}`} {
		if err := ncs[0].Publish(Subject, []byte(b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ncs[0].Flush(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := cs[0].Admit("ws", calls.Inbound, calls.LimitCaps{MaxConcurrent: 1}); !ok {
		t.Fatal("garbage on the subject counted as calls")
	}
}

// BenchmarkAdmitRelease is the cost a new call pays for the cluster-wide
// limits (3 peers reporting).
func BenchmarkAdmitRelease(b *testing.B) {
	srv := storetest.RunServer(b)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	c, err := New(nc, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	c.mu.Lock()
	for i := 0; i < 3; i++ {
		c.peers[fmt.Sprint("p", i)] = &peer{seen: time.Now(), ws: map[string]counts{"ws": {Conc: 5, Recent: 3}}}
	}
	c.resum()
	c.mu.Unlock()
	caps := calls.LimitCaps{MaxConcurrent: 1000, MaxPerSecond: 1 << 30}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, ok := c.Admit("ws", calls.Inbound, caps); !ok {
			b.Fatal("refused")
		}
		c.Release("ws", calls.Inbound)
	}
}
