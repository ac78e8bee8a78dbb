package provisioning

import (
	"errors"
	"fmt"
	"strings"
)

// Error kinds. The API maps each to one HTTP status.
var (
	ErrNotFound            = errors.New("not found")               // 404
	ErrConflict            = errors.New("conflict")                // 409
	ErrInsufficientCredits = errors.New("insufficient credits")    // 402
	ErrInvalid             = errors.New("invalid request")         // 400
	ErrUnavailable         = errors.New("state store unavailable") // 503
	ErrForbidden           = errors.New("forbidden")               // 403
)

// FieldError names one bad field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError is an ErrInvalid with the fields at fault.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Add records a bad field.
func (e *ValidationError) Add(field, format string, args ...any) {
	e.Fields = append(e.Fields, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Err returns e when it holds fields, else nil.
func (e *ValidationError) Err() error {
	if e == nil || len(e.Fields) == 0 {
		return nil
	}
	return e
}

func invalid(field, format string, args ...any) error {
	v := &ValidationError{}
	v.Add(field, format, args...)
	return v
}

// kindError attaches a human detail to an error kind.
type kindError struct {
	kind   error
	detail string
}

func (e *kindError) Error() string { return e.detail }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, detail: fmt.Sprintf(format, args...)}
}
