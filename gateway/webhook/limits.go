package webhook

import (
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// Workspace limits on the webhook edge (issue 13): a new voice call is
// checked against its workspace's max_concurrent_calls and
// max_calls_per_second (counted across the cluster) and, over a limit,
// refused as busy in the carrier's terms (TwiML <Reject reason="busy"/>,
// Telnyx Call Control reject with USER_BUSY).
//
// A webhook call counts in the workspace's call rate. It does not hold a
// concurrent-call place itself: with direct media callgate does not see it
// end. Calls that the webhook sends through the SIP edge (relay) are
// counted there, whole, so they are not checked here.

// ResultLimited: a workspace limit refused the call.
const ResultLimited = "limited"

// overLimit reports whether the new call of dec is over its workspace's
// limits; when it is, the call's started and ended events (reason
// limit_concurrent or limit_rate) are published.
func (h *Handler) overLimit(snap *routing.Snapshot, dec *routing.Decision, callID, carrier, src string) bool {
	if h.limits == nil || dec.Workspace == "" {
		return false
	}
	if _, viaEdge := h.viaSIPEdge(dec); viaEdge {
		return false
	}
	var caps calls.LimitCaps
	if w := snap.Workspace(dec.Workspace); w != nil {
		caps = calls.LimitCaps{MaxConcurrent: w.Limits.MaxConcurrentCalls, MaxPerSecond: w.Limits.MaxCallsPerSecond}
	}
	rule, _, ok := h.limits.Admit(dec.Workspace, calls.Inbound, caps)
	if ok {
		h.limits.Release(dec.Workspace, calls.Inbound)
		return false
	}
	reason := "limit_concurrent"
	if rule == "max_calls_per_second" {
		reason = "limit_rate"
	}
	ev := calls.Event{CallID: callID, Time: h.now(), Number: dec.Number, Workspace: dec.Workspace,
		Region: h.cfg.Region, Carrier: carrier, Origin: dec.Origin, Source: src, Direction: calls.Inbound}
	if dec.Agent != nil {
		ev.Agent = dec.Agent.ID
	}
	ev.Kind = calls.Started
	h.events.Publish(ev)
	ev.Kind, ev.Status, ev.Reason = calls.Ended, 486, reason
	h.events.Publish(ev)
	return true
}
