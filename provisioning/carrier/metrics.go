package carrier

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts and times carrier API operations:
//
//	callgate_carrier_operations_total{carrier,op,result}
//	callgate_carrier_operation_duration_seconds{carrier,op}
//
// Label values are bounded: carrier is sandbox, twilio, telnyx or other; op
// is one of the Carrier methods (validate, search, buy, list, configure,
// set_region, release); result is ok or the error kind (credentials_rejected,
// not_available, not_found, invalid_query, region_unsupported, timeout,
// unavailable, canceled, error).
type Metrics struct {
	ops      *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

var (
	metricCarriers = []string{"sandbox", "twilio", "telnyx", "other"}
	metricOps      = []string{"validate", "search", "buy", "list", "configure", "set_region", "release"}
	metricResults  = []string{"ok", "credentials_rejected", "not_available", "not_found", "invalid_query",
		"region_unsupported", "timeout", "unavailable", "canceled", "error"}
)

// NewMetrics registers the carrier collectors with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callgate", Subsystem: "carrier", Name: "operations_total",
			Help: "Carrier API operations by carrier, operation and result.",
		}, []string{"carrier", "op", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "callgate", Subsystem: "carrier", Name: "operation_duration_seconds",
			Help:    "Duration of carrier API operations (a Buy includes waiting for a pending order).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"carrier", "op"}),
	}
	for _, c := range metricCarriers {
		for _, op := range metricOps {
			m.duration.WithLabelValues(c, op)
			for _, r := range metricResults {
				m.ops.WithLabelValues(c, op, r)
			}
		}
	}
	if reg != nil {
		reg.MustRegister(m.ops, m.duration)
	}
	return m
}

// ResultLabel names an operation's outcome for metrics and logs.
func ResultLabel(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrCredentialsRejected):
		return "credentials_rejected"
	case errors.Is(err, ErrNotAvailable):
		return "not_available"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrInvalidQuery):
		return "invalid_query"
	case errors.Is(err, ErrRegionUnsupported):
		return "region_unsupported"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled):
		return "canceled"
	default:
		return "error"
	}
}

func carrierLabel(name string) string {
	for _, c := range metricCarriers {
		if c == name {
			return c
		}
	}
	return "other"
}

// Instrument wraps c so that every call is counted and timed in m. A nil m
// returns c unchanged. The wrapper implements Carrier only: callers needing
// an adapter's extra methods (telnyx ReleaseOrder) keep the unwrapped value.
func Instrument(c Carrier, m *Metrics) Carrier {
	if m == nil || c == nil {
		return c
	}
	return &instrumented{c: c, m: m, name: carrierLabel(c.Name())}
}

type instrumented struct {
	c    Carrier
	m    *Metrics
	name string
}

// Unwrap returns the instrumented adapter.
func (i *instrumented) Unwrap() Carrier { return i.c }

func (i *instrumented) observe(op string, start time.Time, err error) {
	i.m.duration.WithLabelValues(i.name, op).Observe(time.Since(start).Seconds())
	i.m.ops.WithLabelValues(i.name, op, ResultLabel(err)).Inc()
}

func (i *instrumented) Name() string { return i.c.Name() }

func (i *instrumented) ValidateCredentials(ctx context.Context) error {
	start := time.Now()
	err := i.c.ValidateCredentials(ctx)
	i.observe("validate", start, err)
	return err
}

func (i *instrumented) Search(ctx context.Context, q SearchQuery) (SearchPage, error) {
	start := time.Now()
	p, err := i.c.Search(ctx, q)
	i.observe("search", start, err)
	return p, err
}

func (i *instrumented) Buy(ctx context.Context, e164 string, cfg NumberConfig) (OwnedNumber, error) {
	start := time.Now()
	n, err := i.c.Buy(ctx, e164, cfg)
	i.observe("buy", start, err)
	return n, err
}

func (i *instrumented) ListOwned(ctx context.Context) ([]OwnedNumber, error) {
	start := time.Now()
	n, err := i.c.ListOwned(ctx)
	i.observe("list", start, err)
	return n, err
}

func (i *instrumented) Configure(ctx context.Context, e164 string, cfg NumberConfig) (NumberConfig, error) {
	start := time.Now()
	prev, err := i.c.Configure(ctx, e164, cfg)
	i.observe("configure", start, err)
	return prev, err
}

func (i *instrumented) SetRegion(ctx context.Context, e164, region string) error {
	start := time.Now()
	err := i.c.SetRegion(ctx, e164, region)
	i.observe("set_region", start, err)
	return err
}

func (i *instrumented) Release(ctx context.Context, e164 string) error {
	start := time.Now()
	err := i.c.Release(ctx, e164)
	i.observe("release", start, err)
	return err
}
