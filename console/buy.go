package console

import (
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
)

type buyQuery struct {
	Source   string // "sandbox" or an integration id
	Country  string
	AreaCode string
	Type     string
	Voice    bool
	SMS      bool
	MMS      bool
}

func (q buyQuery) values() url.Values {
	v := url.Values{"source": {q.Source}, "country": {q.Country}, "area_code": {q.AreaCode}, "type": {q.Type}}
	if q.Voice {
		v.Set("voice", "on")
	}
	if q.SMS {
		v.Set("sms", "on")
	}
	if q.MMS {
		v.Set("mms", "on")
	}
	return v
}

// Query is the search as a query string.
func (q buyQuery) Query() template.URL { return template.URL(q.values().Encode()) }

// MoreQuery is the query of the next page.
func (q buyQuery) MoreQuery(token string) template.URL {
	v := q.values()
	v.Set("page_token", token)
	return template.URL(v.Encode())
}

// ConfirmQuery is the query that opens the purchase dialog for n.
func (q buyQuery) ConfirmQuery(n carrier.AvailableNumber) template.URL {
	v := q.values()
	v.Set("confirm", n.PhoneNumber)
	v.Set("cost", strconv.FormatInt(n.MonthlyCost, 10))
	v.Set("locality", n.Locality)
	v.Set("region", n.Region)
	v.Set("ntype", n.Type)
	return template.URL(v.Encode())
}

type buyView struct {
	Q            buyQuery
	Searched     bool
	Integrations []provisioning.Integration
	Agents       []provisioning.Agent
	Numbers      []carrier.AvailableNumber
	Next         string
	Balance      int64
	Confirm      *confirmView
}

type confirmView struct {
	Number      carrier.AvailableNumber
	Balance     int64
	After       int64
	Short       bool
	Idempotency string
	AgentID     string
	Err         *formError
}

func readBuyQuery(get func(string) string) buyQuery {
	q := buyQuery{Source: get("source"), Country: strings.ToUpper(strings.TrimSpace(get("country"))),
		AreaCode: strings.TrimSpace(get("area_code")), Type: get("type"),
		Voice: get("voice") != "", SMS: get("sms") != "", MMS: get("mms") != ""}
	if q.Source == "" {
		q.Source = "sandbox"
	}
	return q
}

func (q buyQuery) request(token string) provisioning.SearchRequest {
	req := provisioning.SearchRequest{Carrier: "sandbox"}
	if q.Source != "sandbox" {
		req.IntegrationID = q.Source
		req.Carrier = "" // resolved from the integration below
	}
	req.Country, req.AreaCode, req.Type, req.PageToken = q.Country, q.AreaCode, q.Type, token
	req.Features = carrier.Features{Voice: q.Voice, SMS: q.SMS, MMS: q.MMS}
	return req
}

// searchRequest resolves the carrier of an integration source.
func (c *Console) searchRequest(r *http.Request, s *session, q buyQuery, token string, its []provisioning.Integration) provisioning.SearchRequest {
	req := q.request(token)
	if req.Carrier == "" {
		req.Carrier = "twilio"
		for _, it := range its {
			if it.ID == q.Source {
				req.Carrier = it.Carrier
			}
		}
	}
	return req
}

func (c *Console) buyView(r *http.Request, s *session) (buyView, *formError) {
	get := r.URL.Query().Get
	v := buyView{Q: readBuyQuery(get)}
	var err error
	if v.Integrations, err = c.svc.ListIntegrations(r.Context(), s.principal()); err != nil {
		return v, c.fail(r, err)
	}
	if v.Agents, err = c.svc.ListAgents(r.Context(), s.principal()); err != nil {
		return v, c.fail(r, err)
	}
	if v.Balance, err = c.svc.Balance(r.Context(), s.Workspace); err != nil {
		return v, c.fail(r, err)
	}
	if get("country") == "" {
		if v.Q.Country == "" {
			v.Q.Country = "US"
		}
		return v, nil
	}
	v.Searched = true
	page, err := c.svc.Search(r.Context(), s.principal(), c.searchRequest(r, s, v.Q, get("page_token"), v.Integrations))
	if err != nil {
		return v, c.fail(r, err)
	}
	v.Numbers, v.Next = page.Numbers, page.NextPageToken
	if n := get("confirm"); n != "" {
		cost, _ := strconv.ParseInt(get("cost"), 10, 64)
		an := carrier.AvailableNumber{PhoneNumber: n, MonthlyCost: cost, Locality: get("locality"), Region: get("region"), Type: get("ntype")}
		// The carrier's own offer, when the number is on this page, is
		// what the dialog shows (the link's copy is only a fallback).
		for _, x := range v.Numbers {
			if x.PhoneNumber == n {
				an, cost = x, x.MonthlyCost
			}
		}
		v.Confirm = &confirmView{Number: an, Balance: v.Balance, After: v.Balance - cost, Short: cost > v.Balance, Idempotency: randomHex(16)}
	}
	return v, nil
}

func (c *Console) buyPage(w http.ResponseWriter, r *http.Request, s *session) {
	v, fe := c.buyView(r, s)
	status := http.StatusOK
	if fe != nil {
		status = fe.Status
	}
	c.render(w, r, status, "buy", fe, v)
}

// buyMore answers htmx's Refresh: the next page's rows and a new Refresh
// button (out of band).
func (c *Console) buyMore(w http.ResponseWriter, r *http.Request, s *session) {
	v, fe := c.buyView(r, s)
	if fe != nil {
		c.renderView(w, r, fe.Status, "buy", "more-error", view{S: s, Err: fe, Data: v})
		return
	}
	c.renderView(w, r, http.StatusOK, "buy", "more", view{S: s, Data: v})
}

// purchase buys through provisioning.Service.Purchase with the dialog's
// idempotency key (a second click or a resent form charges once). A
// failure (402, 409, ...) is shown in the dialog.
func (c *Console) purchase(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostFormValue
	q := readBuyQuery(f)
	its, err := c.svc.ListIntegrations(r.Context(), s.principal())
	if err != nil {
		c.render(w, r, c.fail(r, err).Status, "buy", c.fail(r, err), buyView{Q: q})
		return
	}
	sr := c.searchRequest(r, s, q, "", its)
	req := provisioning.PurchaseRequest{PhoneNumber: f("phone_number"), Carrier: sr.Carrier, IntegrationID: sr.IntegrationID, AgentID: f("agent_id")}
	n, err := c.svc.Purchase(r.Context(), s.principal(), req, f("idempotency_key"))
	var fe *formError
	if err != nil {
		fe = c.fail(r, err)
	}
	c.record(r, s, audit.ActionNumberPurchase, req.PhoneNumber, fe, "console")
	if fe == nil {
		seeOther(w, r, Prefix+"numbers", "purchased", n.PhoneNumber)
		return
	}
	// Show the search again with the dialog open and the error in it.
	v := buyView{Q: q, Searched: true, Integrations: its}
	v.Agents, _ = c.svc.ListAgents(r.Context(), s.principal())
	v.Balance, _ = c.svc.Balance(r.Context(), s.Workspace)
	if page, err := c.svc.Search(r.Context(), s.principal(), sr); err == nil {
		v.Numbers, v.Next = page.Numbers, page.NextPageToken
	}
	cost, _ := strconv.ParseInt(f("cost"), 10, 64)
	an := carrier.AvailableNumber{PhoneNumber: req.PhoneNumber, MonthlyCost: cost, Locality: f("locality"), Region: f("region"), Type: f("ntype")}
	v.Confirm = &confirmView{Number: an, Balance: v.Balance, After: v.Balance - cost, Short: cost > v.Balance,
		Idempotency: randomHex(16), AgentID: req.AgentID, Err: fe}
	c.render(w, r, fe.Status, "buy", nil, v)
}
