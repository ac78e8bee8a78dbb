package routing

import (
	"fmt"
	"math"
	"testing"
)

const (
	cWeighted = "+12282009001" // w: agents a1 (weight 3), b2 (weight 1); static a1
	cHooked   = "+12282009002" // w: number hook override
	cPlain    = "+12282009003" // w: workspace hook
	cOther    = "+12282009004" // w2: no hook
)

func controlSnapshot() *Snapshot {
	b := NewBuilder()
	eps := []Endpoint{{Region: "eu", URI: "sip:a@127.0.0.1:5091"}}
	b.AddAgent(Agent{ID: "a1", Workspace: "w", Endpoints: eps})
	b.AddAgent(Agent{ID: "b2", Workspace: "w", Endpoints: []Endpoint{{Region: "us", URI: "sip:b@127.0.0.1:5092"}}, Media: MediaRelay})
	b.AddAgent(Agent{ID: "x9", Workspace: "w2", Endpoints: []Endpoint{{Region: "us", URI: "sip:x@127.0.0.1:5099"}}})
	b.AddNumber(Number{E164: cWeighted, Workspace: "w", Status: StatusActive, AgentID: "a1",
		Control: &NumberControl{Agents: []AgentWeight{{AgentID: "a1", Weight: 3}, {AgentID: "b2", Weight: 1}}}})
	b.AddNumber(Number{E164: cHooked, Workspace: "w", Status: StatusActive, AgentID: "a1",
		Control: &NumberControl{Hook: &Hook{URL: "http://127.0.0.1:1/number", TimeoutMS: 9000}}})
	b.AddNumber(Number{E164: cPlain, Workspace: "w", Status: StatusActive, AgentID: "a1"})
	b.AddNumber(Number{E164: cOther, Workspace: "w2", Status: StatusActive, AgentID: "x9"})
	b.AddWorkspace(Workspace{ID: "w", Hook: &Hook{URL: "http://127.0.0.1:1/ws", OnFailure: HookOnFailureReject}})
	return b.Build()
}

// 1,000 calls to a number that splits 3:1 land within 5% of the split,
// and a Call-ID always lands on the same agent.
func TestDecideWeightedAgents(t *testing.T) {
	snap := controlSnapshot()
	count := map[string]int{}
	first := map[string]string{}
	const n = 1000
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%08x-call-%d@carrier.example", i*7919, i)
		d := Decide(snap, &Call{Called: cWeighted, CallID: id}, Policy{})
		if d.Outcome != OutcomeRoute {
			t.Fatalf("call %d: outcome %v %v", i, d.Outcome, d.Reason)
		}
		count[d.Agent.ID]++
		first[id] = d.Agent.ID
		if d.Route.Agent != d.Agent || d.Candidates[0].URI != d.Agent.Endpoints[0].URI {
			t.Fatalf("call %d: route/candidates not those of agent %s: %+v", i, d.Agent.ID, d.Candidates)
		}
		if d.Agent.ID == "b2" && d.Media != MediaRelay {
			t.Fatalf("call %d: agent b2's media mode not applied", i)
		}
	}
	if got, want := float64(count["a1"])/n, 0.75; math.Abs(got-want) > 0.05 {
		t.Errorf("a1 took %.3f of calls, want %.2f±0.05 (%v)", got, want, count)
	}
	if got, want := float64(count["b2"])/n, 0.25; math.Abs(got-want) > 0.05 {
		t.Errorf("b2 took %.3f of calls, want %.2f±0.05 (%v)", got, want, count)
	}
	for id, ag := range first { // a retransmitted INVITE: same Call-ID
		if d := Decide(snap, &Call{Called: cWeighted, CallID: id}, Policy{}); d.Agent.ID != ag {
			t.Fatalf("Call-ID %s went to %s, then %s", id, ag, d.Agent.ID)
		}
	}
}

func TestPickWeighted(t *testing.T) {
	if got := PickWeighted([]AgentWeight{{AgentID: "a", Weight: 0}, {AgentID: "b", Weight: 0}}, "x"); got != "" {
		t.Errorf("no weight: %q, want none", got)
	}
	for i := 0; i < 100; i++ {
		if got := PickWeighted([]AgentWeight{{AgentID: "a", Weight: 0}, {AgentID: "b", Weight: 5}, {AgentID: "c", Weight: -3}}, fmt.Sprint(i)); got != "b" {
			t.Fatalf("only b has weight, got %q", got)
		}
	}
}

func TestDecideHookOverride(t *testing.T) {
	snap := controlSnapshot()
	if d := Decide(snap, &Call{Called: cHooked}, Policy{}); d.Hook == nil || d.Hook.URL != "http://127.0.0.1:1/number" {
		t.Errorf("number override: hook %+v", d.Hook)
	} else if d.Hook.Timeout() != MaxHookTimeout || d.Hook.RejectOnFailure() {
		t.Errorf("timeout %v (want capped at %v), reject %v", d.Hook.Timeout(), MaxHookTimeout, d.Hook.RejectOnFailure())
	}
	if d := Decide(snap, &Call{Called: cPlain}, Policy{}); d.Hook == nil || d.Hook.URL != "http://127.0.0.1:1/ws" {
		t.Errorf("workspace hook: %+v", d.Hook)
	} else if d.Hook.Timeout() != DefaultHookTimeout || !d.Hook.RejectOnFailure() {
		t.Errorf("timeout %v reject %v", d.Hook.Timeout(), d.Hook.RejectOnFailure())
	}
	if d := Decide(snap, &Call{Called: cOther}, Policy{}); d.Hook != nil {
		t.Errorf("w2 has no hook: %+v", d.Hook)
	}
}

// A hook (or fallback step) may name only an agent of the call's own
// workspace.
func TestRetargetStaysInWorkspace(t *testing.T) {
	snap := controlSnapshot()
	d := Decide(snap, &Call{Called: cPlain}, Policy{})
	if Retarget(snap, &d, "x9", Policy{}) {
		t.Fatal("agent x9 of workspace w2 accepted for a call of w")
	}
	if d.Agent.ID != "a1" || d.Candidates[0].URI != "sip:a@127.0.0.1:5091" {
		t.Fatalf("refused retarget changed the decision: %+v", d)
	}
	if !Retarget(snap, &d, "b2", Policy{}) || d.Agent.ID != "b2" || d.Route.Agent.ID != "b2" ||
		d.Candidates[0].URI != "sip:b@127.0.0.1:5092" || d.Media != MediaRelay || d.Outcome != OutcomeRoute {
		t.Fatalf("retarget to b2: %+v", d)
	}
	if eps, a := FallbackEndpoints(snap, &d, FallbackStep{AgentID: "x9"}, nil); eps != nil || a != nil {
		t.Errorf("fallback to another workspace's agent: %v %v", eps, a)
	}
	if eps, a := FallbackEndpoints(snap, &d, FallbackStep{AgentID: "a1"}, nil); len(eps) != 1 || a == nil || a.ID != "a1" {
		t.Errorf("fallback to a1: %v %v", eps, a)
	}
	RouteTo(&d, "sip:hook@127.0.0.1:5070")
	if d.Outcome != OutcomeRoute || len(d.Candidates) != 1 || d.Candidates[0].URI != "sip:hook@127.0.0.1:5070" {
		t.Errorf("RouteTo: %+v", d.Candidates)
	}
}
