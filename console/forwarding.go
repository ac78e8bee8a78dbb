package console

import (
	"net/http"
	"strings"

	"github.com/callgate/callgate/provisioning"
)

type forwardingView struct {
	Lines   []provisioning.Forward
	Numbers []provisioning.Number
	Form    struct{ Business, Gateway string }
	FormErr *formError
	// Tests is each business line's last forwarded call (calls.go).
	Tests map[string]lineTest
}

func (c *Console) forwardingView(r *http.Request, s *session) (forwardingView, *formError) {
	var v forwardingView
	var err error
	if v.Lines, err = c.svc.ListForwarding(r.Context(), s.principal()); err != nil {
		return v, c.fail(r, err)
	}
	if v.Numbers, err = c.svc.ListNumbers(r.Context(), s.principal()); err != nil {
		return v, c.fail(r, err)
	}
	v.Tests = c.forwardingTests(r.Context(), s.Workspace, v.Lines)
	return v, nil
}

func (c *Console) forwardingPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, fe := c.forwardingView(r, s)
	status := http.StatusOK
	if fe != nil {
		status = fe.Status
	}
	c.render(w, r, status, "forwarding", fe, v)
}

func (c *Console) createForwarding(w http.ResponseWriter, r *http.Request, s *session) {
	b, g := strings.TrimSpace(r.PostFormValue("business_number")), r.PostFormValue("gateway_number")
	f, err := c.svc.CreateForwarding(r.Context(), s.principal(), b, g)
	if err != nil {
		v, vfe := c.forwardingView(r, s)
		v.Form.Business, v.Form.Gateway = b, g
		v.FormErr = c.fail(r, err)
		c.render(w, r, v.FormErr.Status, "forwarding", vfe, v)
		return
	}
	seeOther(w, r, Prefix+"forwarding", "forwarding", f.BusinessNumber)
}

func (c *Console) deleteForwarding(w http.ResponseWriter, r *http.Request, s *session) {
	n := strings.TrimSpace(r.PathValue("number"))
	if err := c.svc.DeleteForwarding(r.Context(), s.principal(), n); err != nil {
		v, _ := c.forwardingView(r, s)
		fe := c.fail(r, err)
		c.render(w, r, fe.Status, "forwarding", fe, v)
		return
	}
	seeOther(w, r, Prefix+"forwarding", "unforward", n)
}
