package provisioning_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning"
)

// controlFixture: workspace acme with agents a, b, c and one number
// assigned to a; workspace other with agent x.
func controlFixture(t *testing.T) (*provisioning.Service, provisioning.Principal, string) {
	t.Helper()
	s, _ := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "acme", 1000)
	o := newWorkspace(t, s, "other", 0)
	mk := func(p provisioning.Principal, id string) {
		in := provisioning.AgentInput{ID: id, Name: id, Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:" + id + "@127.0.0.1:5090"}}}
		if _, err := s.CreateAgent(ctx, p, in); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		mk(p, id)
	}
	mk(o, "x")
	num := search(t, s, p, "228", 1)[0].PhoneNumber
	if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: num, AgentID: "a"}, ""); err != nil {
		t.Fatal(err)
	}
	return s, p, num
}

func TestNumberControlSetShowClear(t *testing.T) {
	s, p, num := controlFixture(t)
	ctx := context.Background()
	agents := []provisioning.AgentWeight{{AgentID: "b", Weight: 70}, {AgentID: "c", Weight: 30}}
	fallback := []provisioning.FallbackStep{{AgentID: "a"}, {URI: "SIP:Backup@Example.COM:5070;Transport=TCP"}, {Number: "+1 (415) 555-0100"}}
	n, err := s.UpdateNumber(ctx, p, num, provisioning.NumberPatch{Agents: &agents, SMSAgentID: ptr("c"), Fallback: &fallback,
		RoutingHook: []byte(`{"url":"https://hooks.example.com/n"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if n.AgentID != "b" || len(n.Agents) != 2 || n.SMSAgentID != "c" || n.RoutingHook == nil || n.RoutingHook.TimeoutMS != 1500 {
		t.Fatalf("after patch: %+v", n)
	}
	if f := n.Fallback; len(f) != 3 || f[1].URI != "sip:Backup@example.com:5070;transport=tcp" || f[2].Number != "+14155550100" {
		t.Fatalf("fallback not canonical: %+v", f)
	}
	got, err := s.GetNumber(ctx, p, num)
	if err != nil || asJSON(got) != asJSON(n) {
		t.Fatalf("GET shows %s, PATCH answered %s (%v)", asJSON(got), asJSON(n), err)
	}
	// The single-agent form clears the split; other control stays.
	n, err = s.UpdateNumber(ctx, p, num, provisioning.NumberPatch{AgentID: ptr("a")})
	if err != nil || n.AgentID != "a" || n.Agents != nil || n.SMSAgentID != "c" || len(n.Fallback) != 3 {
		t.Fatalf("agent_id after agents: %+v %v", n, err)
	}
	// Empty values clear; null hook removes.
	n, err = s.UpdateNumber(ctx, p, num, provisioning.NumberPatch{SMSAgentID: ptr(""), Fallback: &[]provisioning.FallbackStep{}, RoutingHook: []byte("null")})
	if err != nil || n.SMSAgentID != "" || n.Fallback != nil || n.RoutingHook != nil || n.AgentID != "a" {
		t.Fatalf("after clearing: %+v %v", n, err)
	}
}

func TestNumberControlInvalid(t *testing.T) {
	s, p, num := controlFixture(t)
	ctx := context.Background()
	many := make([]provisioning.AgentWeight, 11)
	for i := range many {
		many[i] = provisioning.AgentWeight{AgentID: "a" + strconv.Itoa(i), Weight: 1}
	}
	aw := func(ws ...provisioning.AgentWeight) *[]provisioning.AgentWeight { return &ws }
	fb := func(fs ...provisioning.FallbackStep) *[]provisioning.FallbackStep { return &fs }
	tests := []struct {
		name  string
		patch provisioning.NumberPatch
		field string // "" with kind: not a field error
		kind  error
	}{
		{"weight 0", provisioning.NumberPatch{Agents: aw(provisioning.AgentWeight{AgentID: "a", Weight: 0})}, "agents[0].weight", nil},
		{"weight 1001", provisioning.NumberPatch{Agents: aw(provisioning.AgentWeight{AgentID: "a", Weight: 1001})}, "agents[0].weight", nil},
		{"duplicate", provisioning.NumberPatch{Agents: aw(provisioning.AgentWeight{AgentID: "a", Weight: 1}, provisioning.AgentWeight{AgentID: "a", Weight: 2})}, "agents[1].agent_id", nil},
		{"eleven agents", provisioning.NumberPatch{Agents: &many}, "agents", nil},
		{"bad agent id", provisioning.NumberPatch{Agents: aw(provisioning.AgentWeight{AgentID: "A>", Weight: 1})}, "agents[0].agent_id", nil},
		{"another workspace's agent", provisioning.NumberPatch{Agents: aw(provisioning.AgentWeight{AgentID: "x", Weight: 1})}, "agent_id", nil},
		{"both forms", provisioning.NumberPatch{AgentID: ptr("a"), Agents: aw(provisioning.AgentWeight{AgentID: "b", Weight: 1})}, "agents", nil},
		{"sms agent unknown", provisioning.NumberPatch{SMSAgentID: ptr("nobody")}, "agent_id", nil},
		{"fallback two fields", provisioning.NumberPatch{Fallback: fb(provisioning.FallbackStep{AgentID: "a", Number: "+14155550100"})}, "fallback[0]", nil},
		{"fallback empty step", provisioning.NumberPatch{Fallback: fb(provisioning.FallbackStep{})}, "fallback[0]", nil},
		{"fallback bad uri", provisioning.NumberPatch{Fallback: fb(provisioning.FallbackStep{URI: "sip:a@b?x=y"})}, "fallback[0].uri", nil},
		{"fallback http uri", provisioning.NumberPatch{Fallback: fb(provisioning.FallbackStep{URI: "http://a"})}, "fallback[0].uri", nil},
		{"fallback bad number", provisioning.NumberPatch{Fallback: fb(provisioning.FallbackStep{Number: "12"})}, "fallback[0].number", nil},
		{"fallback to itself", provisioning.NumberPatch{Fallback: fb(provisioning.FallbackStep{Number: num})}, "fallback[0].number", nil},
		{"six steps", provisioning.NumberPatch{Fallback: fb(provisioning.FallbackStep{AgentID: "a"}, provisioning.FallbackStep{AgentID: "b"}, provisioning.FallbackStep{AgentID: "c"},
			provisioning.FallbackStep{AgentID: "a"}, provisioning.FallbackStep{AgentID: "b"}, provisioning.FallbackStep{AgentID: "c"})}, "fallback", nil},
		{"hook http", provisioning.NumberPatch{RoutingHook: []byte(`{"url":"http://example.com/"}`)}, "routing_hook.url", nil},
	}
	before, _ := s.GetNumber(ctx, p, num)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.UpdateNumber(ctx, p, num, tc.patch)
			if !errors.Is(err, provisioning.ErrInvalid) || !strings.Contains(strings.Join(fieldsOf(err), ","), tc.field) {
				t.Fatalf("err %v (fields %v); want 400 naming %s", err, fieldsOf(err), tc.field)
			}
			if after, _ := s.GetNumber(ctx, p, num); asJSON(after) != asJSON(before) {
				t.Fatalf("refused patch changed the number: %s -> %s", asJSON(before), asJSON(after))
			}
		})
	}
}

// An agent used only by a number's call control (split, SMS agent,
// fallback) cannot be deleted: 409 naming the number.
func TestDeleteAgentUsedByNumberControl(t *testing.T) {
	s, p, num := controlFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		agent string
		patch provisioning.NumberPatch
	}{
		{"b", provisioning.NumberPatch{Agents: &[]provisioning.AgentWeight{{AgentID: "a", Weight: 1}, {AgentID: "b", Weight: 1}}}},
		{"c", provisioning.NumberPatch{SMSAgentID: ptr("c")}},
		{"c", provisioning.NumberPatch{Fallback: &[]provisioning.FallbackStep{{AgentID: "c"}}}},
	} {
		if _, err := s.UpdateNumber(ctx, p, num, tc.patch); err != nil {
			t.Fatal(err)
		}
		err := s.DeleteAgent(ctx, p, tc.agent)
		if !errors.Is(err, provisioning.ErrConflict) || !strings.Contains(err.Error(), num) {
			t.Fatalf("delete agent %s used by %s: %v; want 409 naming the number", tc.agent, asJSON(tc.patch), err)
		}
		// Clear and retry the next case.
		if _, err := s.UpdateNumber(ctx, p, num, provisioning.NumberPatch{AgentID: ptr("a"), SMSAgentID: ptr(""), Fallback: &[]provisioning.FallbackStep{}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteAgent(ctx, p, "c"); err != nil {
		t.Fatalf("delete an agent no longer used: %v", err)
	}
}
