package node

import (
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store"
)

// Version is set at build time (-ldflags "-X github.com/callgate/callgate/node.Version=...").
var Version = "dev"

func registerBuildInfo(reg prometheus.Registerer, region string) {
	goVersion, revision := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "callgate", Name: "build_info",
		Help:        "Build information; always 1.",
		ConstLabels: prometheus.Labels{"version": Version, "revision": revision, "goversion": goVersion, "region": region},
	})
	g.Set(1)
	reg.MustRegister(g)
}

func registerStoreMetrics(reg prometheus.Registerer, st *store.Store, t *routing.Table) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "callgate", Subsystem: "nats", Name: "connected",
		Help: "1 when the NATS connection is up, else 0.",
	}, func() float64 {
		if st.Connected() {
			return 1
		}
		return 0
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "callgate", Subsystem: "routing", Name: "snapshot_age_seconds",
		Help: "Seconds since the routing snapshot last changed (-1 before the first).",
	}, func() float64 {
		s := t.Load()
		if s == nil {
			return -1
		}
		return time.Since(s.Built()).Seconds()
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "callgate", Subsystem: "routing", Name: "numbers",
		Help: "Numbers in the routing snapshot.",
	}, func() float64 { return float64(t.Load().Len()) }))
}

func registerSyncMetrics(reg prometheus.Registerer, y *provisioning.Syncer, t *routing.Table) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "callgate", Subsystem: "routing", Name: "watch_restarts_total",
		Help: "KV watchers restarted because they fell behind their bucket (NATS node lost).",
	}, func() float64 { return float64(y.Restarts.Load()) }))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "callgate", Subsystem: "routing", Name: "full_builds_total",
		Help: "Routing snapshots built in full (start, agent changes, compaction of the overlay); the others are derived from the last one.",
	}, func() float64 { return float64(y.FullBuilds.Load()) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "callgate", Subsystem: "routing", Name: "overlay_numbers",
		Help: "Numbers changed since the routing table was last built in full (held in the snapshot's overlay).",
	}, func() float64 { return float64(t.Load().Overlay()) }))
}

func registerLiveEventMetrics(reg prometheus.Registerer, p *calls.NATSPublisher) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "callgate", Subsystem: "calls", Name: "live_events_skipped_total",
		Help: "Call events not published on callgate.calls.<region>.<kind> because nobody subscribed to them on the embedded NATS server.",
	}, func() float64 { return float64(p.Skipped()) }))
}
