// Package api serves callgate's HTTP API: provisioning under /v1 (bearer
// keys, JSON, RFC 9457 problems), health and readiness, and the OpenAPI
// document.
package api

import (
	"context"
	_ "embed"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
)

//go:embed openapi.json
var openapiDoc []byte

// Options configure the API.
type Options struct {
	Service *provisioning.Service
	Log     *slog.Logger
	// Ready reports readiness for /readyz (nil = ready).
	Ready func() (bool, string)
	// Regions serves GET /v1/regions for a caller: a workspace sees its
	// own agents' endpoints, the admin key every workspace's (nil = empty
	// list).
	Regions func(p provisioning.Principal) any
	// Extra mounts more handlers (e.g. /metrics, /webhooks/, integrations)
	// on the same mux: pattern → handler.
	Extra map[string]http.Handler
	// Timeout bounds each API request (default 30s).
	Timeout time.Duration
	// Metrics counts and times requests (nil: not measured).
	Metrics *Metrics
	// Audit records audited operations and failed key uses, and serves
	// GET /v1/audit (nil: no audit log).
	Audit *audit.Log
	// Calls serves GET /v1/calls and /v1/calls/{id} (nil: no call history).
	Calls *callhistory.Reader
	// Placer places calls for POST /v1/calls (nil: 503).
	Placer CallPlacer
	// Control sends commands to running calls (POST /v1/calls/{id}/transfer
	// and /dtmf) to the node that holds them (nil: 503).
	Control *calls.ControlBus
	// WebhookCalls transfers and sends digits to calls that reached an
	// agent by a carrier's webhook, which no node holds (webhookcalls.go;
	// nil: 404 for them).
	WebhookCalls WebhookCalls
}

// API is the HTTP handler.
type API struct {
	svc  *provisioning.Service
	log  *slog.Logger
	opts Options
	mux  *http.ServeMux
}

// New builds the API handler.
func New(o Options) *API {
	a := &API{svc: o.Service, log: o.Log, opts: o, mux: http.NewServeMux()}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.opts.Timeout == 0 {
		a.opts.Timeout = 30 * time.Second
	}
	m := a.mux
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"status": "alive"})
	})
	m.HandleFunc("GET /readyz", a.readyz)
	m.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapiDoc)
	})
	for _, rt := range Routes {
		if rt.handler == nil {
			continue
		}
		h := rt.handler(a)
		if rt.Method == "POST" || rt.Method == "PUT" || rt.Method == "PATCH" {
			h = requireJSON(h)
		}
		m.Handle(rt.Method+" "+rt.Path, a.auth(rt.Admin, h, anyKey[rt.Method+" "+rt.Path]))
	}
	for p, h := range o.Extra {
		m.Handle(p, h)
	}
	m.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, Problem{Status: 404, Title: "Not found", Detail: "no such endpoint: " + r.Method + " " + r.URL.Path + " (see GET /v1/openapi.json)"})
	})
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			a.log.Error("api: panic", "path", r.URL.Path, "panic", v)
			writeProblem(w, Problem{Status: 500, Title: "Internal error", Detail: "an unexpected error happened; it was logged"})
		}
	}()
	a.observe(w, r, http.HandlerFunc(a.route))
}

// probeMethods are the methods tried to build a 405's Allow header.
var probeMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}

// route serves r through the mux; a path served only for other methods is
// a 405 problem with Allow (the mux's own 405 is plain text, and the /v1/
// catch-all would make it a 404).
func (a *API) route(w http.ResponseWriter, r *http.Request) {
	if _, pat := a.mux.Handler(r); pat == "" || pat == "/v1/" {
		var allow []string
		for _, m := range probeMethods {
			if m == r.Method {
				continue
			}
			probe := r.WithContext(r.Context())
			probe.Method = m
			if _, p := a.mux.Handler(probe); p != "" && p != pat {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeProblem(w, Problem{Status: http.StatusMethodNotAllowed, Title: "Method not allowed",
				Detail: r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + strings.Join(allow, ", ")})
			return
		}
	}
	a.mux.ServeHTTP(w, r)
}

// requireJSON answers 415 to a request that labels its body as anything
// but application/json (a charset parameter, if any, must be utf-8). A
// body sent without a Content-Type is read as JSON (RFC 9110 8.3 leaves
// that to the server; existing clients send none), so the strict decoder
// still refuses anything else with a 400.
func requireJSON(h handler) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		ct := r.Header.Get("Content-Type")
		if ct == "" {
			return h(w, r)
		}
		mt, params, err := mime.ParseMediaType(ct)
		cs, hasCharset := params["charset"]
		if err != nil || mt != "application/json" || (hasCharset && !strings.EqualFold(cs, "utf-8")) {
			if len(ct) > 100 {
				ct = ct[:100] + "..."
			}
			noteOf(r).errDetail = "unsupported media type: " + ct
			switch r.Method {
			case "POST":
				w.Header().Set("Accept-Post", "application/json")
			case "PATCH":
				w.Header().Set("Accept-Patch", "application/json")
			}
			writeProblem(w, Problem{Status: http.StatusUnsupportedMediaType, Title: "Unsupported media type",
				Detail: "the body must be JSON sent as 'Content-Type: application/json', not " + ct})
			return nil
		}
		return h(w, r)
	}
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if a.opts.Ready != nil {
		if ok, why := a.opts.Ready(); !ok {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, 503, map[string]string{"status": "not ready", "reason": why})
			return
		}
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}

type principalKey struct{}

func principal(r *http.Request) provisioning.Principal {
	p, _ := r.Context().Value(principalKey{}).(provisioning.Principal)
	return p
}

type handler func(w http.ResponseWriter, r *http.Request) error

func (a *API) auth(admin bool, h handler, eitherKey bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		authz := r.Header.Get("Authorization")
		key, ok := strings.CutPrefix(authz, "Bearer ")
		if !ok || key == "" {
			noteOf(r).authFail, noteOf(r).errDetail = audit.ActionAuthFailed, "no API key"
			w.Header().Set("WWW-Authenticate", `Bearer realm="callgate"`)
			writeProblem(w, Problem{Status: 401, Title: "Unauthorized", Detail: "send an API key as 'Authorization: Bearer <key>' (see data/api-key)"})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), a.opts.Timeout)
		defer cancel()
		p, err := a.svc.Authenticate(ctx, strings.TrimSpace(key))
		if err != nil {
			if err == provisioning.ErrForbidden {
				noteOf(r).keyID = keyID(strings.TrimSpace(key))
				noteOf(r).authFail, noteOf(r).errDetail = audit.ActionAuthFailed, "the API key is not valid"
				w.Header().Set("WWW-Authenticate", `Bearer realm="callgate", error="invalid_token"`)
				writeProblem(w, Problem{Status: 401, Title: "Unauthorized", Detail: "the API key is not valid"})
				return
			}
			a.writeError(w, r, err)
			return
		}
		noteOf(r).principal, noteOf(r).keyID = &p, keyID(strings.TrimSpace(key))
		// eitherKey: the handler tells the two apart by principal(r).Admin.
		if admin && !p.Admin && !eitherKey {
			noteOf(r).authFail, noteOf(r).errDetail = audit.ActionAuthForbidden, "a workspace key on an admin endpoint"
			writeProblem(w, Problem{Status: 403, Title: "Forbidden", Detail: "this endpoint needs the admin key (data/admin-key)"})
			return
		}
		if !admin && p.Admin && !eitherKey {
			noteOf(r).authFail, noteOf(r).errDetail = audit.ActionAuthForbidden, "the admin key on a workspace endpoint"
			writeProblem(w, Problem{Status: 403, Title: "Forbidden", Detail: "the admin key manages workspaces; use a workspace API key here"})
			return
		}
		r = r.WithContext(context.WithValue(ctx, principalKey{}, p))
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// anyKey lists the operations that take a workspace key or the admin key.
var anyKey = map[string]bool{"GET /v1/regions": true, "GET /v1/calls": true, "GET /v1/calls/{id}": true}

// Route is one API operation; the OpenAPI document is checked against this list.
type Route struct {
	Method, Path string
	Admin        bool
	handler      func(*API) handler
}

// Routes lists every /v1 operation.
var Routes = []Route{
	{"GET", "/v1/marketplace/numbers", false, func(a *API) handler { return a.searchNumbers }},
	{"POST", "/v1/numbers", false, func(a *API) handler { return a.buyNumber }},
	{"GET", "/v1/numbers", false, func(a *API) handler { return a.listNumbers }},
	{"GET", "/v1/numbers/{number}", false, func(a *API) handler { return a.getNumber }},
	{"PATCH", "/v1/numbers/{number}", false, func(a *API) handler { return a.patchNumber }},
	{"DELETE", "/v1/numbers/{number}", false, func(a *API) handler { return a.releaseNumber }},
	{"POST", "/v1/agents", false, func(a *API) handler { return a.createAgent }},
	{"GET", "/v1/agents", false, func(a *API) handler { return a.listAgents }},
	{"GET", "/v1/agents/{id}", false, func(a *API) handler { return a.getAgent }},
	{"PUT", "/v1/agents/{id}", false, func(a *API) handler { return a.putAgent }},
	{"DELETE", "/v1/agents/{id}", false, func(a *API) handler { return a.deleteAgent }},
	{"GET", "/v1/credits", false, func(a *API) handler { return a.credits }},
	{"POST", "/v1/forwarding", false, func(a *API) handler { return a.createForwarding }},
	{"GET", "/v1/forwarding", false, func(a *API) handler { return a.listForwarding }},
	{"DELETE", "/v1/forwarding/{number}", false, func(a *API) handler { return a.deleteForwarding }},
	{"GET", "/v1/regions", false, func(a *API) handler { return a.regions }},
	{"GET", "/v1/audit", true, func(a *API) handler { return a.listAudit }},
	{"GET", "/v1/calls", false, func(a *API) handler { return a.listCalls }},
	{"GET", "/v1/calls/{id}", false, func(a *API) handler { return a.getCall }},
	{"POST", "/v1/calls/{id}/dtmf", false, func(a *API) handler { return a.sendDTMF }}, // dtmf.go
	{"POST", "/v1/integrations", false, func(a *API) handler { return a.createIntegration }},
	{"GET", "/v1/integrations", false, func(a *API) handler { return a.listIntegrations }},
	{"GET", "/v1/integrations/{id}", false, func(a *API) handler { return a.getIntegration }},
	{"DELETE", "/v1/integrations/{id}", false, func(a *API) handler { return a.deleteIntegration }},
	{"GET", "/v1/integrations/{id}/numbers", false, func(a *API) handler { return a.integrationNumbers }},
	{"POST", "/v1/integrations/{id}/import", false, func(a *API) handler { return a.importNumbers }},
	{"POST", "/v1/calls", false, func(a *API) handler { return a.placeCall }},
	{"POST", "/v1/calls/{id}/transfer", false, func(a *API) handler { return a.transferCall }}, // transfer.go
	{"POST", "/v1/workspaces", true, func(a *API) handler { return a.createWorkspace }},
	{"POST", "/v1/workspaces/{id}/credits", true, func(a *API) handler { return a.topUp }},
	// settings.go: workspace settings, SIP credentials, integration changes
	{"GET", "/v1/workspace", false, func(a *API) handler { return a.getOwnWorkspace }},
	{"PATCH", "/v1/workspace", false, func(a *API) handler { return a.patchOwnWorkspace }},
	{"POST", "/v1/workspace/webhook-secret", false, func(a *API) handler { return a.rotateWebhookSecret }},
	{"GET", "/v1/workspaces/{id}", true, func(a *API) handler { return a.getWorkspace }},
	{"PATCH", "/v1/workspaces/{id}", true, func(a *API) handler { return a.patchWorkspace }},
	{"POST", "/v1/agents/{id}/sip-credentials", false, func(a *API) handler { return a.createSIPCredential }},
	{"GET", "/v1/agents/{id}/sip-credentials", false, func(a *API) handler { return a.listSIPCredentials }},
	{"DELETE", "/v1/agents/{id}/sip-credentials/{username}", false, func(a *API) handler { return a.revokeSIPCredential }},
	{"PATCH", "/v1/integrations/{id}", false, func(a *API) handler { return a.patchIntegration }},
}

// pathNumber reads a number from the path: "+1228..." arrives as
// "%2B1228..." or " 1228..." (a '+' decoded as a space in some clients).
func pathNumber(r *http.Request) string {
	v := r.PathValue("number")
	if u, err := url.PathUnescape(v); err == nil {
		v = u
	}
	v = strings.TrimSpace(v)
	if v != "" && v[0] >= '0' && v[0] <= '9' {
		v = "+" + v
	}
	return v
}

func (a *API) searchNumbers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	v := &provisioning.ValidationError{}
	for k := range q {
		switch k {
		case "carrier", "integration_id", "country", "area_code", "type", "features", "limit", "page_token":
		default:
			v.Add(k, "unknown query parameter")
		}
	}
	req := provisioning.SearchRequest{Carrier: q.Get("carrier"), IntegrationID: q.Get("integration_id")}
	req.Country = q.Get("country")
	req.AreaCode = q.Get("area_code")
	req.Type = q.Get("type")
	req.PageToken = q.Get("page_token")
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			v.Add("limit", "must be an integer between 1 and 100")
		}
		req.Limit = n
	}
	if s := q.Get("features"); s != "" {
		for _, f := range strings.Split(s, ",") {
			switch strings.TrimSpace(strings.ToLower(f)) {
			case "voice":
				req.Features.Voice = true
			case "sms":
				req.Features.SMS = true
			case "mms":
				req.Features.MMS = true
			default:
				v.Add("features", "unknown feature %q (voice, sms, mms)", f)
			}
		}
	}
	if err := v.Err(); err != nil {
		return err
	}
	page, err := a.svc.Search(r.Context(), principal(r), req)
	if err != nil {
		return err
	}
	writeJSON(w, 200, struct {
		Numbers       []carrier.AvailableNumber `json:"numbers"`
		NextPageToken string                    `json:"next_page_token"`
	}{page.Numbers, page.NextPageToken})
	return nil
}

func (a *API) buyNumber(w http.ResponseWriter, r *http.Request) error {
	var req provisioning.PurchaseRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	setTarget(r, req.PhoneNumber)
	n, err := a.svc.Purchase(r.Context(), principal(r), req, r.Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	writeJSON(w, 201, n)
	return nil
}

func (a *API) listNumbers(w http.ResponseWriter, r *http.Request) error {
	ns, err := a.svc.ListNumbers(r.Context(), principal(r))
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"numbers": ns})
	return nil
}

func (a *API) getNumber(w http.ResponseWriter, r *http.Request) error {
	n, err := a.svc.GetNumber(r.Context(), principal(r), pathNumber(r))
	if err != nil {
		return err
	}
	writeJSON(w, 200, n)
	return nil
}

func (a *API) patchNumber(w http.ResponseWriter, r *http.Request) error {
	var p provisioning.NumberPatch
	if err := decode(w, r, &p); err != nil {
		return err
	}
	n, err := a.svc.UpdateNumber(r.Context(), principal(r), pathNumber(r), p)
	if err != nil {
		return err
	}
	writeJSON(w, 200, n)
	return nil
}

func (a *API) releaseNumber(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.Release(r.Context(), principal(r), pathNumber(r)); err != nil {
		return err
	}
	w.WriteHeader(204)
	return nil
}

func (a *API) createAgent(w http.ResponseWriter, r *http.Request) error {
	var in provisioning.AgentInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	ag, err := a.svc.CreateAgent(r.Context(), principal(r), in)
	if err != nil {
		return err
	}
	writeJSON(w, 201, ag)
	return nil
}

func (a *API) listAgents(w http.ResponseWriter, r *http.Request) error {
	as, err := a.svc.ListAgents(r.Context(), principal(r))
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"agents": as})
	return nil
}

func (a *API) getAgent(w http.ResponseWriter, r *http.Request) error {
	ag, err := a.svc.GetAgent(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, ag)
	return nil
}

func (a *API) putAgent(w http.ResponseWriter, r *http.Request) error {
	var in provisioning.AgentInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	ag, err := a.svc.UpdateAgent(r.Context(), principal(r), r.PathValue("id"), in)
	if err != nil {
		return err
	}
	writeJSON(w, 200, ag)
	return nil
}

func (a *API) deleteAgent(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.DeleteAgent(r.Context(), principal(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(204)
	return nil
}

func (a *API) credits(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	entries, err := a.svc.Ledger(r.Context(), p.Workspace)
	if err != nil {
		return err
	}
	bal := int64(0)
	if len(entries) > 0 {
		bal = entries[len(entries)-1].Balance
	}
	writeJSON(w, 200, map[string]any{"workspace": p.Workspace, "balance": bal, "entries": entries})
	return nil
}

func (a *API) createForwarding(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		BusinessNumber string `json:"business_number"`
		GatewayNumber  string `json:"gateway_number"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	f, err := a.svc.CreateForwarding(r.Context(), principal(r), in.BusinessNumber, in.GatewayNumber)
	if err != nil {
		return err
	}
	writeJSON(w, 201, f)
	return nil
}

func (a *API) listForwarding(w http.ResponseWriter, r *http.Request) error {
	fs, err := a.svc.ListForwarding(r.Context(), principal(r))
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"forwarding": fs})
	return nil
}

func (a *API) deleteForwarding(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.DeleteForwarding(r.Context(), principal(r), pathNumber(r)); err != nil {
		return err
	}
	w.WriteHeader(204)
	return nil
}

func (a *API) regions(w http.ResponseWriter, r *http.Request) error {
	var v any = []any{}
	if a.opts.Regions != nil {
		v = a.opts.Regions(principal(r))
	}
	writeJSON(w, 200, map[string]any{"regions": v})
	return nil
}

func (a *API) createWorkspace(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Credits int64  `json:"credits"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	setTarget(r, in.ID)
	ws, key, err := a.svc.CreateWorkspace(r.Context(), in.ID, in.Name, in.Credits)
	if err != nil {
		return err
	}
	writeJSON(w, 201, map[string]any{"workspace": ws, "api_key": key, "note": "the API key is shown once; store it now"})
	return nil
}

func (a *API) topUp(w http.ResponseWriter, r *http.Request) error {
	var in struct {
		Amount int64  `json:"amount"`
		Reason string `json:"reason"`
	}
	if err := decode(w, r, &in); err != nil {
		return err
	}
	setDetail(r, "amount "+strconv.FormatInt(in.Amount, 10))
	e, err := a.svc.TopUpIdempotent(r.Context(), r.PathValue("id"), in.Amount, in.Reason, r.Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	writeJSON(w, 201, e)
	return nil
}

func (a *API) createIntegration(w http.ResponseWriter, r *http.Request) error {
	var in provisioning.IntegrationInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	it, err := a.svc.CreateIntegration(r.Context(), principal(r), in)
	if err != nil {
		return err
	}
	setTarget(r, it.ID)
	writeJSON(w, 201, it)
	return nil
}

func (a *API) listIntegrations(w http.ResponseWriter, r *http.Request) error {
	its, err := a.svc.ListIntegrations(r.Context(), principal(r))
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"integrations": its})
	return nil
}

func (a *API) getIntegration(w http.ResponseWriter, r *http.Request) error {
	it, err := a.svc.GetIntegration(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, it)
	return nil
}

func (a *API) deleteIntegration(w http.ResponseWriter, r *http.Request) error {
	if err := a.svc.DeleteIntegration(r.Context(), principal(r), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(204)
	return nil
}

func (a *API) integrationNumbers(w http.ResponseWriter, r *http.Request) error {
	ns, err := a.svc.IntegrationNumbers(r.Context(), principal(r), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, 200, map[string]any{"numbers": ns})
	return nil
}

func (a *API) importNumbers(w http.ResponseWriter, r *http.Request) error {
	var in provisioning.ImportRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	res, err := a.svc.Import(r.Context(), principal(r), r.PathValue("id"), in)
	if err != nil {
		return err
	}
	imported := 0
	for _, x := range res {
		if x.Status == "imported" {
			imported++
		}
	}
	setDetail(r, "imported "+strconv.Itoa(imported)+" of "+strconv.Itoa(len(res)))
	status := 200
	if imported == len(res) {
		status = 201
	}
	writeJSON(w, status, map[string]any{"results": res, "imported": imported, "failed": len(res) - imported})
	return nil
}
