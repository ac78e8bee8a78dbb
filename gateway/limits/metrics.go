package limits

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the limit counter's collectors.
type Metrics struct {
	Refused *prometheus.CounterVec // rule
	Peers   prometheus.Gauge
}

// NewMetrics builds the collectors and registers them on reg (nil: not
// registered). Every rule's series exists from the start.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "callgate", Subsystem: "limit",
			Name: "refused_total", Help: "New calls refused by a workspace limit counted across the cluster, by rule."}, []string{"rule"}),
		Peers: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "callgate", Subsystem: "limit",
			Name: "peers", Help: "Other gateway nodes whose call counts this node adds to its own for workspace limits."}),
	}
	for _, r := range Rules {
		m.Refused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Refused, m.Peers)
	}
	return m
}

func (m *Metrics) refused(rule string) {
	if m != nil {
		m.Refused.WithLabelValues(rule).Inc()
	}
}

func (m *Metrics) peers(n int) {
	if m != nil {
		m.Peers.Set(float64(n))
	}
}
