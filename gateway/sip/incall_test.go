package sip

import (
	"context"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

// inCallTable is relayTable with agent a1's in-call settings set by mod.
func inCallTable(mod func(*routing.Agent), eps ...routing.Endpoint) *routing.Table {
	b := routing.NewBuilder()
	a := routing.Agent{ID: "a1", Workspace: "w", Media: "relay", Endpoints: eps}
	mod(&a)
	b.AddAgent(a)
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

// An agent's media_timeout replaces the node's (30 s here): a silent
// call to it ends after about its 1 s, with BYE to both sides.
func TestAgentMediaTimeoutEndsSilentCall(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	mgr := newMediaManager(t, 31800, 31899) // media_timeout 30 s
	e := runEdge(t, inCallTable(func(a *routing.Agent) { a.MediaTimeout = time.Second }, agent.endpoint("eu")), nil,
		media.Anchor[MediaSession]{M: mgr})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	ds := carrier.answered(ctx, t, e)
	recv(t, agent.byes, "BYE at the agent")
	recv(t, carrier.byes, "BYE at the caller")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the call ended after %v: the node's 30 s, not the agent's 1 s", d)
	}
	en := e.events.waitEvent(t, calls.Ended, ds.InviteRequest.CallID().Value())
	if en.Reason != "media_timeout" {
		t.Fatalf("ended %q, want media_timeout", en.Reason)
	}
}
