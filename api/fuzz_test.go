package api

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning"
)

// FuzzDecode feeds arbitrary bodies to the strict JSON decoder used by
// every endpoint: it either decodes or returns a validation error naming
// a field, and never panics.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"phone_number":"+12282001234","carrier":"sandbox"}`,
		`{"phone_number":12}`, `{"x":1}`, `{`, `[]`, `null`, `{"phone_number":"+1"} {}`,
		`{"agent_id":null,"voice_region":"us1"}`, "\x00", `{"phone_number":"\ud800"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/v1/numbers", strings.NewReader(body))
		w := httptest.NewRecorder()
		var req provisioning.PurchaseRequest
		err := decode(w, r, &req)
		if err == nil {
			return
		}
		var ve *provisioning.ValidationError
		if !errors.As(err, &ve) || len(ve.Fields) == 0 || ve.Fields[0].Field == "" {
			t.Fatalf("decode(%q) = %v, want a field error", body, err)
		}
	})
}
