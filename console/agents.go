package console

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
)

type agentRow struct {
	provisioning.Agent
	Health  []endpointRow
	Numbers int
}

type endpointRow struct {
	Region, URI string
	Up, Probed  bool
	Known       bool
	RTTMillis   string
}

type agentsView struct {
	Agents []agentRow
	// Form is the create form as sent.
	Form agentForm
	// Delete is the agent whose delete dialog is open.
	Delete *agentRow
	// DeleteErr is the delete's error (409 when numbers still use it).
	DeleteErr *formError
}

type agentForm struct {
	ID, Name, Endpoints, Media, MessagingURL string
	Err                                      *formError
}

// EndpointsErr is every endpoint field's message (endpoints, endpoints[i].uri, ...).
func (f agentForm) EndpointsErr() string {
	if f.Err == nil {
		return ""
	}
	var msgs []string
	for k, m := range f.Err.Fields {
		if strings.HasPrefix(k, "endpoints") {
			msgs = append(msgs, humanEndpointField(k)+m)
		}
	}
	sortStrings(msgs)
	return strings.Join(msgs, "; ")
}

// humanEndpointField turns endpoints[0].uri into "line 1, URI: ".
func humanEndpointField(k string) string {
	var i int
	var part string
	if n, _ := fmt.Sscanf(strings.NewReplacer("[", " ", "]", " ", ".", " ").Replace(k), "endpoints %d %s", &i, &part); n == 2 {
		return fmt.Sprintf("line %d, %s: ", i+1, part)
	}
	return ""
}

// parseEndpoints reads the endpoints box: one "region uri" per line
// (blank lines and # comments skipped). A line with one word is a URI in
// region "default"; it is the provisioning rules that judge the values.
func parseEndpoints(text string) []provisioning.Endpoint {
	var out []provisioning.Endpoint
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		switch len(f) {
		case 1:
			out = append(out, provisioning.Endpoint{Region: "default", URI: f[0]})
		default:
			out = append(out, provisioning.Endpoint{Region: f[0], URI: strings.Join(f[1:], " ")})
		}
		if len(out) > 64 {
			break
		}
	}
	return out
}

func endpointsText(eps []routing.Endpoint) string {
	var b strings.Builder
	for _, ep := range eps {
		b.WriteString(ep.Region + " " + ep.URI + "\n")
	}
	return b.String()
}

func (c *Console) agentRows(r *http.Request, s *session) ([]agentRow, error) {
	agents, err := c.svc.ListAgents(r.Context(), s.principal())
	if err != nil {
		return nil, err
	}
	nums, err := c.svc.ListNumbers(r.Context(), s.principal())
	if err != nil {
		return nil, err
	}
	health := map[string]EndpointHealth{}
	if c.opts.Health != nil {
		for _, h := range c.opts.Health() {
			health[h.Region+" "+h.URI] = h
		}
	}
	rows := make([]agentRow, 0, len(agents))
	for _, a := range agents {
		row := agentRow{Agent: a}
		for _, n := range nums {
			if n.AgentID == a.ID {
				row.Numbers++
			}
		}
		for _, ep := range a.Endpoints {
			er := endpointRow{Region: ep.Region, URI: ep.URI}
			if h, ok := health[ep.Region+" "+ep.URI]; ok {
				er.Known, er.Up, er.Probed = true, h.Up, h.Probed
				er.RTTMillis = fmt.Sprintf("%.1f ms", float64(h.RTT.Microseconds())/1000)
			}
			row.Health = append(row.Health, er)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func (c *Console) agentsView(r *http.Request, s *session) (agentsView, *formError) {
	v := agentsView{Form: agentForm{Media: "direct"}}
	rows, err := c.agentRows(r, s)
	if err != nil {
		return v, c.fail(r, err)
	}
	v.Agents = rows
	if id := r.URL.Query().Get("delete"); id != "" {
		for i := range rows {
			if rows[i].ID == id {
				v.Delete = &rows[i]
			}
		}
	}
	return v, nil
}

func (c *Console) agentsPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, fe := c.agentsView(r, s)
	status := http.StatusOK
	if fe != nil {
		status = fe.Status
	}
	if r.Header.Get("HX-Request") == "true" && r.URL.Query().Get("part") == "health" {
		c.renderView(w, r, status, "agents", "health", view{S: s, Err: fe, Data: v})
		return
	}
	c.render(w, r, status, "agents", fe, v)
}

func readAgentForm(r *http.Request) (agentForm, provisioning.AgentInput) {
	f := r.PostFormValue
	form := agentForm{ID: strings.TrimSpace(f("id")), Name: f("name"), Endpoints: f("endpoints"), Media: f("media"), MessagingURL: strings.TrimSpace(f("messaging_url"))}
	in := provisioning.AgentInput{ID: form.ID, Name: form.Name, Endpoints: parseEndpoints(form.Endpoints), Media: form.Media, MessagingURL: form.MessagingURL}
	return form, in
}

func (c *Console) createAgent(w http.ResponseWriter, r *http.Request, s *session) {
	form, in := readAgentForm(r)
	a, err := c.svc.CreateAgent(r.Context(), s.principal(), in)
	if err != nil {
		v, vfe := c.agentsView(r, s)
		form.Err = c.fail(r, err)
		v.Form = form
		if vfe != nil {
			c.render(w, r, vfe.Status, "agents", vfe, v)
			return
		}
		c.render(w, r, form.Err.Status, "agents", nil, v)
		return
	}
	seeOther(w, r, Prefix+"agents", "agent", a.ID)
}

func (c *Console) agentPage(w http.ResponseWriter, r *http.Request, s *session) {
	a, err := c.svc.GetAgent(r.Context(), s.principal(), r.PathValue("id"))
	if err != nil {
		fe := c.fail(r, err)
		c.renderStatus(w, r, fe.Status, fe.Title, fe.Detail)
		return
	}
	c.render(w, r, http.StatusOK, "agent", nil, agentForm{ID: a.ID, Name: a.Name, Endpoints: endpointsText(a.Endpoints), Media: mediaOrDefault(a.Media), MessagingURL: a.MessagingURL})
}

func mediaOrDefault(m string) string {
	if m == "" {
		return "direct"
	}
	return m
}

func (c *Console) updateAgent(w http.ResponseWriter, r *http.Request, s *session) {
	form, in := readAgentForm(r)
	form.ID, in.ID = r.PathValue("id"), ""
	if _, err := c.svc.UpdateAgent(r.Context(), s.principal(), form.ID, in); err != nil {
		form.Err = c.fail(r, err)
		if len(form.Err.Fields) == 0 {
			c.render(w, r, form.Err.Status, "agent", form.Err, form)
			return
		}
		c.render(w, r, form.Err.Status, "agent", nil, form)
		return
	}
	seeOther(w, r, Prefix+"agents", "agent", form.ID)
}

// deleteAgent deletes through provisioning.Service.DeleteAgent; a 409
// (numbers still assigned) is explained in the dialog.
func (c *Console) deleteAgent(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	err := c.svc.DeleteAgent(r.Context(), s.principal(), id)
	if err == nil {
		seeOther(w, r, Prefix+"agents", "deleted", id)
		return
	}
	fe := c.fail(r, err)
	if errors.Is(err, provisioning.ErrConflict) {
		fe.Detail += ". Assign its numbers to another agent (or release them) on the Numbers page first; the agent was not deleted."
	}
	v, vfe := c.agentsView(r, s)
	if vfe != nil {
		fe = vfe
	}
	for i := range v.Agents {
		if v.Agents[i].ID == id {
			v.Delete = &v.Agents[i]
		}
	}
	v.DeleteErr = fe
	c.render(w, r, fe.Status, "agents", nil, v)
}
