package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/provisioning"
)

// POST /v1/calls/{id}/transfer (issue 18): hands a running call's caller
// to another party. The command goes over calls.ControlBus to the node
// that holds the call (gateway/sip transferapi.go answers it there).

// transferRequest is the body of POST /v1/calls/{id}/transfer.
type transferRequest struct {
	To   string `json:"to"`
	Mode string `json:"mode"`
}

// transferCall serves POST /v1/calls/{id}/transfer.
func (a *API) transferCall(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Control == nil {
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "Call control is off", Detail: "this gateway cannot send commands to calls"})
		return nil
	}
	var in transferRequest
	if err := decode(w, r, &in); err != nil {
		return err
	}
	v := &provisioning.ValidationError{}
	id := r.PathValue("id")
	if id == "" || len(id) > 1024 {
		v.Add("id", "a call id (SIP Call-ID) of 1 to 1024 bytes")
	}
	in.To = strings.TrimSpace(in.To)
	switch {
	case in.To == "":
		v.Add("to", "required: tel:+E.164, +E.164, sip:agent=<id>@callgate (or agent:<id>), or a sip: URI")
	case len(in.To) > 512:
		v.Add("to", "at most 512 characters")
	}
	switch in.Mode {
	case "blind", "bridge":
	case "":
		in.Mode = "blind"
	default:
		v.Add("mode", "must be blind or bridge")
	}
	if err := v.Err(); err != nil {
		return err
	}
	ws := principal(r).Workspace
	// Every node listens: no answer within the bus's timeout (not the
	// request's 30 s) means no node holds the call.
	sctx, cancel := context.WithTimeout(r.Context(), a.opts.Control.Timeout)
	defer cancel()
	cmd := calls.Command{Op: calls.OpTransfer, CallID: id, Workspace: ws, To: in.To, Mode: in.Mode}
	// A carrier's webhook call is held by no node: this node asks the
	// carrier (webhookcalls.go) without waiting for the bus's timeout.
	rep, err := a.commandWebhookCall(r.Context(), cmd)
	if errors.Is(err, calls.ErrCallNotHere) {
		rep, err = a.opts.Control.Send(sctx, cmd)
	}
	if errors.Is(err, calls.ErrCallNotHere) {
		// ended, or never ours: the history tells which
		if a.opts.Calls != nil {
			if _, herr := a.opts.Calls.Get(r.Context(), ws, id); herr == nil {
				writeProblem(w, Problem{Status: http.StatusConflict, Title: "Call not running", Detail: "the call has ended"})
				return nil
			} else if !errors.Is(herr, callhistory.ErrNotFound) {
				// not known to be unknown: a 404 would tell the client to give up
				a.log.Warn("api: call history read failed", "err", herr)
				writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "State store unavailable",
					Detail: "no node holds the call and the call history could not be read; retry"})
				return nil
			}
		}
		writeProblem(w, Problem{Status: http.StatusNotFound, Title: "Not found", Detail: "no running call with this id in the workspace"})
		return nil
	}
	if err != nil {
		a.log.Warn("api: transfer command failed", "err", err)
		writeProblem(w, Problem{Status: http.StatusServiceUnavailable, Title: "State store unavailable", Detail: "the command could not reach the call's node; retry"})
		return nil
	}
	if rep.Status == http.StatusAccepted {
		out := map[string]string{"call_id": id, "to": rep.Detail["to"], "mode": rep.Detail["mode"], "state": rep.Detail["state"]}
		writeJSON(w, http.StatusAccepted, out)
		return nil
	}
	noteOf(r).errDetail = rep.Error
	p := Problem{Status: rep.Status, Detail: rep.Error}
	switch rep.Status {
	case http.StatusBadRequest:
		p.Title = "Invalid request"
		field, msg, ok := strings.Cut(rep.Error, ": ")
		if !ok || (field != "to" && field != "mode") {
			field, msg = "to", rep.Error
		}
		p.Errors = []provisioning.FieldError{{Field: field, Message: msg}}
	case http.StatusConflict:
		p.Title = "Call not in a state to transfer"
	case http.StatusUnprocessableEntity:
		p.Title = "Transfer refused by policy"
	case http.StatusNotImplemented:
		p.Title = "Not implemented"
	case 0:
		p.Status, p.Title = http.StatusBadGateway, "Bad reply from the call's node"
	default:
		p.Title = http.StatusText(rep.Status)
	}
	writeProblem(w, p)
	return nil
}
