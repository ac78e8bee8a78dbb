package sip

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Metrics are the SIP edge's collectors. Every label value is bounded:
// regions are capped (first maxRegions seen, then "other"), carriers,
// origins, methods and codes come from fixed sets ("other" otherwise).
type Metrics struct {
	SetupProvisional *prometheus.HistogramVec // region, carrier, origin
	SetupAnswer      *prometheus.HistogramVec // region, carrier, origin
	ProbeRTT         *prometheus.HistogramVec // region
	RegionRTT        *prometheus.GaugeVec     // region: lowest RTT estimate of an up endpoint
	RegionEndpoints  *prometheus.GaugeVec     // region, state (up, down, unknown)
	EndpointRTT      *prometheus.GaugeVec     // region, endpoint (index in the region, < maxEndpointLabels)
	EndpointUp       *prometheus.GaugeVec     // region, endpoint
	ActiveCalls      prometheus.Gauge
	Calls            *prometheus.CounterVec // class (2xx..6xx)
	Requests         *prometheus.CounterVec // method
	Responses        *prometheus.CounterVec // method, code: responses sent upstream
	Rejected         *prometheus.CounterVec // reason
	Failovers        *prometheus.CounterVec // region of the endpoint given up
	Dropped          *prometheus.CounterVec // reason: messages dropped without a reply
	ConnsRefused     *prometheus.CounterVec // reason (per_source, total): TCP/TLS connections closed at accept
	Conns            *prometheus.GaugeVec   // transport (tcp, tls): inbound connections open
	SendErrors       *prometheus.CounterVec // transport, stage: messages that could not be sent
	DialogSendFails  *prometheus.CounterVec // method: in-dialog requests of a recorded dialog not delivered
	// Outbound calls from agents (agent listener): in progress, ended by
	// final status class, and failed digest authentications.
	OutboundActive           prometheus.Gauge
	OutboundCalls            *prometheus.CounterVec   // class
	OutboundSetupProvisional *prometheus.HistogramVec // carrier
	OutboundSetupAnswer      *prometheus.HistogramVec // carrier
	AgentAuthFailures        prometheus.Counter

	regions regionLabels
	// pre: lock order Prober.gmu → pre.mu → regions.mu.
	pre struct {
		mu   sync.Mutex
		home string          // this node's region label
		set  map[string]bool // endpoint region labels with pre-created series
	}

	incall *inCallMetrics // DTMF and ringback (dtmfmetrics.go)

	// children of the vectors that every call counts, looked up once
	// (WithLabelValues hashes the labels and locks the vector each time)
	byMethod     [len(methodNamesArr)]prometheus.Counter // Requests, by methodIndex
	inviteByCode map[int]prometheus.Counter              // Responses{INVITE, code} of codeLabels
	byeByCode    map[int]*lazyCounter                    // Responses{BYE, code} of codeLabels, made at first use
	byClass      [len(callClassesArr)]prometheus.Counter // Calls, by classIndex
}

// setupBuckets span telephony setup times: 5 ms to 30 s.
var setupBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30}

// NewMetrics builds and registers the collectors on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	ns, sub := "callgate", "sip"
	rco := []string{"region", "carrier", "origin"}
	m := &Metrics{
		SetupProvisional: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "setup_provisional_seconds", Help: "Time from INVITE received to the first provisional response (180/183) forwarded to the caller.",
			Buckets: setupBuckets}, rco),
		SetupAnswer: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "setup_answer_seconds", Help: "Time from INVITE received to the 2xx answer forwarded to the caller.",
			Buckets: setupBuckets}, rco),
		ProbeRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "probe_rtt_seconds", Help: "Round-trip time of SIP OPTIONS probes to agent endpoints.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"region"}),
		RegionRTT: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "region_rtt_estimate_seconds", Help: "Lowest EWMA round-trip estimate among the region's up endpoints."}, []string{"region"}),
		RegionEndpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "region_endpoints", Help: "Agent endpoints per region by probe state (up, down, unknown)."}, []string{"region", "state"}),
		EndpointRTT: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "endpoint_rtt_estimate_seconds", Help: "EWMA round-trip estimate per agent endpoint; endpoint is its index in the region (by URI, as in GET /v1/regions), first 16 only."}, []string{"region", "endpoint"}),
		EndpointUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "endpoint_up", Help: "1 when the agent endpoint answers probes (or is not probed yet), 0 when down; endpoint as in endpoint_rtt_estimate_seconds."}, []string{"region", "endpoint"}),
		ActiveCalls: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "active_calls", Help: "Calls in progress (routed INVITEs not yet ended)."}),
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "calls_total", Help: "Routed calls by final status class."}, []string{"class"}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_total", Help: "SIP requests received from allowed sources, by method."}, []string{"method"}),
		Responses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "responses_total", Help: "SIP responses sent or forwarded to the requester, by request method and status code."}, []string{"method", "code"}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "rejected_total", Help: "Requests refused by the edge, by reason."}, []string{"reason"}),
		Failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "failovers_total", Help: "Endpoints given up (timeout or 5xx) for the next candidate, by the region given up."}, []string{"region"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "dropped_total", Help: "Messages dropped without a reply, by reason."}, []string{"reason"}),
		ConnsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "connections_refused_total", Help: "Inbound TCP/TLS connections closed at accept because a cap was reached (per_source: max_connections_per_source, total: max_connections)."}, []string{"reason"}),
		Conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "connections", Help: "Inbound TCP/TLS connections open, by transport."}, []string{"transport"}),
		SendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "send_errors_total", Help: "SIP messages that could not be sent, by transport and stage (resolve, dial, handshake, write, busy)."}, []string{"transport", "stage"}),
		DialogSendFails: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "dialog_send_failures_total", Help: "In-dialog requests of a recorded dialog (BYE, ACK, re-INVITE, ...) that could not be delivered to the other party, by method."}, []string{"method"}),
	}
	m.OutboundActive = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
		Name: "outbound_active_calls", Help: "Outbound calls from agents in progress (also counted in active_calls)."})
	m.OutboundCalls = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "outbound_calls_total", Help: "Outbound calls from agents that left for a carrier, by final status class (also counted in calls_total)."}, []string{"class"})
	// outbound setup times are the PSTN's (a person answering): kept apart
	// from the inbound histograms that alerts watch
	m.OutboundSetupProvisional = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
		Name: "outbound_setup_provisional_seconds", Help: "Outbound calls from agents: time from the agent's authenticated INVITE to the first provisional response forwarded to it.",
		Buckets: setupBuckets}, []string{"carrier"})
	m.OutboundSetupAnswer = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
		Name: "outbound_setup_answer_seconds", Help: "Outbound calls from agents: time from the agent's authenticated INVITE to the callee's 2xx forwarded to it.",
		Buckets: setupBuckets}, []string{"carrier"})
	for _, c := range setupCarrier {
		m.OutboundSetupProvisional.WithLabelValues(c)
		m.OutboundSetupAnswer.WithLabelValues(c)
	}
	m.AgentAuthFailures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
		Name: "agent_auth_failures_total", Help: "Failed digest authentications on the agent listener (wrong username, password, nonce)."})
	for _, c := range callClasses {
		m.OutboundCalls.WithLabelValues(c)
	}
	for _, r := range outboundRejectReasons {
		m.Rejected.WithLabelValues(r)
	}
	m.regions.max = maxRegions
	// refusals that alerts watch exist from the start (at 0)
	for _, r := range []string{"relay_denied", "loop_detected"} {
		m.Rejected.WithLabelValues(r)
	}
	for _, r := range []string{"relay_denied", "loop"} {
		m.Dropped.WithLabelValues(r)
	}
	for _, r := range []string{"per_source", "total"} {
		m.ConnsRefused.WithLabelValues(r)
	}
	for _, tr := range []string{"udp", "tcp", "tls"} {
		if tr != "udp" {
			m.Conns.WithLabelValues(tr)
		}
		for _, st := range sendStages {
			m.SendErrors.WithLabelValues(tr, st)
		}
	}
	for _, meth := range []string{"BYE", "ACK", "INVITE", "other"} {
		m.DialogSendFails.WithLabelValues(meth)
	}

	m.precreate()
	m.incall = newInCallMetrics(reg) // dtmf.go, ringback.go
	if reg != nil {
		for _, c := range []prometheus.Collector{m.SetupProvisional, m.SetupAnswer, m.ProbeRTT, m.RegionRTT,
			m.RegionEndpoints, m.EndpointRTT, m.EndpointUp, m.ActiveCalls, m.Calls, m.Requests, m.Responses, m.Rejected, m.Failovers, m.Dropped,
			m.ConnsRefused, m.Conns, m.SendErrors, m.DialogSendFails, m.OutboundActive, m.OutboundCalls, m.AgentAuthFailures,
			m.OutboundSetupProvisional, m.OutboundSetupAnswer} {
			reg.MustRegister(c)
		}
	}
	return m
}

const maxRegions = 64

// sendStages are where a send can fail (the stage label of send_errors_total).
var sendStages = []string{"resolve", "dial", "handshake", "write", "busy"}

// Label values of the fixed sets, pre-created at zero so that a series
// exists before its first increment (rate() and increase() miss the
// first increment of a series that appears with it).
var (
	rejectReasons = []string{"auth", "draining", "too_many_hops", "unknown_source", "no_snapshot", "unknown_number",
		"unassigned", "no_endpoint", "no_media_ports", "bad_sdp", "no_dialog", "relay_denied", "loop_detected", "malformed",
		"hook_saturated",
		"srtp_policy",
		"bad_uri_scheme", "bad_extension", "pike", "limit_concurrent", "limit_rate"}
	dropReasons = []string{"busy", "too_large", "malformed", "not_ours", "stray_ack", "stray_response",
		"relay_denied", "loop", "message_timeout", "tls_handshake", "scanner", "pike"}
	methodNames  = methodNamesArr[:]
	callClasses  = callClassesArr[:]
	setupCarrier = []string{"twilio", "telnyx", "sandbox", "local"}
	setupOrigin  = []string{"purchased", "imported", "forwarded"}
)

var (
	methodNamesArr = [...]string{"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO", "PRACK", "REFER", "NOTIFY", "SUBSCRIBE", "MESSAGE", "REGISTER", "PUBLISH", "other"}
	callClassesArr = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "other"}
	methodIndexes  = func() map[string]int {
		m := map[string]int{}
		for i, n := range methodNamesArr {
			m[n] = i
		}
		return m
	}()
)

// request is Requests.WithLabelValues(methodLabel(method)), looked up once.
func (m *Metrics) request(method string) prometheus.Counter {
	i, ok := methodIndexes[method]
	if !ok {
		i = len(methodNamesArr) - 1 // other
	}
	return m.byMethod[i]
}

// response is Responses.WithLabelValues(methodLabel(method), codeLabel(code)),
// looked up once for INVITE responses with a code of their own.
func (m *Metrics) response(method string, code int) prometheus.Counter {
	switch method {
	case "INVITE":
		if c, ok := m.inviteByCode[code]; ok {
			return c
		}
	case "BYE":
		if c, ok := m.byeByCode[code]; ok {
			return c.get(m.Responses)
		}
	}
	return m.Responses.WithLabelValues(methodLabel(method), codeLabel(code))
}

// lazyCounter is a child of a counter vector looked up at its first use
// (a series is not made before something counts in it).
type lazyCounter struct {
	once   sync.Once
	c      prometheus.Counter
	labels [2]string
}

func (l *lazyCounter) get(v *prometheus.CounterVec) prometheus.Counter {
	l.once.Do(func() { l.c = v.WithLabelValues(l.labels[:]...) })
	return l.c
}

// call is Calls.WithLabelValues(classLabel(code)), looked up once.
func (m *Metrics) call(code int) prometheus.Counter {
	if code >= 100 && code < 700 {
		return m.byClass[code/100-1]
	}
	return m.byClass[len(callClassesArr)-1]
}

// precreate makes the series of the label sets that do not depend on
// the routing table. Responses{method,code} is pre-created for INVITE
// only (all methods × codes would be some 700 series).
func (m *Metrics) precreate() {
	for _, r := range rejectReasons {
		m.Rejected.WithLabelValues(r)
	}
	for _, r := range dropReasons {
		m.Dropped.WithLabelValues(r)
	}
	for i, meth := range methodNames {
		m.byMethod[i] = m.Requests.WithLabelValues(meth)
	}
	for i, c := range callClasses {
		m.byClass[i] = m.Calls.WithLabelValues(c)
	}
	m.inviteByCode = make(map[int]prometheus.Counter, len(codeLabels))
	m.byeByCode = make(map[int]*lazyCounter, len(codeLabels))
	for code, l := range codeLabels {
		m.inviteByCode[code] = m.Responses.WithLabelValues("INVITE", l)
		m.byeByCode[code] = &lazyCounter{labels: [2]string{"BYE", l}}
	}
}

// homeRegion pre-creates the per-region series of this node's region,
// kept for the node's life.
func (m *Metrics) homeRegion(region string) {
	m.pre.mu.Lock()
	defer m.pre.mu.Unlock()
	m.pre.home = m.regions.label(region)
	m.precreateRegion(m.pre.home)
}

// syncRegions pre-creates the per-region series (failovers, probe RTT,
// setup latency by carrier and origin) of the endpoint regions in the
// table as the prober first sees them, before any call or failover; a
// region that leaves the table loses those of its series still at zero.
// labels are capped region labels.
func (m *Metrics) syncRegions(labels map[string]bool) {
	m.pre.mu.Lock()
	defer m.pre.mu.Unlock()
	if m.pre.set == nil {
		m.pre.set = map[string]bool{}
	}
	for r := range labels {
		if !m.pre.set[r] && r != "other" {
			m.pre.set[r] = true
			m.precreateRegion(r)
		}
	}
	for r := range m.pre.set {
		if !labels[r] {
			delete(m.pre.set, r)
			if r != m.pre.home {
				m.forgetRegion(r)
			}
		}
	}
}

func (m *Metrics) precreateRegion(r string) {
	m.Failovers.WithLabelValues(r)
	m.ProbeRTT.WithLabelValues(r)
	for _, c := range setupCarrier {
		for _, o := range setupOrigin {
			m.SetupProvisional.WithLabelValues(r, c, o)
			m.SetupAnswer.WithLabelValues(r, c, o)
		}
	}
}

// forgetRegion deletes region r's pre-created series that never counted anything.
func (m *Metrics) forgetRegion(r string) {
	if c, err := m.Failovers.GetMetricWithLabelValues(r); err == nil && zero(c) {
		m.Failovers.DeleteLabelValues(r)
	}
	hists := []*prometheus.HistogramVec{m.SetupProvisional, m.SetupAnswer}
	for _, h := range hists {
		for _, c := range setupCarrier {
			for _, o := range setupOrigin {
				if x, err := h.GetMetricWithLabelValues(r, c, o); err == nil && zero(x.(prometheus.Metric)) {
					h.DeleteLabelValues(r, c, o)
				}
			}
		}
	}
	if x, err := m.ProbeRTT.GetMetricWithLabelValues(r); err == nil && zero(x.(prometheus.Metric)) {
		m.ProbeRTT.DeleteLabelValues(r)
	}
}

// zero reports whether a counter or histogram has counted nothing.
func zero(c prometheus.Metric) bool {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		return false
	}
	if h := d.GetHistogram(); h != nil {
		return h.GetSampleCount() == 0
	}
	return d.GetCounter().GetValue() == 0
}

// maxEndpointLabels bounds the per-endpoint gauges per region.
const maxEndpointLabels = 16

var endpointLabels = func() [maxEndpointLabels]string {
	var l [maxEndpointLabels]string
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

// regionLabels caps the number of distinct region label values.
type regionLabels struct {
	mu   sync.RWMutex
	max  int
	seen map[string]bool
}

func (r *regionLabels) label(region string) string {
	if region == "" {
		return "none"
	}
	r.mu.RLock()
	ok := r.seen[region]
	n := len(r.seen)
	r.mu.RUnlock()
	if ok {
		return region
	}
	if n >= r.max || !labelSafe(region) {
		return "other"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]bool{}
	}
	if len(r.seen) >= r.max {
		return "other"
	}
	r.seen[region] = true
	return region
}

func carrierLabel(c string) string {
	switch c {
	case "twilio", "telnyx", "sandbox", "local":
		return c
	case "":
		return "none"
	}
	return "other"
}

func originLabel(o string) string {
	switch o {
	case "purchased", "imported", "forwarded":
		return o
	case "":
		return "none"
	}
	return "other"
}

func methodLabel(m string) string {
	for _, l := range methodLabels {
		if m == l {
			return l // not m: a string(bytes) argument stays off the heap
		}
	}
	return "other"
}

var methodLabels = [...]string{"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "UPDATE", "INFO", "PRACK", "REFER", "NOTIFY",
	"SUBSCRIBE", "MESSAGE", "REGISTER", "PUBLISH"}

var codeLabels = func() map[int]string {
	m := map[int]string{}
	for _, c := range []int{100, 180, 181, 182, 183, 200, 202, 400, 401, 403, 404, 405, 407, 408, 410, 413,
		415, 420, 480, 481, 482, 483, 484, 486, 487, 488, 491, 500, 501, 502, 503, 504, 600, 603, 604, 606} {
		m[c] = strconv.Itoa(c)
	}
	return m
}()

func codeLabel(code int) string {
	if s, ok := codeLabels[code]; ok {
		return s
	}
	if code >= 100 && code < 700 {
		return strconv.Itoa(code/100) + "xx"
	}
	return "other"
}

func classLabel(code int) string {
	if code >= 100 && code < 700 {
		return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "6xx"}[code/100-1]
	}
	return "other"
}
