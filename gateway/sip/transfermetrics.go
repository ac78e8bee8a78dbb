package sip

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/gateway/calls"
)

// transferMetrics counts transfers by how they were asked (via: sip_refer,
// api) and their outcome; every series is pre-created at zero.
type transferMetrics struct {
	Transfers *prometheus.CounterVec
}

var (
	transferVias     = []string{"sip_refer", "api"}
	transferOutcomes = []string{calls.TransferCompleted, calls.TransferBusy, calls.TransferNoAnswer,
		calls.TransferFailed, calls.TransferRefused}
)

func newTransferMetrics(reg prometheus.Registerer) *transferMetrics {
	m := &transferMetrics{Transfers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "callgate", Subsystem: "sip",
		Name: "transfers_total", Help: "Call transfers (REFER from agents, API transfers) by how they were asked and their outcome."},
		[]string{"via", "outcome"})}
	for _, v := range transferVias {
		for _, o := range transferOutcomes {
			m.Transfers.WithLabelValues(v, o)
		}
	}
	if reg != nil {
		reg.MustRegister(m.Transfers)
	}
	return m
}

// count counts one transfer outcome (nil-safe; labels capped).
func (m *transferMetrics) count(via, outcome string) {
	if m == nil {
		return
	}
	if via != "api" {
		via = "sip_refer"
	}
	for _, o := range transferOutcomes {
		if o == outcome {
			m.Transfers.WithLabelValues(via, outcome).Inc()
			return
		}
	}
}
