package sip

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// histSamples is the number of observations in all of a histogram
// vector's series (pre-created series count none).
func histSamples(t *testing.T, h *prometheus.HistogramVec) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1024)
	h.Collect(ch)
	close(ch)
	var n uint64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		n += d.GetHistogram().GetSampleCount()
	}
	return n
}

// TestSeriesPrecreated: the series of known label values are on /metrics
// at zero before any traffic (a series born with its first increment
// loses that increment to rate()): fixed reasons, classes and methods at
// start, this node's region at start, an endpoint region as soon as the
// table brings it; a region that leaves the table loses those still at
// zero (what counted something stays).
func TestSeriesPrecreated(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), func(c *Config) {
		c.Probe = ProbeConfig{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, DownAfter: 2, UpAfter: 2, Alpha: 0.5}
	}, nil)
	m := metricsText(t, e)
	for _, want := range []string{
		`callgate_sip_rejected_total{reason="unknown_number"} 0`,
		`callgate_sip_rejected_total{reason="relay_denied"} 0`,
		`callgate_sip_dropped_total{reason="malformed"} 0`,
		`callgate_sip_calls_total{class="2xx"} 0`,
		`callgate_sip_calls_total{class="5xx"} 0`,
		`callgate_sip_requests_total{method="INVITE"} 0`,
		`callgate_sip_responses_total{code="404",method="INVITE"} 0`,
		`callgate_sip_failovers_total{region="test"} 0`,
		`callgate_sip_setup_answer_seconds_count{carrier="twilio",origin="purchased",region="test"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("before any traffic, /metrics lacks %s", want)
		}
	}
	checkFor(t, 10*time.Second, func() error {
		m := metricsText(t, e)
		for _, want := range []string{
			`callgate_sip_failovers_total{region="eu"} 0`,
			`callgate_sip_setup_provisional_seconds_count{carrier="sandbox",origin="imported",region="eu"} 0`,
		} {
			if !strings.Contains(m, want) {
				return errorf("no %s yet", want)
			}
		}
		return nil
	})
	other := newUA(t, "127.0.0.1")
	e.table.Store(buildTable(other.endpoint("us")).Load()) // eu leaves
	checkFor(t, 10*time.Second, func() error {
		m := metricsText(t, e)
		for _, gone := range []string{`callgate_sip_failovers_total{region="eu"}`, `callgate_sip_setup_answer_seconds_count{carrier="twilio",origin="purchased",region="eu"}`} {
			if strings.Contains(m, gone) {
				return errorf("region eu left the table but %s remains", gone)
			}
		}
		if !strings.Contains(m, `callgate_sip_failovers_total{region="us"} 0`) || !strings.Contains(m, `callgate_sip_failovers_total{region="test"} 0`) {
			return errorf("region us not pre-created, or this node's region forgotten")
		}
		return nil
	})
}
