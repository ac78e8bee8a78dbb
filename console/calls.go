package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning"
)

// callsPageSize is how many calls a Calls page shows (a variable for the
// pagination test).
var callsPageSize = 25

// callsFilter is the Calls page's filter form as sent.
type callsFilter struct {
	Direction, Outcome, Number, Agent string
}

// query is the filter as URL parameters (for the next-page link).
func (f callsFilter) query() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"direction": f.Direction, "outcome": f.Outcome, "number": f.Number, "agent": f.Agent} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

type callsView struct {
	Calls    []callhistory.Call
	Filter   callsFilter
	Outcomes []string
	Agents   []provisioning.Agent
	// Next is the link to the next (older) page ("" on the last).
	Next string
	// First is set when this is a later page (a link back to the newest).
	First bool
	Live  liveView
}

// liveView is the part refreshed every few seconds: the workspace's
// calls in progress and its endpoints' health per region.
type liveView struct {
	Active      int64
	ActiveKnown bool
	Regions     []regionHealth
}

type regionHealth struct {
	Region             string
	Up, Down, Unprobed int
	AvgRTT             string
}

// callsFilterOf reads and checks the filter parameters as GET /v1/calls
// checks them (same fields, same messages).
func callsFilterOf(r *http.Request) (callsFilter, callhistory.Query, *provisioning.ValidationError) {
	q := r.URL.Query()
	f := callsFilter{Direction: q.Get("direction"), Outcome: q.Get("outcome"), Number: strings.TrimSpace(q.Get("number")), Agent: strings.TrimSpace(q.Get("agent"))}
	v := &provisioning.ValidationError{}
	query := callhistory.Query{Agent: f.Agent, Cursor: q.Get("cursor"), Limit: callsPageSize}
	switch f.Direction {
	case "", calls.Inbound, calls.Outbound:
		query.Direction = f.Direction
	default:
		v.Add("direction", "must be inbound or outbound")
	}
	if f.Outcome != "" {
		if !callhistory.KnownOutcome(f.Outcome) {
			v.Add("outcome", "unknown outcome; one of %s", strings.Join(callhistory.Outcomes, ", "))
		}
		query.Outcome = f.Outcome
	}
	if f.Number != "" {
		n, err := phone.Normalize(f.Number, "")
		if err != nil {
			v.Add("number", "not a phone number in E.164 (+ and country code)")
		}
		query.Number = n
	}
	if f.Agent != "" && !provisioning.ValidID(f.Agent) {
		v.Add("agent", "not an agent id")
	}
	return f, query, v
}

// callsPage lists the workspace's calls from the call history, newest
// first, filtered, a page at a time (the history's cursor).
func (c *Console) callsPage(w http.ResponseWriter, r *http.Request, s *session) {
	if r.Header.Get("HX-Request") == "true" && r.URL.Query().Get("part") == "live" {
		c.renderView(w, r, http.StatusOK, "calls", "live", view{S: s, Data: callsView{Live: c.live(r.Context(), s)}})
		return
	}
	f, query, ve := callsFilterOf(r)
	v := callsView{Filter: f, Outcomes: callhistory.Outcomes, Live: c.live(r.Context(), s), First: query.Cursor != ""}
	v.Agents, _ = c.svc.ListAgents(r.Context(), s.principal())
	if err := ve.Err(); err != nil {
		fe := c.fail(r, err)
		c.render(w, r, fe.Status, "calls", fe, v)
		return
	}
	if c.opts.Calls == nil {
		c.render(w, r, http.StatusNotImplemented, "calls", &formError{Status: 501, Title: "No call history", Detail: "this gateway runs without a call history"}, v)
		return
	}
	query.Workspace = s.Workspace
	page, err := c.opts.Calls.List(r.Context(), query)
	if errors.Is(err, callhistory.ErrBadCursor) {
		ve.Add("cursor", "not a cursor from a previous page")
		fe := c.fail(r, ve.Err())
		c.render(w, r, fe.Status, "calls", fe, v)
		return
	}
	if err != nil {
		c.log.Warn("console: call history read failed", "err", err)
		c.render(w, r, http.StatusServiceUnavailable, "calls", &formError{Status: 503, Title: "State store unavailable", Detail: "the call history could not be read; retry"}, v)
		return
	}
	v.Calls = page.Calls
	if page.Next != "" {
		nq := f.query()
		nq.Set("cursor", page.Next)
		v.Next = Prefix + "calls?" + nq.Encode()
	}
	c.render(w, r, http.StatusOK, "calls", nil, v)
}

// callPage shows one call of the workspace; another workspace's call id is 404.
func (c *Console) callPage(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	if c.opts.Calls == nil {
		c.renderStatus(w, r, http.StatusNotImplemented, "No call history", "This gateway runs without a call history.")
		return
	}
	if id == "" || len(id) > 1024 {
		c.renderStatus(w, r, http.StatusNotFound, "Not found", "No call with this id in the workspace's history.")
		return
	}
	call, err := c.opts.Calls.Get(r.Context(), s.Workspace, id)
	if errors.Is(err, callhistory.ErrNotFound) {
		c.renderStatus(w, r, http.StatusNotFound, "Not found", "No call with this id in the workspace's history.")
		return
	}
	if err != nil {
		c.log.Warn("console: call history read failed", "err", err)
		c.renderStatus(w, r, http.StatusServiceUnavailable, "State store unavailable", "The call history could not be read; retry.")
		return
	}
	c.render(w, r, http.StatusOK, "call", nil, call)
}

// live is the workspace's calls in progress (cluster-wide, as the
// limiter counts them) and the prober's view of its agents' endpoints,
// per region. Only the workspace's own endpoints are shown.
func (c *Console) live(ctx context.Context, s *session) liveView {
	var lv liveView
	if c.opts.ActiveCalls != nil {
		lv.Active, lv.ActiveKnown = c.opts.ActiveCalls(s.Workspace)
	}
	agents, err := c.svc.ListAgents(ctx, s.principal())
	if err != nil {
		return lv
	}
	health := map[string]EndpointHealth{}
	if c.opts.Health != nil {
		for _, h := range c.opts.Health() {
			health[h.Region+" "+h.URI] = h
		}
	}
	byRegion := map[string]*regionHealth{}
	rtt := map[string][]time.Duration{}
	for _, a := range agents {
		for _, ep := range a.Endpoints {
			rh := byRegion[ep.Region]
			if rh == nil {
				rh = &regionHealth{Region: ep.Region}
				byRegion[ep.Region] = rh
			}
			h, ok := health[ep.Region+" "+ep.URI]
			switch {
			case !ok || !h.Probed:
				rh.Unprobed++
			case h.Up:
				rh.Up++
				rtt[ep.Region] = append(rtt[ep.Region], h.RTT)
			default:
				rh.Down++
			}
		}
	}
	for reg, rh := range byRegion {
		if ds := rtt[reg]; len(ds) > 0 {
			var sum time.Duration
			for _, d := range ds {
				sum += d
			}
			avg := sum / time.Duration(len(ds))
			rh.AvgRTT = fmt.Sprintf("%.1f ms", float64(avg.Microseconds())/1000)
		}
		lv.Regions = append(lv.Regions, *rh)
	}
	sort.Slice(lv.Regions, func(i, j int) bool { return lv.Regions[i].Region < lv.Regions[j].Region })
	return lv
}

// lineTest is what the call history says of a business line: the last
// call that arrived forwarded from it.
type lineTest struct {
	Call *callhistory.Call
}

// A business line's test status looks at the newest lineTestCalls calls
// to its gateway number within lineTestWindow (bounded reads on every
// Forwarding page load).
const (
	lineTestCalls  = 200
	lineTestWindow = 30 * 24 * time.Hour
)

// forwardingTests finds, for each business line, the newest call among
// the recent calls to its gateway number that came forwarded from it.
// It reads one bounded page per gateway number; nil when the history
// cannot be read.
func (c *Console) forwardingTests(ctx context.Context, ws string, lines []provisioning.Forward) map[string]lineTest {
	if c.opts.Calls == nil || len(lines) == 0 {
		return nil
	}
	out := map[string]lineTest{}
	read := map[string][]callhistory.Call{}
	for _, l := range lines {
		cs, ok := read[l.GatewayNumber]
		if !ok {
			page, err := c.opts.Calls.List(ctx, callhistory.Query{Workspace: ws, Number: l.GatewayNumber, Direction: calls.Inbound,
				From: c.opts.Now().Add(-lineTestWindow), Limit: lineTestCalls})
			if err != nil {
				c.log.Warn("console: call history read failed", "err", err)
				return nil
			}
			cs = page.Calls
			read[l.GatewayNumber] = cs
		}
		t := lineTest{}
		for i := range cs {
			if cs[i].ForwardedFrom == l.BusinessNumber {
				t.Call = &cs[i]
				break
			}
		}
		out[l.BusinessNumber] = t
	}
	return out
}

func init() {
	funcs["seconds"] = func(s float64) string {
		d := time.Duration(s * float64(time.Second)).Round(time.Second)
		if d < time.Minute {
			return fmt.Sprintf("%ds", int(d.Seconds()))
		}
		return fmt.Sprintf("%dm %02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	funcs["setup"] = func(ms *float64) string {
		if ms == nil {
			return "—"
		}
		return fmt.Sprintf("%.0f ms", *ms)
	}
	funcs["pct"] = func(f float64) string { return fmt.Sprintf("%.1f%%", f*100) }
	funcs["fms"] = func(f float64) string { return fmt.Sprintf("%.1f ms", f) }
	funcs["ptime"] = func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	funcs["outcomeTitle"] = func(o string) string {
		return map[string]string{"answered": "Answered", "failed": "Failed", "busy": "Busy", "no_answer": "No answer",
			"rejected": "Rejected", "cancelled": "Cancelled", "in_progress": "In progress"}[o]
	}
	funcs["outcomeClass"] = func(o string) string {
		switch o {
		case callhistory.OutcomeAnswered:
			return "active"
		case callhistory.OutcomeInProgress, callhistory.OutcomeCancelled, callhistory.OutcomeNoAnswer, callhistory.OutcomeBusy:
			return "unknown"
		}
		return "suspended"
	}
	funcs["callURL"] = func(id string) string { return Prefix + "calls/" + url.PathEscape(id) }
}

func init() {
	funcs["ptr"] = func(t time.Time) *time.Time { return &t }
}
