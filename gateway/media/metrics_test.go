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

// TestRegionSeriesPrecreated: the per-region quality histograms of the
// configured regions are exported at zero before any call, so that the
// first calls' observations are not lost to rate() and dashboards show 0.
func TestRegionSeriesPrecreated(t *testing.T) {
	_, reg := runTestManager(t, func(c *Config) { c.Regions = []string{"eu1"} })
	for _, name := range []string{"callgate_media_jitter_seconds", "callgate_media_loss_ratio", "callgate_media_rtt_seconds"} {
		for _, region := range []string{"us1", "eu1"} {
			for _, leg := range []string{legCaller, legAgent} {
				found := false
				for _, m := range gather(t, reg, name) {
					l := map[string]string{}
					for _, lp := range m.GetLabel() {
						l[lp.GetName()] = lp.GetValue()
					}
					if l["region"] == region && l["leg"] == leg && m.GetHistogram().GetSampleCount() == 0 {
						found = true
					}
				}
				if !found {
					t.Errorf("no %s{region=%q,leg=%q} at zero before any call", name, region, leg)
				}
			}
		}
	}
}
