package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/provisioning"
)

// Metrics are the API's collectors:
//
//	callgate_api_requests_total{route,method,class}
//	callgate_api_request_duration_seconds{route,method}
//
// route is the pattern the request matched (e.g. /v1/numbers/{number}),
// never the raw path; "unmatched" when none did. class is 1xx..5xx.
type Metrics struct {
	Requests *prometheus.CounterVec
	Duration *prometheus.HistogramVec
}

var statusClasses = []string{"2xx", "3xx", "4xx", "5xx"}

// NewMetrics builds the API collectors, registered on reg (nil: not
// registered), with every route's series present from the start.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "callgate", Subsystem: "api", Name: "requests_total",
			Help: "HTTP requests by route pattern, method and status class.",
		}, []string{"route", "method", "class"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "callgate", Subsystem: "api", Name: "request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method"}),
	}
	for _, rt := range Routes {
		m.Duration.WithLabelValues(rt.Path, rt.Method)
		for _, c := range statusClasses {
			m.Requests.WithLabelValues(rt.Path, rt.Method, c)
		}
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Duration)
	}
	return m
}

func (m *Metrics) observe(pattern, method string, status int, d time.Duration) {
	if m == nil {
		return
	}
	route := "unmatched"
	if pattern != "" {
		route = pattern
		if i := strings.IndexByte(pattern, ' '); i >= 0 {
			method, route = pattern[:i], pattern[i+1:]
		} else {
			method = methodLabel(method)
		}
	} else {
		method = methodLabel(method)
	}
	class := "other"
	if status >= 100 && status < 600 {
		class = strconv.Itoa(status/100) + "xx"
	}
	m.Requests.WithLabelValues(route, method, class).Inc()
	m.Duration.WithLabelValues(route, method).Observe(d.Seconds())
}

func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return m
	}
	return "other"
}

// auditActions names the audited routes' actions.
var auditActions = map[string]string{
	"POST /v1/workspaces":               audit.ActionWorkspaceCreate,
	"POST /v1/workspaces/{id}/credits":  audit.ActionCreditsTopUp,
	"POST /v1/numbers":                  audit.ActionNumberPurchase,
	"DELETE /v1/numbers/{number}":       audit.ActionNumberRelease,
	"POST /v1/integrations/{id}/import": audit.ActionNumberImport,
	"POST /v1/integrations":             audit.ActionIntegrationCreate,
	"DELETE /v1/integrations/{id}":      audit.ActionIntegrationDelete,
	// settings.go
	"PATCH /v1/workspace":                               audit.ActionWorkspaceUpdate,
	"PATCH /v1/workspaces/{id}":                         audit.ActionWorkspaceUpdate,
	"POST /v1/workspace/webhook-secret":                 audit.ActionWebhookSecretRotate,
	"POST /v1/agents/{id}/sip-credentials":              audit.ActionSIPCredentialCreate,
	"DELETE /v1/agents/{id}/sip-credentials/{username}": audit.ActionSIPCredentialRevoke,
	"PATCH /v1/integrations/{id}":                       audit.ActionIntegrationUpdate,
}

// note is what one request's handlers tell the audit layer.
type note struct {
	principal *provisioning.Principal
	keyID     string
	authFail  string // "" or the audit action of a failed key use
	target    string
	detail    string
	errDetail string
}

type noteKey struct{}

func noteOf(r *http.Request) *note {
	n, _ := r.Context().Value(noteKey{}).(*note)
	if n == nil {
		return &note{} // a handler called without ServeHTTP (tests)
	}
	return n
}

// setTarget names what an audited request acted on (when the path does not).
func setTarget(r *http.Request, target string) { noteOf(r).target = target }

// setDetail adds a detail to the request's audit record.
func setDetail(r *http.Request, detail string) { noteOf(r).detail = detail }

// keyID identifies an API key in audit records: a prefix of the hash it is
// stored under, never the key.
func keyID(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:8])
}

// statusRecorder remembers the status written.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// requestID is the client's X-Request-Id when it is a sane token, else a new one.
func requestID(r *http.Request) string {
	if v := r.Header.Get("X-Request-Id"); v != "" && len(v) <= 64 {
		ok := true
		for _, c := range v {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				ok = false
				break
			}
		}
		if ok {
			return v
		}
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func remoteIP(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// observe serves r through next, then counts it and writes its audit
// record (audited routes and failed key uses).
func (a *API) observe(w http.ResponseWriter, r *http.Request, next http.Handler) {
	start := time.Now()
	rid := requestID(r)
	w.Header().Set("X-Request-Id", rid)
	n := &note{}
	r = r.WithContext(context.WithValue(r.Context(), noteKey{}, n))
	sr := &statusRecorder{ResponseWriter: w}
	defer func() {
		p := recover()
		switch {
		case p != nil && (sr.status == 0 || sr.status < 400):
			sr.status = http.StatusInternalServerError // ServeHTTP answers 500
		case sr.status == 0:
			sr.status = http.StatusOK
		}
		a.opts.Metrics.observe(r.Pattern, r.Method, sr.status, time.Since(start))
		if a.opts.Audit != nil {
			a.audit(r, n, sr.status, rid)
		}
		if p != nil {
			panic(p) // to ServeHTTP's recover
		}
	}()
	next.ServeHTTP(sr, r)
}

func (a *API) audit(r *http.Request, n *note, status int, rid string) {
	rec := audit.Record{
		Status: status, KeyID: n.keyID, RequestID: rid, RemoteAddr: remoteIP(r),
		Method: r.Method, Path: clipPath(r.URL.Path), Actor: audit.ActorAnonymous,
	}
	if p := n.principal; p != nil {
		rec.Actor = audit.ActorWorkspace
		rec.Workspace = p.Workspace
		if p.Admin {
			rec.Actor, rec.Workspace = audit.ActorAdmin, ""
		}
	}
	ctx := r.Context()
	switch {
	case n.authFail == audit.ActionAuthFailed:
		rec.Action, rec.Result, rec.Detail = audit.ActionAuthFailed, audit.ResultDenied, n.errDetail
		a.opts.Audit.AuthFailed(ctx, rec)
		return
	case n.authFail == audit.ActionAuthForbidden:
		rec.Action, rec.Result, rec.Detail = audit.ActionAuthForbidden, audit.ResultDenied, n.errDetail
		a.opts.Audit.Write(ctx, rec)
		return
	}
	action := auditActions[r.Pattern]
	if action == "" || n.principal == nil {
		return
	}
	rec.Action = action
	rec.Target = n.target
	if rec.Target == "" {
		if r.PathValue("number") != "" {
			rec.Target = pathNumber(r)
		} else {
			rec.Target = r.PathValue("id")
		}
	}
	if rec.Actor == audit.ActorAdmin && provisioning.ValidID(rec.Target) {
		rec.Workspace = rec.Target // the admin acts on workspaces
	}
	switch {
	case status == http.StatusOK && action == audit.ActionNumberImport:
		rec.Result = audit.ResultPartial
	case status >= 200 && status < 300:
		rec.Result = audit.ResultOK
	default:
		rec.Result = audit.ResultFailed
	}
	rec.Detail = n.detail
	if n.errDetail != "" {
		if rec.Detail != "" {
			rec.Detail += "; "
		}
		rec.Detail += n.errDetail
	}
	a.opts.Audit.Write(ctx, rec)
}

func clipPath(p string) string {
	if len(p) > 200 {
		return p[:200]
	}
	return p
}
