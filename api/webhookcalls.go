package api

import (
	"context"
	"errors"
	"fmt"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/placer"
)

// WebhookCalls carries out commands on calls that reached an agent
// through a carrier's webhook (Twilio <Dial><Sip>, Telnyx Call Control):
// no node holds them, so the API node that took the request acts, with
// the carrier's own verb (*placer.Placer, webhookcalls.go).
type WebhookCalls interface {
	ControlWebhookCall(ctx context.Context, wc placer.WebhookCall, cmd calls.Command) calls.Reply
}

var _ WebhookCalls = (*placer.Placer)(nil)

// errHistoryUnread: commandWebhookCall could not read the call history.
var errHistoryUnread = errors.New("call history unreadable")

// commandWebhookCall is asked before the ControlBus: when the workspace's
// call history has the call as a webhook call, the carrier's verb answers
// here, on the one node that took the request; otherwise
// calls.ErrCallNotHere and the bus finds the node that holds the call.
// (Asking the bus first would make every command on a webhook call wait
// out the bus's timeout, 2-3 s, for a holder that cannot exist.) Only the
// history of the caller's workspace is read, so another workspace's call
// id stays unknown (404).
func (a *API) commandWebhookCall(ctx context.Context, cmd calls.Command) (calls.Reply, error) {
	if a.opts.Calls == nil || a.opts.WebhookCalls == nil {
		return calls.Reply{}, calls.ErrCallNotHere
	}
	rec, err := a.opts.Calls.Get(ctx, cmd.Workspace, cmd.CallID)
	if err != nil {
		if !errors.Is(err, callhistory.ErrNotFound) {
			a.log.Warn("api: call history read failed", "err", err)
			// the bus may still find a node holding it; if not, the
			// caller answers 503, not 404: it may be a webhook call
			return calls.Reply{}, fmt.Errorf("%w: %w: %w", calls.ErrCallNotHere, errHistoryUnread, err)
		}
		return calls.Reply{}, calls.ErrCallNotHere
	}
	if !placer.IsWebhookCall(rec.Source) || rec.Workspace != cmd.Workspace {
		return calls.Reply{}, calls.ErrCallNotHere
	}
	wc := placer.WebhookCall{ID: rec.ID, Workspace: rec.Workspace, Source: rec.Source, Number: rec.Number, From: rec.From,
		To: rec.To, Agent: rec.Agent, Region: rec.Region, Endpoint: rec.Endpoint, Origin: rec.Origin,
		CarrierCallID: rec.CarrierCallID, Answered: rec.AnsweredAt != nil, Ended: rec.EndedAt != nil}
	return a.opts.WebhookCalls.ControlWebhookCall(ctx, wc, cmd), nil
}
