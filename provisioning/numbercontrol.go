package provisioning

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// Per-number call control bounds.
const (
	MaxNumberAgents  = 10
	MaxAgentWeight   = 1000
	MaxFallbackSteps = 5
)

// AgentWeight is one agent of a number that splits its calls by weight.
type AgentWeight struct {
	AgentID string `json:"agent_id"`
	Weight  int    `json:"weight"`
}

// FallbackStep is one step of a number's fallback chain: exactly one of
// agent_id, uri, number.
type FallbackStep struct {
	AgentID string `json:"agent_id,omitempty"`
	URI     string `json:"uri,omitempty"`
	Number  string `json:"number,omitempty"`
}

// hasControl reports whether the number has any per-call control.
func (n *Number) hasControl() bool {
	return len(n.Agents) > 0 || n.SMSAgentID != "" || len(n.Fallback) > 0 || n.RoutingHook != nil
}

// controlAgents lists the agents the number's control refers to (weighted
// agents, SMS agent, fallback agents).
func (n *Number) controlAgents() []string {
	var ids []string
	for _, a := range n.Agents {
		ids = append(ids, a.AgentID)
	}
	if n.SMSAgentID != "" {
		ids = append(ids, n.SMSAgentID)
	}
	for _, f := range n.Fallback {
		if f.AgentID != "" {
			ids = append(ids, f.AgentID)
		}
	}
	return ids
}

// usesAgent reports whether the number routes anything to agent id.
func (n *Number) usesAgent(id string) bool {
	return n.AgentID == id || slices.Contains(n.controlAgents(), id)
}

// routingControl is the data plane's view; nil for a plain number.
func (n *Number) routingControl() *routing.NumberControl {
	if !n.hasControl() {
		return nil
	}
	c := &routing.NumberControl{SMSAgentID: n.SMSAgentID, Hook: n.RoutingHook.routing()}
	for _, a := range n.Agents {
		c.Agents = append(c.Agents, routing.AgentWeight{AgentID: a.AgentID, Weight: a.Weight})
	}
	for _, f := range n.Fallback {
		c.Fallback = append(c.Fallback, routing.FallbackStep{AgentID: f.AgentID, URI: f.URI, Number: f.Number})
	}
	return c
}

// hasControlPatch reports whether the patch changes call control.
func (p *NumberPatch) hasControlPatch() bool {
	return p.Agents != nil || p.SMSAgentID != nil || p.Fallback != nil || p.RoutingHook != nil
}

// applyControl validates the call-control fields of patch and sets them
// on rec (agent_id is handled by the caller: setting it clears agents;
// setting agents makes agent_id the first of them).
func (s *Service) applyControl(ctx context.Context, ws string, rec *numberRecord, patch NumberPatch) error {
	v := &ValidationError{}
	var check []string // agents to confirm exist in the workspace
	if patch.Agents != nil && patch.AgentID != nil {
		v.Add("agents", "give agent_id (one agent) or agents (calls split by weight), not both")
		return v
	}
	if patch.AgentID != nil {
		rec.Agents = nil // the single-agent form replaces a split
	}
	if patch.Agents != nil {
		as := *patch.Agents
		if len(as) > MaxNumberAgents {
			v.Add("agents", "at most %d agents", MaxNumberAgents)
		}
		seen := map[string]bool{}
		for i, a := range as {
			f := "agents[" + strconv.Itoa(i) + "]"
			switch {
			case !ValidID(a.AgentID):
				v.Add(f+".agent_id", "not a valid agent id")
			case seen[a.AgentID]:
				v.Add(f+".agent_id", "agent %q is listed twice", a.AgentID)
			default:
				check = append(check, a.AgentID)
			}
			seen[a.AgentID] = true
			if a.Weight < 1 || a.Weight > MaxAgentWeight {
				v.Add(f+".weight", "must be between 1 and %d", MaxAgentWeight)
			}
		}
		if len(as) == 0 {
			rec.Agents = nil
		} else {
			rec.Agents = slices.Clone(as)
			rec.AgentID = as[0].AgentID
		}
	}
	if patch.SMSAgentID != nil {
		id := *patch.SMSAgentID
		if id != "" && !ValidID(id) {
			v.Add("sms_agent_id", "not a valid agent id")
		} else if id != "" {
			check = append(check, id)
		}
		rec.SMSAgentID = id
	}
	if patch.Fallback != nil {
		fs := *patch.Fallback
		if len(fs) > MaxFallbackSteps {
			v.Add("fallback", "at most %d steps", MaxFallbackSteps)
		}
		out := make([]FallbackStep, 0, len(fs))
		for i, st := range fs {
			f := "fallback[" + strconv.Itoa(i) + "]"
			set := 0
			for _, x := range []string{st.AgentID, st.URI, st.Number} {
				if x != "" {
					set++
				}
			}
			if set != 1 {
				v.Add(f, "give exactly one of agent_id, uri, number")
				continue
			}
			switch {
			case st.AgentID != "":
				if !ValidID(st.AgentID) {
					v.Add(f+".agent_id", "not a valid agent id")
				} else {
					check = append(check, st.AgentID)
				}
			case st.URI != "":
				uri, err := s.CheckEndpoint(st.URI)
				if err != nil {
					v.Add(f+".uri", "%v", err)
				}
				st.URI = uri
			default:
				e164, err := phone.Normalize(st.Number, "")
				switch {
				case err != nil || !phone.IsE164(e164):
					v.Add(f+".number", "must be an E.164 phone number such as +14155550100")
				case e164 == rec.PhoneNumber:
					v.Add(f+".number", "is this number itself: the call would loop")
				}
				st.Number = e164
			}
			out = append(out, st)
		}
		if len(out) == 0 {
			out = nil
		}
		rec.Fallback = out
	}
	if patch.RoutingHook != nil {
		rec.RoutingHook = applyHookPatch(v, "routing_hook", rec.RoutingHook, patch.RoutingHook)
	}
	if err := v.Err(); err != nil {
		return err
	}
	for _, id := range check {
		if err := s.assignableAgent(ctx, ws, id); err != nil {
			return err
		}
	}
	return nil
}

// confirmControl runs after rec (at rev) was written with new call
// control: if an agent it names is gone or going (a delete raced the
// patch, see agentdelete.go), the control is put back as it was in
// before and the reason returned.
func (s *Service) confirmControl(ctx context.Context, before, rec numberRecord, rev uint64) error {
	var cause error
	for _, id := range rec.controlAgents() {
		if cause = s.assignableAgent(ctx, rec.WorkspaceID, id); cause != nil {
			break
		}
	}
	if cause == nil {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	key := numberKey(rec.PhoneNumber)
	wrote, _ := json.Marshal(rec.Number)
	for attempt := 0; attempt < 50; attempt++ {
		if attempt > 0 {
			var cur numberRecord
			var err error
			if rev, err = getJSON(ctx, s.st.Numbers, key, &cur); err != nil {
				return cause
			}
			if now, _ := json.Marshal(cur.Number); string(now) != string(wrote) {
				return cause // changed meanwhile: that change was checked on its own
			}
			rec = cur
		}
		rec.AgentID, rec.Agents, rec.SMSAgentID, rec.Fallback, rec.RoutingHook = before.AgentID, before.Agents, before.SMSAgentID, before.Fallback, before.RoutingHook
		b, _ := json.Marshal(rec)
		_, err := s.st.Numbers.Update(ctx, key, b, rev)
		if err == nil || !isRevisionConflict(err) {
			return cause
		}
	}
	return cause
}
