package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/callgate/callgate/config"
)

// dashboardExprs returns every PromQL expression of the Grafana dashboard:
// panel targets and template variable queries.
func dashboardExprs(t *testing.T) (exprs []string, dash map[string]any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/grafana/dashboards/callgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	var walk func(v any, key string)
	walk = func(v any, key string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(x, k)
			}
		case []any:
			for _, x := range v {
				walk(x, key)
			}
		case string:
			if key == "expr" || key == "query" || key == "definition" {
				exprs = append(exprs, v)
			}
		}
	}
	walk(dash, "")
	return exprs, dash
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func alertRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/prometheus/alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	return rf
}

// TestDashboardAndRulesUseExportedMetrics: every callgate_* name used by
// the Grafana dashboard and the alert rules is one callgate exports, and
// the dashboard has the panels operators need.
func TestDashboardAndRulesUseExportedMetrics(t *testing.T) {
	n, _ := activeNode(t)
	exported := exportedMetrics(t, n)

	exprs, dash := dashboardExprs(t)
	if len(exprs) < 20 {
		t.Fatalf("dashboard has only %d expressions", len(exprs))
	}
	rf := alertRules(t)
	var ruleExprs []string
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			ruleExprs = append(ruleExprs, r.Expr)
			alerts[r.Alert] = true
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: needs a severity label, a summary and a description", r.Alert)
			}
		}
	}
	for what, list := range map[string][]string{"dashboard": exprs, "alerts.yml": ruleExprs} {
		used := usedNames(list)
		if len(used) == 0 {
			t.Fatalf("%s uses no callgate metric", what)
		}
		for _, name := range used {
			if !exported[name] {
				t.Errorf("%s uses %s, which callgate does not export", what, name)
			}
		}
		t.Logf("%s uses %d callgate metrics, all exported", what, len(used))
	}
	if t.Failed() {
		var cg []string
		for _, k := range sortedKeys(exported) {
			if strings.HasPrefix(k, "callgate_") {
				cg = append(cg, k)
			}
		}
		t.Logf("exported: %s", strings.Join(cg, " "))
	}

	// The dashboard shows what the issue asks for.
	used := map[string]bool{}
	for _, n := range usedNames(exprs) {
		used[n] = true
	}
	for panel, metric := range map[string]string{
		"setup latency percentiles by region": "callgate_sip_setup_answer_seconds_bucket",
		"time to first provisional":           "callgate_sip_setup_provisional_seconds_bucket",
		"probe RTT by region":                 "callgate_sip_probe_rtt_seconds_bucket",
		"endpoint health by region":           "callgate_sip_region_endpoints",
		"call rate and outcomes":              "callgate_sip_calls_total",
		"refused requests":                    "callgate_sip_rejected_total",
		"webhook latency":                     "callgate_webhook_request_duration_seconds_bucket",
		"webhook results":                     "callgate_webhook_requests_total",
		"active calls":                        "callgate_sip_active_calls",
		"provisioning outcomes":               "callgate_provisioning_operations_total",
		"credits charged":                     "callgate_provisioning_credits_charged_total",
		"NATS connection":                     "callgate_nats_connected",
		"snapshot age":                        "callgate_routing_snapshot_age_seconds",
	} {
		if !used[metric] {
			t.Errorf("dashboard has no %s panel (%s)", panel, metric)
		}
	}
	ids := map[float64]bool{}
	for _, p := range dash["panels"].([]any) {
		p := p.(map[string]any)
		id, _ := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel id %v used twice", id)
		}
		ids[id] = true
		if p["type"] == "row" {
			continue
		}
		if targets, _ := p["targets"].([]any); len(targets) == 0 {
			t.Errorf("panel %q has no query", p["title"])
		}
	}
	// The alerts the issue asks for.
	for _, a := range []string{"CallgateNoHealthyEndpointInRegion", "CallgateSetupLatencyHigh", "CallgateNATSDisconnected",
		"CallgateRoutingSnapshotStale", "CallgateCallErrorRate"} {
		if !alerts[a] {
			t.Errorf("alerts.yml has no %s", a)
		}
	}
}

// TestAlertRulesPassPromtool: `promtool check rules` and the rules' unit
// tests (alerts_test.yml: each alert fires on the series it is for, and a
// healthy gateway raises none).
func TestAlertRulesPassPromtool(t *testing.T) {
	needBinary(t, promtoolBin, "prometheus")
	dir := filepath.Join(repoRoot(t), "deploy/prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
		{"check", "config", "prometheus.yml"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, promtoolBin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || strings.Contains(string(out), "WARNING") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestDeployFiles: the compose file describes the 3-node NATS cluster,
// two gateways in two regions, Prometheus and Grafana, and the files it
// mounts exist; the gateways' configs load.
func TestDeployFiles(t *testing.T) {
	root := filepath.Join(repoRoot(t), "deploy")
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, s := range []string{"nats-1", "nats-2", "nats-3", "callgate-us", "callgate-eu", "prometheus", "grafana"} {
		if _, ok := compose.Services[s]; !ok {
			t.Errorf("docker-compose.yml has no service %s", s)
		}
	}
	for _, s := range []string{"nats-1", "nats-2", "nats-3"} {
		cmd := strings.Join(compose.Services[s].Command, " ")
		if !strings.Contains(cmd, "-js") || !strings.Contains(cmd, "--routes") {
			t.Errorf("%s: %q does not run JetStream in a cluster", s, cmd)
		}
	}
	for name, svc := range compose.Services {
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, ".") {
				if _, err := os.Stat(filepath.Join(root, src)); err != nil {
					t.Errorf("%s mounts %s, which does not exist", name, src)
				}
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "Dockerfile")); err != nil {
		t.Error(err)
	}
	// Each gateway's config loads, with its own region, on the shared cluster.
	key := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	regions := map[string]bool{}
	for _, f := range []string{"us-east.yaml", "eu-west.yaml"} {
		cfg, err := config.Load(filepath.Join(root, "callgate", f), func(k string) string {
			if k == "CALLGATE_SECRET_KEY" {
				return key
			}
			return ""
		})
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if cfg.NATS.Replicas != 3 || strings.Count(cfg.NATS.URL, "nats://") != 3 {
			t.Errorf("%s: nats %+v, want 3 servers and 3 replicas", f, cfg.NATS)
		}
		regions[cfg.Region] = true
	}
	if len(regions) != 2 {
		t.Errorf("the two gateways are not in two regions: %v", regions)
	}
	// The grafana data source and dashboard provider.
	for _, f := range []string{"grafana/provisioning/datasources/prometheus.yml", "grafana/provisioning/dashboards/callgate.yml"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Error(err)
			continue
		}
		var v map[string]any
		if err := yaml.Unmarshal(b, &v); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// The systemd unit: TestSystemdUnit.
}

// TestAlertTestsUseScrapeLabels: the rules' unit tests (alerts_test.yml)
// feed series labelled as the shipped prometheus.yml labels them (job,
// instance of a target, the target's own labels such as node_region), so
// that promtool tests the rules against what Prometheus really stores: a
// rule that aggregates "without (instance)" compares each node with itself
// once node_region is there, and only such series show it.
func TestAlertTestsUseScrapeLabels(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "deploy/prometheus")
	var prom struct {
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string          `yaml:"targets"`
				Labels  map[string]string `yaml:"labels"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, filepath.Join(dir, "prometheus.yml"), &prom)
	// instance -> the labels Prometheus attaches to its series
	targets := map[string]map[string]string{}
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				l := map[string]string{"job": sc.JobName, "instance": tg}
				for k, v := range st.Labels {
					l[k] = v
				}
				targets[tg] = l
			}
		}
	}
	if len(targets) < 2 {
		t.Fatalf("prometheus.yml scrapes %d targets, want the compose file's two gateways", len(targets))
	}
	var tests struct {
		Tests []struct {
			Name        string `yaml:"name"`
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
		} `yaml:"tests"`
	}
	readYAML(t, filepath.Join(dir, "alerts_test.yml"), &tests)
	seen := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, in := range tc.InputSeries {
			labels, err := seriesLabels(in.Series)
			if err != nil {
				t.Errorf("%s: %v", tc.Name, err)
				continue
			}
			want, ok := targets[labels["instance"]]
			if !ok {
				t.Errorf("%s: series %s: instance %q is not a target of prometheus.yml", tc.Name, in.Series, labels["instance"])
				continue
			}
			seen[labels["instance"]] = true
			for k, v := range want {
				if labels[k] != v {
					t.Errorf("%s: series %s: %s=%q, but prometheus.yml gives its target %s=%q", tc.Name, in.Series, k, labels[k], k, v)
				}
			}
		}
	}
	if len(seen) < 2 {
		t.Errorf("alerts_test.yml uses %d of the scraped gateways; the rules comparing nodes need two", len(seen))
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// seriesLabels parses the labels of a promtool series selector,
// `name{k="v",...}` (values without escaped quotes or commas).
func seriesLabels(s string) (map[string]string, error) {
	_, rest, ok := strings.Cut(s, "{")
	if !ok || !strings.HasSuffix(rest, "}") {
		return nil, fmt.Errorf("series %q: no labels", s)
	}
	labels := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			return nil, fmt.Errorf("series %q: cannot read label %q", s, kv)
		}
		labels[strings.TrimSpace(k)] = v[1 : len(v)-1]
	}
	return labels, nil
}
