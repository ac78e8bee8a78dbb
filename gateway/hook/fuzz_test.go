package hook

import (
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning"
)

// FuzzParseAnswer: any body gives a route, a reject or a failure, never
// a panic, and what is accepted is within bounds (no CR/LF reaches a
// header or reason phrase, statuses are the four allowed).
func FuzzParseAnswer(f *testing.F) {
	for _, s := range []string{
		`{"action":"route"}`,
		`{"action":"route","agent_id":"b2","headers":{"X-A":"1"}}`,
		`{"action":"route","endpoint":"sip:bot@127.0.0.1:5070;transport=tcp"}`,
		`{"action":"reject","status":486,"reason":"busy"}`,
		`{"action":"reject","status":999}`,
		`{"action":"route","headers":{"X-A":"a\r\nb"}}`,
		`[1,2]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	c := &Client{endpoint: provisioning.CanonicalEndpointURI}
	f.Fuzz(func(t *testing.T, b []byte) {
		a := c.parse(b)
		switch a.Outcome {
		case OutcomeRoute:
			if len(a.Headers) > MaxHeaders {
				t.Fatalf("%d headers", len(a.Headers))
			}
			for _, h := range a.Headers {
				if strings.ContainsAny(h.Name+h.Value, "\r\n\x00") || len(h.Value) > MaxHeaderValue ||
					!strings.EqualFold(h.Name[:2], "x-") {
					t.Fatalf("header %q accepted", h)
				}
			}
			if strings.ContainsAny(a.Endpoint, "\r\n ?") {
				t.Fatalf("endpoint %q accepted", a.Endpoint)
			}
		case OutcomeReject:
			if a.Status != 404 && a.Status != 480 && a.Status != 486 && a.Status != 603 {
				t.Fatalf("status %d", a.Status)
			}
			if strings.ContainsAny(a.Reason, "\r\n") {
				t.Fatalf("reason %q", a.Reason)
			}
		case OutcomeInvalid:
			if a.Err == nil {
				t.Fatal("invalid without an error")
			}
		default:
			t.Fatalf("outcome %q", a.Outcome)
		}
	})
}
