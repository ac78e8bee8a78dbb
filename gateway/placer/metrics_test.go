package placer

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsCountOutcomes: every label value exists before use (a
// refusal and a limit are counted under the caller ID's carrier).
func TestMetricsCountOutcomes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, func() float64 { return 2 })
	if n := testutil.CollectAndCount(m.Placed); n != len(carrierLabels)*len(resultLabels) {
		t.Fatalf("%d series pre-created", n)
	}
	p := New(Config{}, Deps{Table: table("sandbox", "", "sip:bot@127.0.0.1:5999"), Limits: &limiter{max: 1, active: 1}, Metrics: m})
	_, _ = p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+33142685300", AgentID: "bot"}, "")
	_, _ = p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	_, _ = p.Place(context.Background(), ws, Request{From: "+12125550199", To: "+12125550155", AgentID: "bot"}, "")
	if v := testutil.ToFloat64(m.Placed.WithLabelValues("sandbox", "forbidden")); v != 1 {
		t.Fatalf("sandbox forbidden %v", v)
	}
	if v := testutil.ToFloat64(m.Placed.WithLabelValues("other", "forbidden")); v != 1 { // another workspace's number: no carrier named
		t.Fatalf("other forbidden %v", v)
	}
	if v := testutil.ToFloat64(m.Placed.WithLabelValues("sandbox", "limited")); v != 1 {
		t.Fatalf("limited %v", v)
	}
	if v := testutil.ToFloat64(m.Active); v != 2 {
		t.Fatalf("active %v", v)
	}
}
