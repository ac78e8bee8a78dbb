package webhook

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Request results: the values of the result label (bounded).
const (
	ResultOK             = "ok"
	ResultBadSignature   = "bad_signature"   // missing, wrong, or no key to check it
	ResultStaleTimestamp = "stale_timestamp" // Telnyx timestamp more than the tolerance off
	ResultUnknownNumber  = "unknown_number"
	ResultUnassigned     = "unassigned"
	ResultSuspended      = "suspended"
	ResultNoEndpoint     = "no_endpoint"
	ResultBadRequest     = "bad_request"
	ResultNotReady       = "not_ready" // no routing snapshot yet
	ResultIgnored        = "ignored"   // verified, nothing to do (e.g. an outgoing leg's event)
	ResultReplay         = "replay"    // Telnyx signature already accepted once
)

var results = []string{
	ResultOK, ResultBadSignature, ResultStaleTimestamp, ResultUnknownNumber, ResultUnassigned,
	ResultSuspended, ResultNoEndpoint, ResultBadRequest, ResultNotReady, ResultIgnored, ResultReplay,
	ResultLimited,
}

// Delivery and transfer results.
const (
	OutcomeOK      = "ok"
	OutcomeFailed  = "failed"  // every attempt failed
	OutcomeDropped = "dropped" // queue full or shutting down
	OutcomeRefused = "refused" // messaging URL resolves or redirects to an internal address
)

// endpoint identifies one webhook endpoint; it indexes the pre-resolved
// collectors so that the hot path does no label lookups.
type endpoint int

const (
	epTwilioVoice endpoint = iota
	epTwilioSMS
	epTwilioStatus
	epTelnyxTeXML
	epTelnyxCallControl
	epTelnyxMessaging
	numEndpoints
)

var endpointLabels = [numEndpoints][2]string{ // carrier, kind
	epTwilioVoice:       {"twilio", "voice"},
	epTwilioSMS:         {"twilio", "sms"},
	epTwilioStatus:      {"twilio", "status"},
	epTelnyxTeXML:       {"telnyx", "texml"},
	epTelnyxCallControl: {"telnyx", "call_control"},
	epTelnyxMessaging:   {"telnyx", "messaging"},
}

// Metrics are the webhook edge's collectors.
type Metrics struct {
	Duration   *prometheus.HistogramVec // callgate_webhook_request_duration_seconds{carrier,kind}
	Requests   *prometheus.CounterVec   // callgate_webhook_requests_total{carrier,kind,result}
	Published  *prometheus.CounterVec   // callgate_webhook_messages_published_total{result}
	Deliveries *prometheus.CounterVec   // callgate_webhook_message_deliveries_total{result}
	Transfers  *prometheus.CounterVec   // callgate_webhook_call_control_transfers_total{result}

	dur [numEndpoints]prometheus.Observer
	req [numEndpoints]map[string]prometheus.Counter
}

// NewMetrics builds the collectors and registers them with reg (nil: not
// registered). Registering twice on one registry reuses the collectors
// already there.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "callgate_webhook_request_duration_seconds",
			Help: "Time to handle a carrier webhook, from request to response written, by carrier and kind.",
			Buckets: []float64{
				0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
			},
		}, []string{"carrier", "kind"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_webhook_requests_total",
			Help: "Carrier webhooks handled, by carrier, kind and result.",
		}, []string{"carrier", "kind", "result"}),
		Published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_webhook_messages_published_total",
			Help: "Inbound messages published on NATS callgate.messages.<number>, by result.",
		}, []string{"result"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_webhook_message_deliveries_total",
			Help: "Inbound messages delivered to agents' messaging URLs, by result (ok, failed, dropped, refused).",
		}, []string{"result"}),
		Transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_webhook_call_control_transfers_total",
			Help: "Telnyx Call Control transfers to agents, by result (ok, failed, dropped).",
		}, []string{"result"}),
	}
	if reg != nil {
		m.Duration = register(reg, m.Duration)
		m.Requests = register(reg, m.Requests)
		m.Published = register(reg, m.Published)
		m.Deliveries = register(reg, m.Deliveries)
		m.Transfers = register(reg, m.Transfers)
	}
	for ep := endpoint(0); ep < numEndpoints; ep++ {
		l := endpointLabels[ep]
		m.dur[ep] = m.Duration.WithLabelValues(l[0], l[1])
		m.req[ep] = make(map[string]prometheus.Counter, len(results))
		for _, r := range results {
			m.req[ep][r] = m.Requests.WithLabelValues(l[0], l[1], r)
		}
	}
	for _, r := range []string{OutcomeOK, OutcomeFailed} {
		m.Published.WithLabelValues(r)
	}
	for _, r := range []string{OutcomeOK, OutcomeFailed, OutcomeDropped} {
		m.Deliveries.WithLabelValues(r)
		m.Transfers.WithLabelValues(r)
	}
	m.Deliveries.WithLabelValues(OutcomeRefused)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *Metrics) observe(ep endpoint, result string, seconds float64) {
	m.dur[ep].Observe(seconds)
	if c, ok := m.req[ep][result]; ok {
		c.Inc()
	}
}
