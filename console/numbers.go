package console

import (
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/provisioning"
)

type numbersView struct {
	Numbers  []provisioning.Number
	Total    int
	Agents   []provisioning.Agent
	Filter   numbersFilter
	Carriers []string
	// Release is the number whose release dialog is open.
	Release *provisioning.Number
	// RowNumber is the row RowErr belongs to.
	RowNumber string
	RowErr    *formError
}

type numbersFilter struct {
	Agent, Carrier, Status string
}

// Query is the filter as a query string (links keep it).
func (f numbersFilter) Query() template.URL {
	v := url.Values{}
	if f.Agent != "" {
		v.Set("agent", f.Agent)
	}
	if f.Carrier != "" {
		v.Set("carrier", f.Carrier)
	}
	if f.Status != "" {
		v.Set("status", f.Status)
	}
	return template.URL(v.Encode())
}

func (c *Console) numbersView(r *http.Request, s *session) (numbersView, error) {
	q := r.URL.Query()
	v := numbersView{Filter: numbersFilter{Agent: q.Get("agent"), Carrier: q.Get("carrier"), Status: q.Get("status")}}
	all, err := c.svc.ListNumbers(r.Context(), s.principal())
	if err != nil {
		return v, err
	}
	v.Agents, err = c.svc.ListAgents(r.Context(), s.principal())
	if err != nil {
		return v, err
	}
	v.Total = len(all)
	seen := map[string]bool{}
	v.Numbers = []provisioning.Number{}
	for _, n := range all {
		if !seen[n.Carrier] {
			seen[n.Carrier] = true
			v.Carriers = append(v.Carriers, n.Carrier)
		}
		if v.Filter.Agent != "" && !(n.AgentID == v.Filter.Agent || v.Filter.Agent == "-" && n.AgentID == "") {
			continue
		}
		if v.Filter.Carrier != "" && n.Carrier != v.Filter.Carrier {
			continue
		}
		if v.Filter.Status != "" && n.Status != v.Filter.Status {
			continue
		}
		v.Numbers = append(v.Numbers, n)
	}
	if rel := q.Get("release"); rel != "" {
		for i := range all {
			if all[i].PhoneNumber == rel {
				v.Release = &all[i]
			}
		}
	}
	return v, nil
}

func (c *Console) numbersPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, err := c.numbersView(r, s)
	if err != nil {
		c.render(w, r, c.fail(r, err).Status, "numbers", c.fail(r, err), v)
		return
	}
	c.render(w, r, http.StatusOK, "numbers", nil, v)
}

// numberFailed shows the numbers page with err next to the row's field.
func (c *Console) numberFailed(w http.ResponseWriter, r *http.Request, s *session, number string, fe *formError) {
	v, err := c.numbersView(r, s)
	if err != nil {
		fe = c.fail(r, err)
	}
	v.RowNumber, v.RowErr = number, fe
	if fe.Status == 400 && len(fe.Fields) > 0 {
		c.render(w, r, fe.Status, "numbers", nil, v)
		return
	}
	c.render(w, r, fe.Status, "numbers", fe, v)
}

func (c *Console) back(r *http.Request) string {
	f := numbersFilter{Agent: r.PostFormValue("f_agent"), Carrier: r.PostFormValue("f_carrier"), Status: r.PostFormValue("f_status")}
	if q := f.Query(); q != "" {
		return Prefix + "numbers?" + string(q)
	}
	return Prefix + "numbers"
}

func (c *Console) assignAgent(w http.ResponseWriter, r *http.Request, s *session) {
	number := strings.TrimSpace(r.PathValue("number"))
	agent := r.PostFormValue("agent_id")
	if _, err := c.svc.UpdateNumber(r.Context(), s.principal(), number, provisioning.NumberPatch{AgentID: &agent}); err != nil {
		c.numberFailed(w, r, s, number, c.fail(r, err))
		return
	}
	seeOther(w, r, c.back(r), "assigned", number)
}

func (c *Console) setRegion(w http.ResponseWriter, r *http.Request, s *session) {
	number := strings.TrimSpace(r.PathValue("number"))
	region := r.PostFormValue("voice_region")
	if _, err := c.svc.UpdateNumber(r.Context(), s.principal(), number, provisioning.NumberPatch{VoiceRegion: &region}); err != nil {
		c.numberFailed(w, r, s, number, c.fail(r, err))
		return
	}
	seeOther(w, r, c.back(r), "region", number)
}

func (c *Console) release(w http.ResponseWriter, r *http.Request, s *session) {
	number := strings.TrimSpace(r.PathValue("number"))
	err := c.svc.Release(r.Context(), s.principal(), number)
	var fe *formError
	if err != nil {
		fe = c.fail(r, err)
	}
	c.record(r, s, audit.ActionNumberRelease, number, fe, "console")
	if fe != nil {
		c.numberFailed(w, r, s, number, fe)
		return
	}
	seeOther(w, r, c.back(r), "released", number)
}
