package provisioning

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the provisioning collectors.
type Metrics struct {
	Operations     *prometheus.CounterVec // op, result
	CreditsCharged prometheus.Counter
}

// Provisioning operations and results (bounded label values).
var (
	opNames     = []string{"purchase", "import", "release", "renewal"}
	resultNames = []string{"ok", "conflict", "insufficient_credits", "invalid", "carrier_error", "unavailable", "suspended", "error"}
)

// NewMetrics registers the provisioning collectors on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callgate", Subsystem: "provisioning", Name: "operations_total",
			Help: "Provisioning operations by operation (purchase, import, release, renewal) and result.",
		}, []string{"operation", "result"}),
		CreditsCharged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "callgate", Subsystem: "provisioning", Name: "credits_charged_total",
			Help: "Credits charged for purchases and renewals, net of refunds.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Operations, m.CreditsCharged)
	}
	for _, op := range opNames {
		for _, r := range resultNames {
			m.Operations.WithLabelValues(op, r)
		}
	}
	return m
}

func (m *Metrics) op(op, result string) {
	if m == nil {
		return
	}
	known := false
	for _, r := range resultNames {
		if r == result {
			known = true
		}
	}
	if !known {
		result = "error"
	}
	m.Operations.WithLabelValues(op, result).Inc()
}

func (m *Metrics) charged(n int64) {
	if m == nil {
		return
	}
	if n > 0 {
		m.CreditsCharged.Add(float64(n))
	}
}
