package callhistory

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the call history's collectors:
//
//	callgate_history_events_total{outcome}: stored, dropped (queue full or
//	stopped), error (JetStream refused or did not acknowledge), skipped (no
//	workspace: a call refused before its number was known)
//	callgate_history_queue_length: events waiting to be published
type Metrics struct {
	Events *prometheus.CounterVec
	Queue  prometheus.Gauge
}

// Event outcomes (label values).
const (
	EventStored  = "stored"
	EventDropped = "dropped"
	EventError   = "error"
	EventSkipped = "skipped"
)

// NewMetrics builds the collectors, registered on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callgate", Subsystem: "history", Name: "events_total",
			Help: "Call events by outcome in the call history: stored, dropped (queue full), error (not acknowledged by JetStream), skipped (no workspace).",
		}, []string{"outcome"}),
		Queue: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "callgate", Subsystem: "history", Name: "queue_length",
			Help: "Call events waiting to be written to the call history.",
		}),
	}
	for _, o := range []string{EventStored, EventDropped, EventError, EventSkipped} {
		m.Events.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.Events, m.Queue)
	}
	return m
}
