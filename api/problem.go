package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
)

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type   string                    `json:"type"`
	Title  string                    `json:"title"`
	Status int                       `json:"status"`
	Detail string                    `json:"detail,omitempty"`
	Errors []provisioning.FieldError `json:"errors,omitempty"`
}

func writeProblem(w http.ResponseWriter, p Problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	if p.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// writeError maps an error to one problem response.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	noteOf(r).errDetail = err.Error()
	var ve *provisioning.ValidationError
	var ce *carrier.Error
	switch {
	case errors.As(err, &ve):
		writeProblem(w, Problem{Status: 400, Title: "Invalid request", Detail: ve.Error(), Errors: ve.Fields})
	case errors.Is(err, provisioning.ErrNotFound):
		writeProblem(w, Problem{Status: 404, Title: "Not found", Detail: err.Error()})
	case errors.Is(err, provisioning.ErrInsufficientCredits):
		writeProblem(w, Problem{Status: 402, Title: "Insufficient credits", Detail: err.Error() + "; nothing was charged or changed"})
	case errors.Is(err, provisioning.ErrConflict):
		writeProblem(w, Problem{Status: 409, Title: "Conflict", Detail: err.Error()})
	case errors.Is(err, provisioning.ErrForbidden):
		writeProblem(w, Problem{Status: 403, Title: "Forbidden", Detail: err.Error()})
	case errors.Is(err, provisioning.ErrUnavailable):
		writeProblem(w, Problem{Status: 503, Title: "State store unavailable", Detail: err.Error()})
	case errors.Is(err, provisioning.ErrInvalid):
		writeProblem(w, Problem{Status: 400, Title: "Invalid request", Detail: err.Error()})
	case errors.As(err, &ce) && errors.Is(err, carrier.ErrCredentialsRejected):
		writeProblem(w, Problem{Status: 422, Title: "Carrier credentials rejected", Detail: err.Error(),
			Errors: []provisioning.FieldError{{Field: "credentials", Message: err.Error()}}})
	case errors.As(err, &ce) && errors.Is(err, carrier.ErrRegionUnsupported):
		writeProblem(w, Problem{Status: 400, Title: "Invalid request", Detail: err.Error(),
			Errors: []provisioning.FieldError{{Field: "voice_region", Message: carrier.ErrRegionUnsupported.Error()}}})
	case errors.As(err, &ce) && errors.Is(err, carrier.ErrTimeout):
		writeProblem(w, Problem{Status: 504, Title: "Carrier timed out", Detail: err.Error() + "; nothing was left half done, retry"})
	case errors.As(err, &ce):
		writeProblem(w, Problem{Status: 502, Title: "Carrier error (" + ce.Carrier + ")", Detail: err.Error()})
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		writeProblem(w, Problem{Status: 503, Title: "Request timed out", Detail: "the request did not finish in time; retry"})
	default:
		a.log.Error("api: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		writeProblem(w, Problem{Status: 500, Title: "Internal error", Detail: "an unexpected error happened; it was logged"})
	}
}

const maxBody = 1 << 20

// decode reads one JSON object strictly: unknown fields, wrong types,
// trailing data and oversize bodies are 400s that name the field.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return invalidField("body", "must hold exactly one JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalidField("body", "must hold exactly one JSON object")
	}
	return nil
}

func invalidField(field, msg string) error {
	v := &provisioning.ValidationError{}
	v.Add(field, "%s", msg)
	return v
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return invalidField("body", "empty body: a JSON object is required")
	case errors.As(err, &se):
		return invalidField("body", fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			field = "body"
		}
		return invalidField(field, fmt.Sprintf("must be %s, not %s", jsonKind(te.Type.String()), te.Value))
	case errors.As(err, &mbe):
		return invalidField("body", fmt.Sprintf("larger than %d bytes", mbe.Limit))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		if name == "" {
			return invalidField("body", `unknown field ""`)
		}
		return invalidField(name, "unknown field")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalidField("body", "truncated JSON")
	default:
		return invalidField("body", "malformed JSON: "+err.Error())
	}
}

func jsonKind(t string) string {
	switch {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"), strings.HasPrefix(t, "float"):
		return "a number"
	case t == "string", t == "*string":
		return "a string"
	case t == "bool":
		return "a boolean"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	default:
		return "an object"
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
