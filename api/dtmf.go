package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/provisioning"
)

// dtmfRequest is the body of POST /v1/calls/{id}/dtmf.
type dtmfRequest struct {
	Digits string `json:"digits"`
}

// dtmfTimeout bounds the wait for the node that holds the call.
const dtmfTimeout = 3 * time.Second

// sendDTMF serves POST /v1/calls/{id}/dtmf: digits to the caller of a
// running call of the workspace (the called party of an outbound call),
// through the node that holds it. 202 when queued.
func (a *API) sendDTMF(w http.ResponseWriter, r *http.Request) error {
	var in dtmfRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	v := &provisioning.ValidationError{}
	id := r.PathValue("id")
	if id == "" || len(id) > 1024 {
		v.Add("id", "a call id (SIP Call-ID) of 1 to 1024 bytes")
	}
	if !calls.ValidDTMF(in.Digits) {
		v.Add("digits", "1 to %d of 0-9, *, #, A-D and w (a 0.5 s pause)", calls.MaxDTMFDigits)
	}
	if err := v.Err(); err != nil {
		return err
	}
	if a.opts.Control == nil {
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "Call control is off", Detail: "this gateway cannot reach running calls"})
		return nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), dtmfTimeout)
	defer cancel()
	ws := principal(r).Workspace
	cmd := calls.Command{Op: calls.OpDTMF, CallID: id, Workspace: ws, Digits: in.Digits}
	// A carrier's webhook call is held by no node: this node asks the
	// carrier (webhookcalls.go) without waiting for the bus's timeout.
	rep, err := a.commandWebhookCall(r.Context(), cmd)
	unread := errors.Is(err, errHistoryUnread)
	if errors.Is(err, calls.ErrCallNotHere) {
		rep, err = a.opts.Control.Send(ctx, cmd)
	}
	if errors.Is(err, calls.ErrCallNotHere) && unread {
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "State store unavailable",
			Detail: "no node holds the call and the call history could not be read; retry"})
		return nil
	}
	if errors.Is(err, calls.ErrCallNotHere) {
		writeProblem(w, Problem{Status: 404, Title: "Not found", Detail: "no call in progress with this id in the workspace"})
		return nil
	}
	if err != nil {
		a.log.Warn("api: dtmf command failed", "err", err)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "Call control unavailable", Detail: "the command could not be delivered; retry"})
		return nil
	}
	switch {
	case rep.Status == http.StatusAccepted:
		writeJSON(w, http.StatusAccepted, map[string]any{"call_id": id, "digits": in.Digits, "via": rep.Detail["via"]})
	case rep.Status == http.StatusBadRequest:
		return invalidField("digits", rep.Error)
	case rep.Status >= 400 && rep.Status < 600:
		noteOf(r).errDetail = rep.Error
		writeProblem(w, Problem{Status: rep.Status, Detail: rep.Error})
	default:
		writeProblem(w, Problem{Status: http.StatusBadGateway, Detail: "unexpected answer from the node holding the call"})
	}
	return nil
}
