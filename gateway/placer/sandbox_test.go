package placer

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
)

type sandboxRig struct {
	p   *Placer
	ev  *events
	m   *meter
	l   *limiter
	ag  *agent
	uac *UAC
}

func startSandbox(t *testing.T, pstnPort, agentCode int) *sandboxRig {
	t.Helper()
	ag := startAgent(t, agentCode)
	uac, err := NewUAC(UACConfig{TerminationURI: "sip:127.0.0.1:" + strconv.Itoa(pstnPort), RingTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := &sandboxRig{ev: &events{}, m: &meter{}, l: &limiter{}, ag: ag, uac: uac}
	r.p = New(Config{}, Deps{Table: table("sandbox", "", ag.uri), Events: r.ev, Usage: r.m, Limits: r.l, Sandbox: uac})
	t.Cleanup(r.p.Close)
	return r
}

func (r *sandboxRig) waitEnded(t *testing.T, id string) calls.Event {
	t.Helper()
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if k := r.ev.kinds(id); !slices.Contains(k, calls.Ended) {
			return fmt.Errorf("events %v", k)
		}
		return nil
	})
	return r.ev.last(id)
}

// TestSandboxCallConnectsCalleeToAgentAndRelaysCalleeBYE: the RFC 3725
// flow against a SIPp "PSTN" (which checks that its ACK carries the
// agent's answer) and a SIP agent (which gets the callee's offer); the
// callee's BYE reaches the agent; events, metering and limits follow.
func TestSandboxCallConnectsCalleeToAgentAndRelaysCalleeBYE(t *testing.T) {
	needSIPp(t)
	port := freeUDPPort(t)
	done := sipp(t, "pstn_answer_hangup.xml", port)
	r := startSandbox(t, port, 0)
	c, err := r.p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+442079460000", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != "queued" || c.Carrier != "sandbox" || !strings.HasPrefix(c.ID, "call_") {
		t.Fatalf("call %+v", c)
	}
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if _, _, byes := r.ag.snapshot(); byes != 1 {
			return fmt.Errorf("agent got %d BYEs", byes)
		}
		return nil
	})
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	offer, acked, _ := r.ag.snapshot()
	if !strings.Contains(offer, "s=pstn-offer") || !acked {
		t.Fatalf("agent: offer %q acked %v", offer, acked)
	}
	r.ag.mu.Lock()
	hdrs := r.ag.hdrs
	r.ag.mu.Unlock()
	if hdrs["x-callgate-number"] != "+12125550100" || hdrs["x-callgate-call-id"] != c.ID || hdrs["x-callgate-direction"] != "outbound" {
		t.Fatalf("agent headers %v", hdrs)
	}
	e := r.waitEnded(t, c.ID)
	if k := r.ev.kinds(c.ID); !slices.Equal(k, []string{calls.Started, calls.Answered, calls.Ended}) {
		t.Fatalf("events %v", k)
	}
	if e.Direction != calls.Outbound || e.Source != "api" || e.From != "+12125550100" || e.To != "+442079460000" ||
		e.Workspace != ws || e.Agent != "bot" || e.Number != "+12125550100" || e.Reason != "bye_callee" {
		t.Fatalf("ended event %+v", e)
	}
	if answered, ended := r.m.state(c.ID); !answered || ended != 1 {
		t.Fatalf("meter answered %v ended %d", answered, ended)
	}
	if r.l.n() != 0 || r.l.caps.MaxOutConcurrent != 3 {
		t.Fatalf("limiter active %d caps %+v", r.l.n(), r.l.caps)
	}
	if r.uac.Active() != 0 {
		t.Fatalf("%d calls left", r.uac.Active())
	}
}

// TestSandboxAgentBYEReachesCallee: the agent hangs up; the PSTN gets the
// BYE (SIPp's scenario waits for it).
func TestSandboxAgentBYEReachesCallee(t *testing.T) {
	needSIPp(t)
	port := freeUDPPort(t)
	done := sipp(t, "pstn_answer_wait_bye.xml", port)
	r := startSandbox(t, port, 0)
	c, err := r.p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !slices.Contains(r.ev.kinds(c.ID), calls.Answered) {
			return fmt.Errorf("not answered yet")
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.ag.hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if e := r.waitEnded(t, c.ID); e.Reason != "bye_agent" {
		t.Fatalf("ended %+v", e)
	}
	if answered, ended := r.m.state(c.ID); !answered || ended != 1 {
		t.Fatalf("meter answered %v ended %d", answered, ended)
	}
}

// TestSandboxBusyCalleeNeverRingsTheAgent: 486 from the PSTN ends the call
// (pstn_busy), the agent is never invited, nothing is metered as answered.
// The started event comes first even when publishing it is slow and the
// callee is busy at once (the call's legs start after it).
func TestSandboxBusyCalleeNeverRingsTheAgent(t *testing.T) {
	needSIPp(t)
	port := freeUDPPort(t)
	done := sipp(t, "pstn_busy.xml", port)
	r := startSandbox(t, port, 0)
	// longer than SIPp takes to answer 486, even to the INVITE's
	// retransmission if the first came before it listened
	r.ev.slowStarted = 2 * time.Second
	c, err := r.p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	e := r.waitEnded(t, c.ID)
	if k := r.ev.kinds(c.ID); strings.Join(k, " ") != "started ended" {
		t.Fatalf("events in the order %v, want started ended", k)
	}
	if e.Reason != "pstn_busy" {
		t.Fatalf("ended %+v", e)
	}
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if offer, _, _ := r.ag.snapshot(); offer != "" {
		t.Fatal("the agent was invited")
	}
	if answered, _ := r.m.state(c.ID); answered || r.l.n() != 0 {
		t.Fatalf("answered %v active %d", answered, r.l.n())
	}
}

// TestSandboxAgentRefusesHangsUpCallee: the agent answers 503; the callee
// (already answered) is ACKed and hung up.
func TestSandboxAgentRefusesHangsUpCallee(t *testing.T) {
	needSIPp(t)
	port := freeUDPPort(t)
	done := sipp(t, "pstn_answer_wait_bye.xml", port)
	r := startSandbox(t, port, 503)
	c, err := r.p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if e := r.waitEnded(t, c.ID); e.Reason != "agent_503" {
		t.Fatalf("ended %+v", e)
	}
	msg := <-done
	// SIPp's ACK check fails (no agent answer in it) but it must have got the BYE.
	_ = msg
	if answered, _ := r.m.state(c.ID); answered || r.l.n() != 0 {
		t.Fatalf("answered %v active %d", answered, r.l.n())
	}
}

// TestSandboxRingTimeoutCancelsTheCallee: a callee that only rings is
// CANCELled at the ring timeout (SIPp checks CANCEL, 487, ACK); the call
// ends pstn_no_answer and the agent is never invited.
func TestSandboxRingTimeoutCancelsTheCallee(t *testing.T) {
	needSIPp(t)
	port := freeUDPPort(t)
	done := sipp(t, "pstn_ring_cancel.xml", port)
	ag := startAgent(t, 0)
	uac, err := NewUAC(UACConfig{TerminationURI: "sip:127.0.0.1:" + strconv.Itoa(port), RingTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r := &sandboxRig{ev: &events{}, m: &meter{}, l: &limiter{}, ag: ag, uac: uac}
	r.p = New(Config{}, Deps{Table: table("sandbox", "", ag.uri), Events: r.ev, Usage: r.m, Limits: r.l, Sandbox: uac})
	t.Cleanup(r.p.Close)
	c, err := r.p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if e := r.waitEnded(t, c.ID); e.Reason != "pstn_no_answer" {
		t.Fatalf("ended %+v", e)
	}
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if offer, _, _ := ag.snapshot(); offer != "" || r.l.n() != 0 {
		t.Fatalf("agent invited %v, active %d", offer != "", r.l.n())
	}
}

// TestEndCallHangsUpBothLegs: calls.Ender ends an answered sandbox call
// (e.g. credits exhausted): BYE to the agent and to the callee.
func TestEndCallHangsUpBothLegs(t *testing.T) {
	needSIPp(t)
	port := freeUDPPort(t)
	done := sipp(t, "pstn_answer_wait_bye.xml", port)
	r := startSandbox(t, port, 0)
	var _ calls.Ender = r.p
	c, err := r.p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !slices.Contains(r.ev.kinds(c.ID), calls.Answered) {
			return fmt.Errorf("not answered yet")
		}
		return nil
	})
	if !r.p.EndCall(c.ID, "credits_exhausted") || r.p.EndCall("call_nope", "x") {
		t.Fatal("EndCall")
	}
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	if _, _, byes := r.ag.snapshot(); byes != 1 {
		t.Fatalf("agent BYEs %d", byes)
	}
	if e := r.waitEnded(t, c.ID); e.Reason != "credits_exhausted" {
		t.Fatalf("ended %+v", e)
	}
}

// TestSandboxAgentRingTimeoutCancelsTheAgent: an agent that only rings is
// CANCELled at the ring timeout and the answered callee is hung up.
func TestSandboxAgentRingTimeoutCancelsTheAgent(t *testing.T) {
	needSIPp(t)
	port := freeUDPPort(t)
	done := sipp(t, "pstn_answer_wait_bye.xml", port)
	ag := startAgent(t, 180)
	uac, err := NewUAC(UACConfig{TerminationURI: "sip:127.0.0.1:" + strconv.Itoa(port), RingTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ev, l := &events{}, &limiter{}
	p := New(Config{}, Deps{Table: table("sandbox", "", ag.uri), Events: ev, Limits: l, Sandbox: uac})
	t.Cleanup(p.Close)
	c, err := p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if e := ev.last(c.ID); e.Kind != calls.Ended {
			return fmt.Errorf("last event %q", e.Kind)
		}
		return nil
	})
	<-done // SIPp's ACK check fails (the ACK has no agent answer); it got the BYE
	ag.mu.Lock()
	cancelled := ag.cancelled
	ag.mu.Unlock()
	if e := ev.last(c.ID); e.Reason != "agent_no_answer" || !cancelled || l.n() != 0 {
		t.Fatalf("ended %+v, agent cancelled %v, active %d", e, cancelled, l.n())
	}
}
