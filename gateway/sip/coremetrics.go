package sip

import "github.com/prometheus/client_golang/prometheus"

// coreMetrics are the collectors of session timers (sessiontimer.go) and
// the header policy (headers.go); every series is pre-created.
type coreMetrics struct {
	Sessions       *prometheus.CounterVec // event: negotiated, refreshed, expired
	HeadersDropped *prometheus.CounterVec // reason: not_allowed, too_long, over_total
}

var (
	sessionEvents     = []string{"negotiated", "refreshed", "expired"}
	headerDropReasons = []string{"not_allowed", "too_long", "over_total"}
	coreRejectReasons = []string{"session_interval_too_small"}
)

// newCoreMetrics builds the collectors, registers them on reg (nil: not
// registered) and pre-creates the reject reasons of this file's features
// in m.Rejected.
func newCoreMetrics(reg prometheus.Registerer, m *Metrics) *coreMetrics {
	ns, sub := "callgate", "sip"
	x := &coreMetrics{
		Sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "session_timers_total", Help: "RFC 4028 session timers of dialogs: negotiated (a 2xx set a session interval), refreshed (a 2xx to a re-INVITE or UPDATE restarted it), expired (no refresh came: callgate sent BYE both ways)."},
			[]string{"event"}),
		HeadersDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "headers_dropped_total", Help: "Custom SIP headers removed when forwarding between caller and agent: not_allowed (not in the workspace's sip_headers allow list), too_long (value over 1 KiB), over_total (custom headers of one message over 4 KiB)."},
			[]string{"reason"}),
	}
	for _, e := range sessionEvents {
		x.Sessions.WithLabelValues(e)
	}
	for _, r := range headerDropReasons {
		x.HeadersDropped.WithLabelValues(r)
	}
	for _, r := range coreRejectReasons {
		m.Rejected.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(x.Sessions, x.HeadersDropped)
	}
	return x
}

func (x *coreMetrics) session(event string) { x.Sessions.WithLabelValues(event).Inc() }
