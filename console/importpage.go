package console

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/provisioning"
)

type importView struct {
	Integrations []provisioning.Integration
	Agents       []provisioning.Agent
	// Selected is the integration whose numbers are listed.
	Selected *provisioning.Integration
	Numbers  []provisioning.ImportableNumber
	// New is the new-integration form as sent (secrets are not echoed).
	New struct{ Name, Carrier, AccountSID string }
	// NewErr is the new-integration form's error.
	NewErr  *formError
	Mode    string
	Checked map[string]bool
	Results []provisioning.ImportResult
	OK      int
}

func (c *Console) importView(r *http.Request, s *session, id string) (importView, *formError) {
	v := importView{Mode: provisioning.WebhookOutboundOnly, Checked: map[string]bool{}}
	v.New.Carrier = "twilio"
	var err error
	if v.Integrations, err = c.svc.ListIntegrations(r.Context(), s.principal()); err != nil {
		return v, c.fail(r, err)
	}
	if v.Agents, err = c.svc.ListAgents(r.Context(), s.principal()); err != nil {
		return v, c.fail(r, err)
	}
	if id == "" {
		return v, nil
	}
	it, err := c.svc.GetIntegration(r.Context(), s.principal(), id)
	if err != nil {
		return v, c.fail(r, err)
	}
	v.Selected = &it
	if v.Numbers, err = c.svc.IntegrationNumbers(r.Context(), s.principal(), id); err != nil {
		return v, c.fail(r, err)
	}
	return v, nil
}

func (c *Console) importPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, fe := c.importView(r, s, r.URL.Query().Get("integration"))
	status := http.StatusOK
	if fe != nil {
		status = fe.Status
	}
	c.render(w, r, status, "import", fe, v)
}

// createIntegration validates the credentials at the carrier and saves
// them (provisioning.Service.CreateIntegration: nothing is saved when the
// carrier refuses them), then lists the account's numbers.
func (c *Console) createIntegration(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostFormValue
	in := provisioning.IntegrationInput{Name: strings.TrimSpace(f("name")), Carrier: f("carrier"), Credentials: map[string]string{}}
	switch in.Carrier {
	case "twilio":
		in.Credentials["account_sid"] = strings.TrimSpace(f("account_sid"))
		in.Credentials["auth_token"] = strings.TrimSpace(f("auth_token"))
	case "telnyx":
		in.Credentials["api_key"] = strings.TrimSpace(f("api_key"))
		if id := strings.TrimSpace(f("connection_id")); id != "" {
			in.Credentials["connection_id"] = id
		}
	}
	it, err := c.svc.CreateIntegration(r.Context(), s.principal(), in)
	var fe *formError
	if err != nil {
		fe = c.fail(r, err)
	}
	c.record(r, s, audit.ActionIntegrationCreate, it.ID, fe, "console")
	if fe != nil {
		v, _ := c.importView(r, s, "")
		v.New.Name, v.New.Carrier, v.New.AccountSID = in.Name, in.Carrier, in.Credentials["account_sid"]
		v.NewErr = fe
		c.render(w, r, fe.Status, "import", nil, v)
		return
	}
	seeOther(w, r, Prefix+"import?integration="+it.ID, "integration", it.Name)
}

// doImport imports the ticked numbers (provisioning.Service.Import) and
// shows the result of each.
func (c *Console) doImport(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PostFormValue("integration")
	req := provisioning.ImportRequest{PhoneNumbers: r.PostForm["phone_numbers"], WebhookMode: r.PostFormValue("webhook_mode"), AgentID: r.PostFormValue("agent_id")}
	res, err := c.svc.Import(r.Context(), s.principal(), id, req)
	var fe *formError
	if err != nil {
		fe = c.fail(r, err)
	}
	ok := 0
	for _, x := range res {
		if x.Status == "imported" {
			ok++
		}
	}
	if c.opts.Audit != nil {
		detail := "console; imported " + strconv.Itoa(ok) + " of " + strconv.Itoa(len(res))
		c.record(r, s, audit.ActionNumberImport, id, fe, detail)
	}
	v, vfe := c.importView(r, s, id)
	if fe == nil {
		fe = vfe
	}
	v.Mode = req.WebhookMode
	if v.Mode == "" {
		v.Mode = provisioning.WebhookOutboundOnly
	}
	for _, n := range req.PhoneNumbers {
		v.Checked[n] = true
	}
	v.Results, v.OK = res, ok
	status := http.StatusOK
	if fe != nil {
		status = fe.Status
	}
	c.render(w, r, status, "import", fe, v)
}
