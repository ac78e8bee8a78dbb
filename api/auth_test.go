package api_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/api"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

// failingReads makes every get of a bucket fail with err.
type failingReads struct {
	jetstream.KeyValue
	err error
}

func (f failingReads) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, f.err
}

// TestAPIKeyReadFailureIs503: when the store cannot read the API key, the
// answer is a 503 problem saying so with Retry-After; a key that is
// really absent is still a 401.
func TestAPIKeyReadFailureIs503(t *testing.T) {
	tests := []struct {
		name string
		err  error // nil: the real bucket
		key  string
		want int
	}{
		{"lost read (confirmed by the store)", fmt.Errorf("store: callgate_apikeys: key exists but could not be read: %w", store.ErrUnavailable), "valid", 503},
		{"direct get failed", errors.New("nats: unable to get message"), "valid", 503},
		{"timeout", context.DeadlineExceeded, "valid", 503},
		{"unknown key", nil, "cg_nope", 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := storetest.OpenEmbedded(t)
			svc := provisioning.New(st, provisioning.Options{Sandbox: true})
			_, key, err := svc.CreateWorkspace(context.Background(), "acme", "acme", 10)
			if err != nil {
				t.Fatal(err)
			}
			if tc.key == "valid" {
				tc.key = key
			}
			if tc.err != nil {
				st.APIKeys = failingReads{KeyValue: st.APIKeys, err: tc.err}
			}
			h := api.New(api.Options{Service: svc})
			req := httptest.NewRequest("GET", "/v1/numbers", nil)
			req.Header.Set("Authorization", "Bearer "+tc.key)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			if tc.want != 503 {
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			if rec.Header().Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			if !strings.Contains(rec.Body.String(), "state store") {
				t.Errorf("problem does not name the state store: %s", rec.Body)
			}
		})
	}
}
