package placer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the placer's collectors; every label value is pre-created.
type Metrics struct {
	// Placed counts POST /v1/calls outcomes by carrier and result.
	Placed *prometheus.CounterVec
	// Callbacks counts carrier reports on placed calls by carrier and
	// outcome (accepted, refused: unsigned or badly signed, invalid).
	Callbacks *prometheus.CounterVec
	// Hangups counts EndCall's hangups of Twilio and Telnyx calls by
	// carrier and result (ended, failed: the carrier refused or did not
	// answer; the call runs on).
	Hangups *prometheus.CounterVec
	// Active is the number of sandbox calls this node controls.
	Active prometheus.GaugeFunc
}

var (
	carrierLabels  = []string{"sandbox", "twilio", "telnyx", "other"}
	resultLabels   = []string{"placed", "invalid", "forbidden", "not_found", "insufficient_credits", "limited", "carrier_refused", "error"}
	callbackLabels = []string{"accepted", "refused", "invalid"}
)

// NewMetrics builds the collectors and registers them on reg (nil: not
// registered); active reports the sandbox calls in progress (nil: 0).
func NewMetrics(reg prometheus.Registerer, active func() float64) *Metrics {
	if active == nil {
		active = func() float64 { return 0 }
	}
	m := &Metrics{
		Placed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callgate", Subsystem: "placer", Name: "calls_total",
			Help: "POST /v1/calls outcomes by the caller ID's carrier and result.",
		}, []string{"carrier", "result"}),
		Callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callgate", Subsystem: "placer", Name: "callbacks_total",
			Help: "Carrier reports on placed calls (Twilio status callbacks, Telnyx Call Control webhooks) by outcome.",
		}, []string{"carrier", "outcome"}),
		Hangups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callgate", Subsystem: "placer", Name: "hangups_total",
			Help: "Placed Twilio and Telnyx calls ended by callgate (e.g. credits exhausted) by result: ended, or failed (the call runs on).",
		}, []string{"carrier", "result"}),
		Active: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "callgate", Subsystem: "placer", Name: "sandbox_active_calls",
			Help: "Sandbox calls this node controls as a third-party call controller.",
		}, active),
	}
	for _, c := range carrierLabels {
		for _, r := range resultLabels {
			m.Placed.WithLabelValues(c, r)
		}
	}
	for _, c := range []string{"twilio", "telnyx"} {
		for _, o := range callbackLabels {
			m.Callbacks.WithLabelValues(c, o)
		}
		for _, r := range []string{"ended", "failed"} {
			m.Hangups.WithLabelValues(c, r)
		}
	}
	if reg != nil {
		reg.MustRegister(m.Placed, m.Callbacks, m.Hangups, m.Active)
	}
	return m
}

func carrierLabel(c string) string {
	for _, l := range carrierLabels {
		if l == c {
			return c
		}
	}
	return "other"
}

// resultOf names a placement's outcome for the metric.
func resultOf(err error) string {
	if err == nil {
		return "placed"
	}
	if pe, ok := err.(*Error); ok {
		switch pe.Status {
		case 400:
			return "invalid"
		case 402:
			return "insufficient_credits"
		case 403:
			return "forbidden"
		case 404:
			return "not_found"
		case 422:
			return "carrier_refused"
		case 503:
			return "limited"
		}
		return "error"
	}
	return "error"
}
