package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/provisioning"
)

// listAudit serves GET /v1/audit (admin key): audit records, newest first,
// filtered by workspace and action, paged with before.
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Audit == nil {
		writeProblem(w, Problem{Status: http.StatusNotImplemented, Title: "No audit log", Detail: "this gateway runs without an audit log"})
		return nil
	}
	q := r.URL.Query()
	v := &provisioning.ValidationError{}
	var query audit.Query
	for k := range q {
		switch k {
		case "workspace", "action", "limit", "before":
		default:
			v.Add(k, "unknown query parameter (workspace, action, limit, before)")
		}
	}
	if s := q.Get("workspace"); s != "" {
		if !provisioning.ValidID(s) {
			v.Add("workspace", "not a workspace id")
		}
		query.Workspace = s
	}
	if s := q.Get("action"); s != "" {
		if !audit.KnownAction(s) {
			v.Add("action", "unknown action; one of %s", strings.Join(audit.Actions, ", "))
		}
		query.Action = s
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > audit.MaxLimit {
			v.Add("limit", "must be an integer between 1 and %d", audit.MaxLimit)
		}
		query.Limit = n
	}
	if s := q.Get("before"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n < 1 {
			v.Add("before", "must be a positive integer (a record's seq, from next_before)")
		}
		query.Before = n
	}
	if err := v.Err(); err != nil {
		return err
	}
	page, err := a.opts.Audit.List(r.Context(), query)
	if err != nil {
		a.log.Warn("api: audit read failed", "err", err)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "State store unavailable", Detail: "the audit stream could not be read; retry"})
		return nil
	}
	var next *uint64
	if page.NextBefore > 0 {
		next = &page.NextBefore
	}
	writeJSON(w, 200, map[string]any{"records": page.Records, "next_before": next})
	return nil
}
