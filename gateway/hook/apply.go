package hook

import (
	"errors"

	"github.com/callgate/callgate/routing"
)

// Applies reports whether a decision asks the routing hook: the number
// is ours and active and has a hook. A call the static assignment cannot
// route (no agent, no healthy endpoint) asks too: the hook may route it.
func Applies(d *routing.Decision) bool {
	if d.Hook == nil || d.Route == nil {
		return false
	}
	switch {
	case d.Outcome == routing.OutcomeRoute:
		return true
	case d.Outcome == routing.OutcomeReject:
		return d.Reason == routing.ReasonUnassigned || d.Reason == routing.ReasonNoEndpoint
	}
	return false
}

// RequestFor is the hook request of a decided inbound call. from and to
// are the calling and called numbers as delivered (E.164 when they are
// numbers); region is where the call will be routed (the first candidate's
// region, else the node's).
func RequestFor(d *routing.Decision, callID, from, to, region string) Request {
	r := Request{CallID: callID, Direction: "inbound", From: from, To: to, Number: d.Number,
		Origin: d.Origin, ForwardedFrom: d.ForwardedFrom, Carrier: d.Carrier, Region: region}
	if len(d.Candidates) > 0 && d.Candidates[0].Region != "" {
		r.Region = d.Candidates[0].Region
	}
	if d.Agent != nil {
		r.AgentID = d.Agent.ID
	}
	return r
}

// Result is what the hook made of a call.
type Result struct {
	Outcome string   // the hook outcome for the call's events (Outcome* values)
	Reject  bool     // refuse the call with Status and Reason
	Status  int      // 404, 480, 486, 603; 480 when the hook failed and on_failure is reject
	Reason  string   // reason phrase
	Headers []Header // route: add these to the forwarded INVITE
	// Retargeted: the hook chose the agent or endpoint (the decision's
	// candidates are the hook's, not the static assignment's).
	Retargeted bool
	Err        error // why the hook failed (for the log); nil on route and reject
}

// FailedReason is the reason phrase of a call refused because its hook
// failed and on_failure is "reject".
const FailedReason = "Routing hook failed"

// ErrForeignAgent: the hook named an agent its workspace does not have.
var ErrForeignAgent = errors.New("hook: agent_id is not an agent of the call's workspace")

// ErrForeignEndpoint: the hook named an endpoint of another workspace's agent.
var ErrForeignEndpoint = errors.New("hook: endpoint belongs to an agent of another workspace")

// foreignEndpoint reports whether uri is an endpoint of an agent of a
// workspace other than ws: a hook routes its own calls into its own space.
func foreignEndpoint(s *routing.Snapshot, ws, uri string) bool {
	found := false
	s.Agents(func(a *routing.Agent) {
		if found || a.Workspace == ws {
			return
		}
		for _, ep := range a.Endpoints {
			if ep.URI == uri {
				found = true
				return
			}
		}
	})
	return found
}

// Apply applies a hook's answer to decision d (of snapshot s, decided
// with policy p) and counts the outcome: route re-targets d (Retarget,
// RouteTo), reject refuses, and a failure (or an agent_id outside the
// workspace, an endpoint of another workspace's agent: invalid) follows the hook's on_failure: "static" leaves d as
// it was decided, "reject" refuses with 480.
func (c *Client) Apply(s *routing.Snapshot, d *routing.Decision, a Answer, p routing.Policy) Result {
	if a.Outcome == OutcomeRoute && a.AgentID != "" && !routing.Retarget(s, d, a.AgentID, p) {
		a = Answer{Outcome: OutcomeInvalid, Err: ErrForeignAgent}
	}
	if a.Outcome == OutcomeRoute && a.Endpoint != "" && foreignEndpoint(s, d.Workspace, a.Endpoint) {
		a = Answer{Outcome: OutcomeInvalid, Err: ErrForeignEndpoint}
	}
	c.metrics.Outcomes.WithLabelValues(a.Outcome).Inc()
	switch a.Outcome {
	case OutcomeRoute:
		if a.Endpoint != "" {
			routing.RouteTo(d, a.Endpoint)
		}
		return Result{Outcome: OutcomeRoute, Headers: a.Headers, Retargeted: a.AgentID != "" || a.Endpoint != ""}
	case OutcomeReject:
		reason := a.Reason
		if reason == "" {
			reason = defaultPhrase(a.Status)
		}
		return Result{Outcome: OutcomeReject, Reject: true, Status: a.Status, Reason: reason}
	}
	c.log.Info("hook: routing hook failed", "workspace", d.Workspace, "outcome", a.Outcome, "err", a.Err,
		"on_failure", onFailure(d.Hook))
	if d.Hook.RejectOnFailure() {
		return Result{Outcome: a.Outcome, Reject: true, Status: 480, Reason: FailedReason, Err: a.Err}
	}
	return Result{Outcome: a.Outcome, Err: a.Err}
}

func onFailure(h *routing.Hook) string {
	if h.RejectOnFailure() {
		return routing.HookOnFailureReject
	}
	return routing.HookOnFailureStatic
}

func defaultPhrase(status int) string {
	switch status {
	case 404:
		return "Not Found"
	case 486:
		return "Busy Here"
	case 603:
		return "Decline"
	}
	return "Temporarily Unavailable"
}
