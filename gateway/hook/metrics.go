package hook

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the routing hook client's collectors.
type Metrics struct {
	Latency   prometheus.Histogram   // request to answer (or failure)
	Outcomes  *prometheus.CounterVec // outcome: route, reject, timeout, error, invalid
	Saturated prometheus.Counter     // requests refused because the pool was full
}

// NewMetrics builds the collectors and registers them with reg (nil: not
// registered). Every outcome is pre-created.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "callgate_hook_request_duration_seconds",
			Help:    "Routing hook requests: time from sending the request to its answer or failure.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 1.5, 2.5, 5},
		}),
		Outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_hook_outcomes_total",
			Help: "Routing hook requests by outcome (route, reject, timeout, error, invalid).",
		}, []string{"outcome"}),
		Saturated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callgate_hook_saturated_total",
			Help: "Routing hook requests not made because too many were in flight (the call got 503).",
		}),
	}
	for _, o := range outcomes {
		m.Outcomes.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.Latency, m.Outcomes, m.Saturated)
	}
	return m
}
