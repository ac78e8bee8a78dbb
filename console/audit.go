package console

import (
	"net/http"

	"github.com/callgate/callgate/audit"
)

// record writes the audit record of an audited operation done in the
// console, with the action the API uses for the same operation.
func (c *Console) record(r *http.Request, s *session, action, target string, fe *formError, detail string) {
	if c.opts.Audit == nil {
		return
	}
	rec := audit.Record{
		Action: action, Target: target, KeyID: s.KeyID, RemoteAddr: sourceOf(r),
		Method: r.Method, Path: r.URL.Path, Actor: audit.ActorWorkspace, Workspace: s.Workspace,
		Status: http.StatusOK, Result: audit.ResultOK, Detail: detail,
	}
	if s.Admin {
		rec.Actor, rec.Workspace = audit.ActorAdmin, target
	}
	if fe != nil {
		rec.Status, rec.Result = fe.Status, audit.ResultFailed
		if rec.Detail != "" {
			rec.Detail += "; "
		}
		rec.Detail += fe.Detail
	}
	c.opts.Audit.Write(r.Context(), rec)
}

// auditAuthFailed records a failed console login (rate limited by the
// audit log as the API's failed key uses are).
func (c *Console) auditAuthFailed(r *http.Request, key string) {
	if c.opts.Audit == nil {
		return
	}
	c.opts.Audit.AuthFailed(r.Context(), audit.Record{
		Action: audit.ActionAuthFailed, Result: audit.ResultDenied, Actor: audit.ActorAnonymous,
		KeyID: keyID(trimKey(key)), RemoteAddr: sourceOf(r), Method: r.Method, Path: r.URL.Path,
		Status: http.StatusUnauthorized, Detail: "console login: the API key is not valid",
	})
}
