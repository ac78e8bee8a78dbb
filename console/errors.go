package console

import (
	"context"
	"errors"
	"net/http"

	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
)

// formError is a failed operation as a form shows it: the status and
// title the API answers for the same error, its detail, and the message
// of each field it names (provisioning.ValidationError), shown next to
// that field.
type formError struct {
	Status int
	Title  string
	Detail string
	Fields map[string]string
}

// Field returns the message for a field ("" when it is fine).
func (e *formError) Field(name string) string {
	if e == nil {
		return ""
	}
	return e.Fields[name]
}

// Has reports whether the error names a field (templates: an error
// without a field shows at the top of the form).
func (e *formError) Has(name string) bool { return e != nil && e.Fields[name] != "" }

// problemOf maps an error as api.writeError does, so the console shows
// the status and messages an API client would get.
func problemOf(err error) *formError {
	if err == nil {
		return nil
	}
	var ve *provisioning.ValidationError
	var ce *carrier.Error
	fe := &formError{Detail: err.Error(), Fields: map[string]string{}}
	switch {
	case errors.As(err, &ve):
		fe.Status, fe.Title = 400, "Invalid request"
		for _, f := range ve.Fields {
			if fe.Fields[f.Field] == "" {
				fe.Fields[f.Field] = f.Message
			} else {
				fe.Fields[f.Field] += "; " + f.Message
			}
		}
	case errors.Is(err, provisioning.ErrNotFound):
		fe.Status, fe.Title = 404, "Not found"
	case errors.Is(err, provisioning.ErrInsufficientCredits):
		fe.Status, fe.Title = 402, "Insufficient credits"
		fe.Detail += "; nothing was charged or changed"
	case errors.Is(err, provisioning.ErrConflict):
		fe.Status, fe.Title = 409, "Conflict"
	case errors.Is(err, provisioning.ErrForbidden):
		fe.Status, fe.Title = 403, "Forbidden"
	case errors.Is(err, provisioning.ErrUnavailable):
		fe.Status, fe.Title = 503, "State store unavailable"
	case errors.Is(err, provisioning.ErrInvalid):
		fe.Status, fe.Title = 400, "Invalid request"
	case errors.As(err, &ce) && errors.Is(err, carrier.ErrCredentialsRejected):
		fe.Status, fe.Title = 422, "Carrier credentials rejected"
		fe.Fields["credentials"] = err.Error()
	case errors.As(err, &ce) && errors.Is(err, carrier.ErrRegionUnsupported):
		fe.Status, fe.Title = 400, "Invalid request"
		fe.Fields["voice_region"] = carrier.ErrRegionUnsupported.Error()
	case errors.As(err, &ce) && errors.Is(err, carrier.ErrTimeout):
		fe.Status, fe.Title = 504, "Carrier timed out"
		fe.Detail += "; nothing was left half done, retry"
	case errors.As(err, &ce):
		fe.Status, fe.Title = 502, "Carrier error ("+ce.Carrier+")"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		fe.Status, fe.Title, fe.Detail = 503, "Request timed out", "the request did not finish in time; retry"
	default:
		fe.Status, fe.Title, fe.Detail = 500, "Internal error", "an unexpected error happened; it was logged"
	}
	return fe
}

// fail logs an unexpected error and returns its form error.
func (c *Console) fail(r *http.Request, err error) *formError {
	fe := problemOf(err)
	if fe.Status == 500 {
		c.log.Error("console: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	return fe
}
