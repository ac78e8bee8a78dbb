package usage

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the usage meter's collectors.
type Metrics struct {
	Charged      prometheus.Counter // credits charged for outbound minutes
	Refused      prometheus.Counter // outbound calls refused: balance short of the first minute
	Cut          prometheus.Counter // calls ended because the credits ran out
	ChargeErrors prometheus.Counter // calls whose charge could not be written
}

// NewMetrics builds the collectors and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	ns, sub := "callgate", "usage"
	m := &Metrics{
		Charged: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "charged_credits_total",
			Help: "Credits charged to workspaces for outbound call minutes."}),
		Refused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "refused_total",
			Help: "Outbound calls refused because the balance could not pay their first minute (or could not be read)."}),
		Cut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "calls_cut_total",
			Help: "Outbound calls ended because their workspace's credits ran out (end reason credits_exhausted)."}),
		ChargeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "charge_errors_total",
			Help: "Ended outbound calls whose charge could not be written to the ledger after retries."}),
	}
	if reg != nil {
		reg.MustRegister(m.Charged, m.Refused, m.Cut, m.ChargeErrors)
	}
	return m
}

func (m *Metrics) charged(n int64) {
	if m != nil && n > 0 {
		m.Charged.Add(float64(n))
	}
}

func (m *Metrics) refused() {
	if m != nil {
		m.Refused.Inc()
	}
}

func (m *Metrics) cut() {
	if m != nil {
		m.Cut.Inc()
	}
}

func (m *Metrics) chargeFailed() {
	if m != nil {
		m.ChargeErrors.Inc()
	}
}
