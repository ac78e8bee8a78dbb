package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/callgate/callgate/gateway/placer"
	"github.com/callgate/callgate/provisioning"
)

// CallPlacer places calls for POST /v1/calls (*placer.Placer).
type CallPlacer interface {
	Place(ctx context.Context, ws string, req placer.Request, idemKey string) (*placer.Call, error)
}

var _ CallPlacer = (*placer.Placer)(nil)

// placeCall serves POST /v1/calls: 201 with the call, or a problem naming
// the field (400, 403 caller ID or destination policy, 404 agent), 402
// when the workspace cannot pay for a minute, 503 with Retry-After at a
// limit.
func (a *API) placeCall(w http.ResponseWriter, r *http.Request) error {
	if a.opts.Placer == nil {
		writeProblem(w, Problem{Status: 503, Title: "Calls are off", Detail: "this gateway places no calls (no call placer configured)"})
		return nil
	}
	var in placer.Request
	if err := decode(w, r, &in); err != nil {
		return err
	}
	c, err := a.opts.Placer.Place(r.Context(), principal(r).Workspace, in, r.Header.Get("Idempotency-Key"))
	var pe *placer.Error
	if errors.As(err, &pe) {
		noteOf(r).errDetail = pe.Error()
		p := Problem{Status: pe.Status, Title: pe.Title, Detail: pe.Detail}
		if pe.Field != "" {
			p.Errors = []provisioning.FieldError{{Field: pe.Field, Message: pe.Detail}}
		}
		if pe.Status == http.StatusServiceUnavailable {
			secs := int((pe.RetryAfter + time.Second - 1) / time.Second)
			if secs < 1 {
				secs = 1
			}
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			p.Type = "about:blank"
			writeProblemKeepRetry(w, p)
			return nil
		}
		writeProblem(w, p)
		return nil
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, c)
	return nil
}

// writeProblemKeepRetry writes a 503 problem with the Retry-After already
// set (writeProblem's default of 5 s would replace it).
func writeProblemKeepRetry(w http.ResponseWriter, p Problem) {
	ra := w.Header().Get("Retry-After")
	writeProblem(headerKeeper{w, ra}, p)
}

// headerKeeper restores Retry-After just before the header is written.
type headerKeeper struct {
	http.ResponseWriter
	retryAfter string
}

func (h headerKeeper) WriteHeader(code int) {
	h.Header().Set("Retry-After", h.retryAfter)
	h.ResponseWriter.WriteHeader(code)
}
