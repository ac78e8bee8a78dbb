package console

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/provisioning"
)

type workspaceRow struct {
	provisioning.Workspace
	Balance int64
}

type adminView struct {
	Workspaces []workspaceRow
	// Created is a new workspace's key, shown once.
	Created    *createdWorkspace
	Form       struct{ ID, Name, Credits string }
	FormErr    *formError
	TopUp      struct{ Workspace, Amount, Reason string }
	TopUpErr   *formError
	Idempotent string
}

type createdWorkspace struct {
	ID, Key string
}

func (c *Console) adminView(r *http.Request) (adminView, *formError) {
	v := adminView{Idempotent: randomHex(16)}
	wss, err := c.svc.ListWorkspaces(r.Context())
	if err != nil {
		return v, c.fail(r, err)
	}
	for _, ws := range wss {
		bal, err := c.svc.Balance(r.Context(), ws.ID)
		if err != nil {
			return v, c.fail(r, err)
		}
		v.Workspaces = append(v.Workspaces, workspaceRow{ws, bal})
	}
	return v, nil
}

func (c *Console) adminPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, fe := c.adminView(r)
	status := http.StatusOK
	if fe != nil {
		status = fe.Status
	}
	c.render(w, r, status, "admin", fe, v)
}

// createWorkspace creates a workspace (provisioning.Service.CreateWorkspace)
// and shows its API key once.
func (c *Console) createWorkspace(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostFormValue
	id, name := strings.TrimSpace(f("id")), strings.TrimSpace(f("name"))
	var credits int64
	var err error
	if cs := strings.TrimSpace(f("credits")); cs != "" {
		credits, err = strconv.ParseInt(cs, 10, 64)
		if err != nil {
			v := &provisioning.ValidationError{}
			v.Add("credits", "must be a whole number of credits")
			err = v
		}
	}
	var key string
	if err == nil {
		_, key, err = c.svc.CreateWorkspace(r.Context(), id, name, credits)
	}
	var fe *formError
	if err != nil {
		fe = c.fail(r, err)
	}
	c.record(r, s, audit.ActionWorkspaceCreate, id, fe, "console")
	v, vfe := c.adminView(r)
	if fe != nil {
		v.Form.ID, v.Form.Name, v.Form.Credits = id, name, f("credits")
		v.FormErr = fe
		c.render(w, r, fe.Status, "admin", vfe, v)
		return
	}
	v.Created = &createdWorkspace{ID: id, Key: key}
	c.render(w, r, http.StatusCreated, "admin", vfe, v)
}

// topUp adds credits (provisioning.Service.TopUpIdempotent, keyed by the
// form's idempotency key, so a resent form adds them once).
func (c *Console) topUp(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostFormValue
	ws, reason := strings.TrimSpace(f("workspace")), strings.TrimSpace(f("reason"))
	amount, err := strconv.ParseInt(strings.TrimSpace(f("amount")), 10, 64)
	if err != nil {
		v := &provisioning.ValidationError{}
		v.Add("amount", "must be a whole number of credits")
		err = v
	} else {
		_, err = c.svc.TopUpIdempotent(r.Context(), ws, amount, reason, f("idempotency_key"))
	}
	var fe *formError
	if err != nil {
		fe = c.fail(r, err)
	}
	c.record(r, s, audit.ActionCreditsTopUp, ws, fe, "console; amount "+strings.TrimSpace(f("amount")))
	if fe == nil {
		seeOther(w, r, Prefix+"admin", "topup", ws)
		return
	}
	v, vfe := c.adminView(r)
	v.TopUp.Workspace, v.TopUp.Amount, v.TopUp.Reason = ws, f("amount"), reason
	v.TopUpErr = fe
	c.render(w, r, fe.Status, "admin", vfe, v)
}

type auditView struct {
	Records    []audit.Record
	Workspace  string
	Action     string
	Actions    []string
	NextBefore uint64
	Available  bool
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	v := auditView{Workspace: q.Get("workspace"), Action: q.Get("action"), Actions: audit.Actions, Available: c.opts.Audit != nil}
	if c.opts.Audit == nil {
		c.render(w, r, http.StatusOK, "audit", nil, v)
		return
	}
	query := audit.Query{Limit: 50}
	fv := &provisioning.ValidationError{}
	if v.Workspace != "" {
		if !provisioning.ValidID(v.Workspace) {
			fv.Add("workspace", "not a workspace id")
		}
		query.Workspace = v.Workspace
	}
	if v.Action != "" {
		if !audit.KnownAction(v.Action) {
			fv.Add("action", "unknown action")
		}
		query.Action = v.Action
	}
	if b := q.Get("before"); b != "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil || n < 1 {
			fv.Add("before", "must be a positive integer")
		}
		query.Before = n
	}
	if err := fv.Err(); err != nil {
		c.render(w, r, http.StatusBadRequest, "audit", problemOf(err), v)
		return
	}
	page, err := c.opts.Audit.List(r.Context(), query)
	if err != nil {
		c.log.Warn("console: audit read failed", "err", err)
		c.render(w, r, http.StatusServiceUnavailable, "audit", &formError{Status: 503, Title: "State store unavailable", Detail: "the audit stream could not be read; retry"}, v)
		return
	}
	v.Records, v.NextBefore = page.Records, page.NextBefore
	c.render(w, r, http.StatusOK, "audit", nil, v)
}
