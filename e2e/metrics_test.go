package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/callgate/callgate/api"
	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/gateway/sip"
	"github.com/callgate/callgate/gateway/webhook"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
)

const (
	promtoolBin   = "/usr/bin/promtool"
	prometheusBin = "/usr/bin/prometheus"
	sippBin       = "/usr/bin/sipp"
)

// activeNode starts a node and gives it some activity: an agent, a
// purchase and an assignment, an answered call, a call to an unknown
// number (404) and endpoint probes.
func activeNode(t *testing.T) (*node.Node, apiClient) {
	t.Helper()
	cfg := testConfig(t)
	cfg.PublicURL = "https://gw.example.com" // webhooks on
	n, _ := startNode(t, cfg)
	agent, carrierUA := newUA(t), newUA(t)
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	num := routeNumber(t, c, "228", "bot", "local", agent.uri())
	waitRouted(t, n, num, "bot")
	if code := carrierUA.call(t, n.SIP().UDPAddr(), num); code != 200 {
		t.Fatalf("call to %s: %d, want 200", num, code)
	}
	if code := carrierUA.call(t, n.SIP().UDPAddr(), "+12025550199"); code != 404 {
		t.Fatalf("call to an unknown number: %d, want 404", code)
	}
	// The prober has measured the endpoint.
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(scrape(t, n.HTTPAddr()), `callgate_sip_region_endpoints{region="local",state="up"} 1`) {
			return fmt.Errorf("endpoint not probed up yet")
		}
		return nil
	})
	return n, c
}

// waitRouted waits until n's routing snapshot sends num to agent.
func waitRouted(t testing.TB, n *node.Node, num, agent string) {
	t.Helper()
	testwait.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		r, ok := n.Table().Load().Lookup(num)
		if !ok || r.Agent == nil || r.Agent.ID != agent {
			return fmt.Errorf("%s not routed to %s yet", num, agent)
		}
		return nil
	})
}

// TestMetricsPassPromtool feeds a busy node's /metrics to `promtool check
// metrics` and fails on any complaint.
func TestMetricsPassPromtool(t *testing.T) {
	needBinary(t, promtoolBin, "prometheus")
	n, _ := activeNode(t)
	text := scrape(t, n.HTTPAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtoolBin, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	// What the issue asks for is there after a call.
	for _, name := range []string{
		"callgate_build_info", "callgate_nats_connected", "callgate_routing_snapshot_age_seconds",
		"callgate_sip_setup_provisional_seconds_bucket", "callgate_sip_setup_answer_seconds_bucket",
		"callgate_sip_probe_rtt_seconds_bucket", "callgate_sip_region_rtt_estimate_seconds",
		"callgate_sip_region_endpoints", "callgate_sip_active_calls", "callgate_sip_calls_total",
		"callgate_sip_requests_total", "callgate_sip_responses_total", "callgate_sip_rejected_total",
		"callgate_provisioning_operations_total", "callgate_provisioning_credits_charged_total",
		"callgate_webhook_request_duration_seconds_bucket", "callgate_carrier_operations_total",
	} {
		if !regexp.MustCompile(`(?m)^` + name + `[{ ]`).MatchString(text) {
			t.Errorf("/metrics has no %s after a purchase and a call", name)
		}
	}
	for _, line := range []string{
		`callgate_sip_calls_total{class="2xx"} 1`,
		`callgate_sip_rejected_total{reason="unknown_number"} 1`,
		`callgate_provisioning_operations_total{operation="purchase",result="ok"} 1`,
		`callgate_nats_connected 1`,
	} {
		if !strings.Contains(text, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	// No label value is a phone number or an address.
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	unbounded := regexp.MustCompile(`^\+?\d{7,}$|^\d+\.\d+\.\d+\.\d+|:\d+$`)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if unbounded.MatchString(l.GetValue()) {
					t.Errorf("%s{%s=%q}: a number or address as a label value", name, l.GetName(), l.GetValue())
				}
			}
		}
	}
}

// recorder is a prometheus.Registerer that keeps what is registered.
type recorder struct{ cs []prometheus.Collector }

func (r *recorder) Register(c prometheus.Collector) error   { r.cs = append(r.cs, c); return nil }
func (r *recorder) MustRegister(cs ...prometheus.Collector) { r.cs = append(r.cs, cs...) }
func (r *recorder) Unregister(prometheus.Collector) bool    { return true }

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedMetrics is every metric name callgate can export, with the
// series names a histogram adds: each package's declared collectors
// (a vector with no child yet is absent from a scrape) and what a busy
// node's registry gathers.
func exportedMetrics(t *testing.T, n *node.Node) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	addHist := func(name string) {
		for _, s := range []string{"", "_bucket", "_sum", "_count"} {
			names[name+s] = true
		}
	}
	rec := &recorder{}
	sip.NewMetrics(rec)
	webhook.NewMetrics(rec)
	media.NewMetrics(rec)
	provisioning.NewMetrics(rec)
	carrier.NewMetrics(rec)
	api.NewMetrics(rec)
	audit.NewMetrics(rec)
	for _, c := range rec.cs {
		ch := make(chan *prometheus.Desc, 64)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			m := fqNameRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			switch c.(type) {
			case *prometheus.HistogramVec, prometheus.Histogram:
				addHist(m[1])
			case *prometheus.SummaryVec, prometheus.Summary:
				names[m[1]], names[m[1]+"_sum"], names[m[1]+"_count"] = true, true, true
			default:
				names[m[1]] = true
			}
		}
	}
	fams, err := n.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		switch f.GetType().String() {
		case "HISTOGRAM":
			addHist(f.GetName())
		case "SUMMARY":
			names[f.GetName()], names[f.GetName()+"_sum"], names[f.GetName()+"_count"] = true, true, true
		default:
			names[f.GetName()] = true
		}
	}
	return names
}

var metricNameRE = regexp.MustCompile(`\bcallgate_[a-zA-Z0-9_]+`)

// usedNames returns the callgate_* names in PromQL expressions.
func usedNames(exprs []string) []string {
	set := map[string]bool{}
	for _, e := range exprs {
		for _, n := range metricNameRE.FindAllString(e, -1) {
			set[n] = true
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
