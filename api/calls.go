package api

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning"
)

// callsWorkspace is the workspace a call history request reads: the
// caller's own, or for the admin key the one named by ?workspace=.
func callsWorkspace(r *http.Request, v *provisioning.ValidationError) string {
	p := principal(r)
	ws := r.URL.Query().Get("workspace")
	switch {
	case p.Admin && ws == "":
		v.Add("workspace", "required with the admin key: the workspace whose calls to read")
	case p.Admin && !provisioning.ValidID(ws):
		v.Add("workspace", "not a workspace id")
	case !p.Admin && ws != "" && ws != p.Workspace:
		v.Add("workspace", "only the admin key may read another workspace's calls")
	case !p.Admin:
		ws = p.Workspace
	}
	return ws
}

func (a *API) noHistory(w http.ResponseWriter) bool {
	if a.opts.Calls != nil {
		return false
	}
	writeProblem(w, Problem{Status: http.StatusNotImplemented, Title: "No call history", Detail: "this gateway runs without a call history"})
	return true
}

// listCalls serves GET /v1/calls: the workspace's calls, newest first,
// filtered and paged; as CSV when the client accepts text/csv.
func (a *API) listCalls(w http.ResponseWriter, r *http.Request) error {
	if a.noHistory(w) {
		return nil
	}
	q := r.URL.Query()
	v := &provisioning.ValidationError{}
	for k := range q {
		switch k {
		case "workspace", "number", "agent", "direction", "outcome", "from", "to", "limit", "cursor":
		default:
			v.Add(k, "unknown query parameter (workspace, number, agent, direction, outcome, from, to, limit, cursor)")
		}
	}
	query := callhistory.Query{Workspace: callsWorkspace(r, v), Agent: q.Get("agent"), Cursor: q.Get("cursor")}
	if s := q.Get("number"); s != "" {
		n, err := phone.Normalize(s, "")
		if err != nil {
			v.Add("number", "not a phone number in E.164 (+ and country code)")
		}
		query.Number = n
	}
	if s := query.Agent; s != "" && !provisioning.ValidID(s) {
		v.Add("agent", "not an agent id")
	}
	switch d := q.Get("direction"); d {
	case "", calls.Inbound, calls.Outbound:
		query.Direction = d
	default:
		v.Add("direction", "must be inbound or outbound")
	}
	if s := q.Get("outcome"); s != "" {
		if !callhistory.KnownOutcome(s) {
			v.Add("outcome", "unknown outcome; one of %s", strings.Join(callhistory.Outcomes, ", "))
		}
		query.Outcome = s
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"from", &query.From}, {"to", &query.To}} {
		if s := q.Get(f.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				v.Add(f.name, "must be an RFC 3339 time such as 2026-11-03T12:00:00Z")
			}
			*f.dst = t
		}
	}
	if !query.From.IsZero() && !query.To.IsZero() && !query.From.Before(query.To) {
		v.Add("to", "must be after from")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > callhistory.MaxLimit {
			v.Add("limit", "must be an integer between 1 and %d", callhistory.MaxLimit)
		}
		query.Limit = n
	}
	if err := v.Err(); err != nil {
		return err
	}
	page, err := a.opts.Calls.List(r.Context(), query)
	if errors.Is(err, callhistory.ErrBadCursor) {
		v.Add("cursor", "not a cursor from a previous page's next")
		return v.Err()
	}
	if err != nil {
		a.log.Warn("api: call history read failed", "err", err)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "State store unavailable", Detail: "the call history could not be read; retry"})
		return nil
	}
	if wantsCSV(r) {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8; header=present")
		w.Header().Set("Content-Disposition", `attachment; filename="calls.csv"`)
		if page.Next != "" {
			w.Header().Set("Callgate-Next-Cursor", page.Next)
		}
		w.WriteHeader(200)
		return callhistory.WriteCSV(w, page.Calls)
	}
	var next *string
	if page.Next != "" {
		next = &page.Next
	}
	cs := page.Calls
	if cs == nil {
		cs = []callhistory.Call{}
	}
	writeJSON(w, 200, map[string]any{"calls": cs, "next": next})
	return nil
}

// getCall serves GET /v1/calls/{id}; another workspace's call is 404.
func (a *API) getCall(w http.ResponseWriter, r *http.Request) error {
	if a.noHistory(w) {
		return nil
	}
	v := &provisioning.ValidationError{}
	for k := range r.URL.Query() {
		if k != "workspace" {
			v.Add(k, "unknown query parameter (workspace)")
		}
	}
	ws := callsWorkspace(r, v)
	id := r.PathValue("id")
	if id == "" || len(id) > 1024 {
		v.Add("id", "a call id (SIP Call-ID or carrier call sid) of 1 to 1024 bytes")
	}
	if err := v.Err(); err != nil {
		return err
	}
	c, err := a.opts.Calls.Get(r.Context(), ws, id)
	if errors.Is(err, callhistory.ErrNotFound) {
		writeProblem(w, Problem{Status: 404, Title: "Not found", Detail: "no call with this id in the workspace's history"})
		return nil
	}
	if err != nil {
		a.log.Warn("api: call history read failed", "err", err)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "State store unavailable", Detail: "the call history could not be read; retry"})
		return nil
	}
	writeJSON(w, 200, c)
	return nil
}

// wantsCSV reports whether the Accept header prefers text/csv to JSON.
func wantsCSV(r *http.Request) bool {
	best, bestQ := "", -1.0
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				q = f
			}
		}
		if (mt == "text/csv" || mt == "application/json") && q > bestQ {
			best, bestQ = mt, q
		}
	}
	return best == "text/csv" && bestQ > 0
}
