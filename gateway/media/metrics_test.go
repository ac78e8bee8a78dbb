package media

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The exported metric names pass the Prometheus linter (what `promtool
// check metrics` runs) after a relayed call has filled every family.
func TestMetricsLint(t *testing.T) {
	m, reg := runTestManager(t, nil)
	c := setupCall(t, m, nil)
	sendSeqs(t, c, 1, []uint16{1, 2, 3})
	c.s.Close()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if n := histCount(t, reg, "callgate_media_loss_ratio", map[string]string{"region": "us1", "leg": "caller"}); n != 1 {
		t.Fatalf("loss histogram count %d", n)
	}
	if v := counterValue(t, reg, "callgate_media_packets_total"); v != 3 {
		t.Fatalf("packets_total %v", v)
	}
}
