package routing

import "time"

// Call control inputs to a decision: weighted agents (in Decide), the
// routing hook that applies to a call, and how an edge re-targets a
// decision when the hook or a fallback step names another agent.

// Routing hook limits.
const (
	DefaultHookTimeout = 1500 * time.Millisecond
	MaxHookTimeout     = 5000 * time.Millisecond
)

// Timeout is the hook's answer deadline: TimeoutMS bounded to
// (0, MaxHookTimeout], DefaultHookTimeout when unset.
func (h *Hook) Timeout() time.Duration {
	if h == nil || h.TimeoutMS <= 0 {
		return DefaultHookTimeout
	}
	d := time.Duration(h.TimeoutMS) * time.Millisecond
	if d > MaxHookTimeout {
		return MaxHookTimeout
	}
	return d
}

// RejectOnFailure reports whether a failed hook refuses the call (else
// the call is routed as the static decision says).
func (h *Hook) RejectOnFailure() bool { return h != nil && h.OnFailure == HookOnFailureReject }

// hookOf is the routing hook of a number: its own override, else its
// workspace's.
func hookOf(s *Snapshot, r *Route) *Hook {
	if ctl := r.Number.Control; ctl != nil && ctl.Hook != nil && ctl.Hook.URL != "" {
		return ctl.Hook
	}
	if w := s.Workspace(r.Number.Workspace); w != nil && w.Hook != nil && w.Hook.URL != "" {
		return w.Hook
	}
	return nil
}

// PickWeighted returns the agent of ws that takes the call callID: the
// 64-bit FNV-1a hash of the Call-ID, modulo the total weight, falls in
// one agent's share. Agents with a weight below 1 take no calls; "" when
// no agent has weight. Deterministic: the same Call-ID, the same agent.
func PickWeighted(ws []AgentWeight, callID string) string {
	total := 0
	for _, w := range ws {
		if w.Weight > 0 {
			total += w.Weight
		}
	}
	if total == 0 {
		return ""
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(callID); i++ {
		h ^= uint64(callID[i])
		h *= 1099511628211
	}
	// mix the high bits in: FNV's low bits are weak for similar ids
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	n := int(h % uint64(total))
	for _, w := range ws {
		if w.Weight <= 0 {
			continue
		}
		if n < w.Weight {
			return w.AgentID
		}
		n -= w.Weight
	}
	return ws[len(ws)-1].AgentID
}

// Fallback is the number's fallback chain (nil when it has none).
func (d *Decision) Fallback() []FallbackStep {
	if d.Route == nil || d.Route.Number.Control == nil {
		return nil
	}
	return d.Route.Number.Control.Fallback
}

// Retarget points a decision of a known, active number at agent id of
// the same workspace (a routing hook's answer): the agent, its media mode
// and its healthy endpoints. false (d unchanged) when the workspace has
// no such agent; an agent without a healthy endpoint leaves d rejected
// with ReasonNoEndpoint.
func Retarget(s *Snapshot, d *Decision, id string, p Policy) bool {
	if d.Route == nil || id == "" {
		return false
	}
	a, ok := s.Agent(d.Workspace, id)
	if !ok || a.Workspace != d.Workspace {
		return false
	}
	r := &Route{Number: d.Route.Number, Agent: a}
	d.Route, d.Agent = r, a
	d.Media = MediaDirect
	if a.Media == MediaRelay || (a.Media == "" && p.Media == MediaRelay) {
		d.Media = MediaRelay
	}
	d.Candidates = AppendCandidates(d.Candidates[:0], r, p.Health)
	if len(d.Candidates) == 0 {
		d.Outcome, d.Reason = OutcomeReject, ReasonNoEndpoint
		return true
	}
	d.Outcome, d.Reason = OutcomeRoute, ReasonNone
	return true
}

// RouteTo points a decision of a known number at one endpoint (a routing
// hook's "endpoint" answer, already validated like an agent endpoint).
// The agent, if any, stays for the headers and events.
func RouteTo(d *Decision, uri string) {
	region := ""
	if len(d.Candidates) > 0 {
		region = d.Candidates[0].Region
	}
	d.Candidates = append(d.Candidates[:0], Endpoint{Region: region, URI: uri})
	d.Outcome, d.Reason = OutcomeRoute, ReasonNone
}

// FallbackEndpoints returns where fallback step st of the decided call
// goes: another agent of the workspace (its healthy endpoints, in
// candidate order) or a SIP URI. A Number step is the edge's (outbound
// egress through the number's carrier): nil here. The agent is returned
// when the step names one.
func FallbackEndpoints(s *Snapshot, d *Decision, st FallbackStep, h Health) ([]Endpoint, *Agent) {
	switch {
	case st.AgentID != "":
		if d.Route == nil {
			return nil, nil
		}
		a, ok := s.Agent(d.Workspace, st.AgentID)
		if !ok || a.Workspace != d.Workspace {
			return nil, nil
		}
		r := &Route{Number: d.Route.Number, Agent: a}
		return AppendCandidates(nil, r, h), a
	case st.URI != "":
		return []Endpoint{{URI: st.URI}}, nil
	}
	return nil, nil
}
