package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/audit"
)

// TestAPIMetricsByRoutePattern counts requests under the route pattern
// they matched (never the raw path), their method and status class, and
// every route's series exists at zero before any request.
func TestAPIMetricsByRoutePattern(t *testing.T) {
	x := startTestAPI(t, audit.Limits{})
	m := gather(t, x.reg)
	for _, rt := range Routes {
		for _, class := range []string{"2xx", "4xx", "5xx"} {
			key := `callgate_api_requests_total{class="` + class + `",method="` + rt.Method + `",route="` + rt.Path + `"}`
			if v, ok := m[key]; !ok || v != 0 {
				t.Errorf("before any request: %s = %v (present %v), want 0", key, v, ok)
			}
		}
		key := `callgate_api_request_duration_seconds_count{method="` + rt.Method + `",route="` + rt.Path + `"}`
		if _, ok := m[key]; !ok {
			t.Errorf("before any request: no %s", key)
		}
	}

	num := x.searchOne()
	x.do(x.wsKey, "POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox"}`)
	for _, p := range []string{"/v1/numbers/" + num, "/v1/numbers/" + strings.TrimPrefix(num, "+"), "/v1/numbers/%2B" + num[1:]} {
		if code, body := x.do(x.wsKey, "GET", p, ""); code != 200 {
			t.Fatalf("GET %s: %d %v", p, code, body)
		}
	}
	x.do(x.wsKey, "GET", "/v1/numbers/+12025550123", "") // 404
	x.do("", "GET", "/v1/numbers/+12025550123", "")      // 401
	x.do(x.wsKey, "GET", "/v1/no/such/thing", "")        // catch-all 404

	c := func(route, method, class string) float64 {
		return testutil.ToFloat64(x.api.opts.Metrics.Requests.WithLabelValues(route, method, class))
	}
	if got := c("/v1/numbers/{number}", "GET", "2xx"); got != 3 {
		t.Errorf("GET /v1/numbers/{number} 2xx = %v, want 3", got)
	}
	if got := c("/v1/numbers/{number}", "GET", "4xx"); got != 2 {
		t.Errorf("GET /v1/numbers/{number} 4xx = %v, want 2", got)
	}
	if got := c("/v1/numbers", "POST", "2xx"); got != 1 {
		t.Errorf("POST /v1/numbers 2xx = %v, want 1", got)
	}
	if got := c("/v1/", "GET", "4xx"); got != 1 {
		t.Errorf("unknown endpoint under /v1/ 4xx = %v, want 1", got)
	}
	m = gather(t, x.reg)
	if got := m[`callgate_api_request_duration_seconds_count{method="GET",route="/v1/numbers/{number}"}`]; got != 5 {
		t.Errorf("duration count for GET /v1/numbers/{number} = %v, want 5", got)
	}
	for k := range m {
		if strings.Contains(k, "callgate_api_") && (strings.Contains(k, "228") || strings.Contains(k, "202555")) {
			t.Errorf("a raw path became a label value: %s", k)
		}
	}
}

// gather flattens a registry: "name{labels}" → value (counters, gauges,
// histogram counts as name_count).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+`="`+l.GetValue()+`"`)
			}
			labels := "{" + strings.Join(ls, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[f.GetName()+labels] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[f.GetName()+labels] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[f.GetName()+"_count"+labels] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// TestAPIMetricsCountPanicsAs5xx: a handler that panics is answered 500
// and counted as 5xx, not as the 2xx of a response never written.
func TestAPIMetricsCountPanicsAs5xx(t *testing.T) {
	a := New(Options{Metrics: NewMetrics(nil), Log: slog.New(slog.DiscardHandler),
		Extra: map[string]http.Handler{"GET /boom": http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })}})
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, httptest.NewRequest("GET", "/boom", nil))
	if rec.Code != 500 {
		t.Fatalf("panicking handler answered %d, want 500", rec.Code)
	}
	if got := testutil.ToFloat64(a.opts.Metrics.Requests.WithLabelValues("/boom", "GET", "5xx")); got != 1 {
		t.Errorf("5xx count %v, want 1", got)
	}
	if got := testutil.ToFloat64(a.opts.Metrics.Requests.WithLabelValues("/boom", "GET", "2xx")); got != 0 {
		t.Errorf("2xx count %v, want 0", got)
	}
}
