package sip

import "github.com/prometheus/client_golang/prometheus"

// inCallMetrics count what happens during calls (issue 18: DTMF, early
// media). Label values come from fixed sets, pre-created.
type inCallMetrics struct {
	dtmf     *prometheus.CounterVec // callgate_sip_dtmf_events_total{from,via}
	infoSent prometheus.Counter     // callgate_sip_dtmf_info_sent_total
	early    *prometheus.CounterVec // callgate_sip_early_media_total{mode}
}

func newInCallMetrics(reg prometheus.Registerer) *inCallMetrics {
	m := &inCallMetrics{
		dtmf: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callgate_sip_dtmf_events_total",
			Help: "DTMF digits seen or sent during calls, by who sent them (caller, agent) and how (rfc4733, info)."}, []string{"from", "via"}),
		infoSent: prometheus.NewCounter(prometheus.CounterOpts{Name: "callgate_sip_dtmf_info_sent_total",
			Help: "SIP INFO requests with a DTMF digit that callgate sent itself (API digits toward a side without telephone-event)."}),
		early: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "callgate_sip_early_media_total",
			Help: "Calls answered early by callgate for the agent's early_media setting, by mode (ringback, ringback_tone)."}, []string{"mode"}),
	}
	for _, f := range []string{"caller", "agent"} {
		for _, v := range []string{"rfc4733", "info"} {
			m.dtmf.WithLabelValues(f, v)
		}
	}
	for _, mode := range []string{"ringback", "ringback_tone"} {
		m.early.WithLabelValues(mode)
	}
	if reg != nil {
		reg.MustRegister(m.dtmf, m.infoSent, m.early)
	}
	return m
}

func (m *Metrics) dtmfEvents(from, via string) {
	if from != "caller" {
		from = "agent"
	}
	if via != "info" {
		via = "rfc4733"
	}
	m.incall.dtmf.WithLabelValues(from, via).Inc()
}

func (m *Metrics) dtmfInfoSent() { m.incall.infoSent.Inc() }
