package webhook

import (
	"context"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/routing"
)

// The routing hook on the webhook edge: the same client and the same
// Apply as the SIP edge (gateway/hook). Twilio voice and Telnyx TeXML ask
// it inside the webhook request (its timeout, at most 5 s, is well within
// the carriers' 15 s webhook timeout) and answer a reject with <Reject>;
// Telnyx Call Control asks it in the transfer worker, after the webhook
// was answered, and rejects through the Call Control API.

// askHook asks the decided call's routing hook, when one applies, and
// applies its answer to dec. ok is false when no hook applies.
func (h *Handler) askHook(ctx context.Context, snap *routing.Snapshot, dec *routing.Decision, callID, from string) (hook.Result, bool) {
	if h.hook == nil || !hook.Applies(dec) {
		return hook.Result{}, false
	}
	if _, via := h.viaSIPEdge(dec); via {
		return hook.Result{}, false // relayed through the SIP edge, which asks the hook
	}
	secret := ""
	if ws := snap.Workspace(dec.Workspace); ws != nil {
		secret = ws.WebhookSecret
	}
	if n, ok := normalizeNumber(from); ok {
		from = n
	}
	a := h.hook.Ask(ctx, dec.Hook, secret, hook.RequestFor(dec, callID, from, dec.Called, h.cfg.Region))
	return h.hook.Apply(snap, dec, a, routing.Policy{Health: h.health, Media: h.mediaMode}), true
}

// twimlHookReject is the TwiML of a call the hook refused: busy for 486,
// rejected otherwise (TwiML's <Reject> has only these two reasons).
func twimlHookReject(status int) []byte {
	if status == 486 {
		return twimlRejectBusy
	}
	return twimlReject
}

// telnyxHookCause is the Call Control reject cause for a hook's status.
func telnyxHookCause(status int) string {
	if status == 486 {
		return "USER_BUSY"
	}
	return "CALL_REJECTED"
}

// agentOf is the decided agent's id ("" when a hook routed an unassigned
// number's call to an endpoint).
func agentOf(d *routing.Decision) string {
	if d.Agent == nil {
		return ""
	}
	return d.Agent.ID
}

// hookHeaders appends the hook's X- headers to the agent headers.
func hookHeaders(hs []header, extra []hook.Header) []header {
	for _, x := range extra {
		hs = append(hs, header{x.Name, x.Value})
	}
	return hs
}

// routeTelnyxCallWithHook asks the routing hook of a parked Call Control
// call in the transfer worker, then transfers it as the (re-targeted)
// decision says, or rejects it. The webhook was answered already.
func (h *Handler) routeTelnyxCallWithHook(snap *routing.Snapshot, dec routing.Decision, callControlID, from string, ev calls.Event) string {
	ok := h.transfers.enqueue(func(ctx context.Context) {
		res, _ := h.askHook(ctx, snap, &dec, ev.CallID, from)
		ev.HookOutcome = res.Outcome
		ev.Agent = agentOf(&dec)
		if res.Reject {
			h.queueReject(dec.Route.Number.IntegrationID, callControlID, telnyxHookCause(res.Status))
			ev.Kind, ev.Status, ev.Reason = calls.Ended, res.Status, "hook_reject"
			h.events.Publish(ev)
			return
		}
		h.routeTelnyxCall(&dec, callControlID, ev, res.Headers...)
	})
	if !ok {
		h.metrics.Transfers.WithLabelValues(OutcomeDropped).Inc()
		h.log.Warn("webhook: telnyx routing hook not queued")
	}
	return ResultOK
}

// telnyxCallID is the id that picks a weighted agent for a Telnyx call:
// the call session (the same on every event of the call), else the call
// control id.
func telnyxCallID(session, control string) string {
	if session != "" {
		return session
	}
	return control
}
