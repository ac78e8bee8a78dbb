package placer

import (
	"fmt"
	"time"
)

// Error is a refusal to place a call, with the HTTP status the API
// answers: 400 (bad field), 402 (credits), 403 (caller ID or destination
// policy), 404 (agent), 422 (refused by the carrier), 503 (caps,
// Retry-After).
type Error struct {
	Status     int
	Field      string        // the request field at fault ("" for none)
	Rule       string        // policy or limit rule (403, 503)
	Title      string        // problem title
	Detail     string        // what happened, for the caller
	RetryAfter time.Duration // 503
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("placer: %s: %s", e.Field, e.Detail)
	}
	return "placer: " + e.Detail
}

func fieldErr(status int, field, title, format string, args ...any) *Error {
	return &Error{Status: status, Field: field, Title: title, Detail: fmt.Sprintf(format, args...)}
}
