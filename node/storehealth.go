package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/store"
)

// registerStoreHealthMetrics exports the store's write probe.
func registerStoreHealthMetrics(reg prometheus.Registerer, st *store.Store) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "callgate", Subsystem: "nats", Name: "writable",
		Help: "1 when the last write probe to the state store went through (readyz needs it), else 0.",
	}, func() float64 {
		if st.Writable() != nil {
			return 0
		}
		return 1
	}))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "callgate", Subsystem: "nats", Name: "write_probe_failures_total",
		Help: "State store write probes that failed (every 2s).",
	}, func() float64 { return float64(st.ProbeFailures()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "callgate", Subsystem: "nats", Name: "jetstream_restarts_total",
		Help: "Restarts of the embedded JetStream to clear a sticky stream write error.",
	}, func() float64 { return float64(st.Recoveries()) }))
}
