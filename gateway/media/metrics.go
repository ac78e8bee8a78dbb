package media

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the media relay's collectors. Labels: region (from the
// config, capped: unknown values become "other"), leg ("caller",
// "agent"), reason, result. Never a call id, number or address.
type Metrics struct {
	Jitter         *prometheus.HistogramVec // callgate_media_jitter_seconds{region,leg}
	Loss           *prometheus.HistogramVec // callgate_media_loss_ratio{region,leg}
	RTT            *prometheus.HistogramVec // callgate_media_rtt_seconds{region,leg}
	ActiveSessions prometheus.Gauge         // callgate_media_active_sessions
	PortsInUse     prometheus.Gauge         // callgate_media_ports_in_use
	Ports          prometheus.Gauge         // callgate_media_ports (size of the range, in ports)
	Sessions       *prometheus.CounterVec   // callgate_media_sessions_total{result}
	Timeouts       prometheus.Counter       // callgate_media_timeouts_total
	Latches        prometheus.Counter       // callgate_media_latches_total
	Packets        *prometheus.CounterVec   // callgate_media_packets_total{leg}
	Bytes          *prometheus.CounterVec   // callgate_media_bytes_total{leg}
	Dropped        *prometheus.CounterVec   // callgate_media_dropped_packets_total{reason}
}

// NewMetrics builds the collectors and registers them with reg (nil:
// not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Jitter: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callgate_media_jitter_seconds",
			Help:    "Mean RFC 3550 interarrival jitter of a relayed call's leg, observed once per leg when the call ends.",
			Buckets: []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2},
		}, []string{"region", "leg"}),
		Loss: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callgate_media_loss_ratio",
			Help:    "RTP packet loss ratio (RFC 3550 A.1) of a relayed call's leg, observed once per leg when the call ends.",
			Buckets: []float64{0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5},
		}, []string{"region", "leg"}),
		RTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "callgate_media_rtt_seconds",
			Help:    "Round-trip time between callgate and a leg's endpoint from RTCP SR/RR (LSR/DLSR), one observation per report.",
			Buckets: []float64{0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1},
		}, []string{"region", "leg"}),
		ActiveSessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callgate_media_active_sessions", Help: "Relayed calls in progress.",
		}),
		PortsInUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callgate_media_ports_in_use", Help: "UDP ports of the media range held by calls (RTP and RTCP).",
		}),
		Ports: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "callgate_media_ports", Help: "UDP ports in the media range usable as RTP/RTCP pairs.",
		}),
		Sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_media_sessions_total", Help: "Media sessions requested, by result (ok, no_ports, error).",
		}, []string{"result"}),
		Timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callgate_media_timeouts_total", Help: "Calls ended because no media arrived for media_timeout.",
		}),
		Latches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "callgate_media_latches_total", Help: "Legs switched to a source address other than the one in the SDP (symmetric RTP).",
		}),
		Packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_media_packets_total", Help: "Packets accepted from endpoints, by leg they arrived on.",
		}, []string{"leg"}),
		Bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_media_bytes_total", Help: "UDP payload bytes accepted from endpoints, by leg they arrived on.",
		}, []string{"leg"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_media_dropped_packets_total", Help: "Packets not forwarded, by reason (foreign_source, no_destination, send_error).",
		}, []string{"reason"}),
	}
	for _, r := range []string{"ok", "no_ports", "error"} {
		m.Sessions.WithLabelValues(r)
	}
	for _, r := range []string{"foreign_source", "no_destination", "send_error"} {
		m.Dropped.WithLabelValues(r)
	}
	for _, l := range []string{legCaller, legAgent} {
		m.Packets.WithLabelValues(l)
		m.Bytes.WithLabelValues(l)
	}
	if reg != nil {
		reg.MustRegister(m.Jitter, m.Loss, m.RTT, m.ActiveSessions, m.PortsInUse, m.Ports,
			m.Sessions, m.Timeouts, m.Latches, m.Packets, m.Bytes, m.Dropped)
	}
	return m
}

// precreateRegion exports a configured region's quality histograms at
// zero from the start: a series born with its first observation loses it
// to rate(), and a dashboard shows nothing rather than 0.
func (m *Metrics) precreateRegion(region string) {
	for _, l := range []string{legCaller, legAgent} {
		m.Jitter.WithLabelValues(region, l)
		m.Loss.WithLabelValues(region, l)
		m.RTT.WithLabelValues(region, l)
	}
}
