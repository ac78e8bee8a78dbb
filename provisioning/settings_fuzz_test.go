package provisioning_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/callgate/callgate/provisioning"
)

// FuzzWorkspacePatch: a PATCH /v1/workspace body (after the API's strict
// decode) is either refused with fields named, or leaves settings that
// are all within their bounds.
func FuzzWorkspacePatch(f *testing.F) {
	for _, s := range []string{
		`{"routing_hook":{"url":"https://h.example.com/","timeout_ms":900,"on_failure":"reject"}}`,
		`{"routing_hook":null}`, `{"routing_hook":{"timeout_ms":0}}`, `{"routing_hook":"x"}`,
		`{"routing_hook":{"url":"http://127.0.0.1/"},"limits":{"max_concurrent_calls":100000}}`,
		`{"outbound":{"allowed_countries":["us","GB","xx"],"allow_uan":true,"max_calls_per_second":-1}}`,
		`{"name":"  "}`, `{"routing_hook":{"url":"https://h/","extra":1}}`, `{"routing_hook":[]}`,
	} {
		f.Add(s)
	}
	cur := provisioning.WorkspaceSettings{ID: "acme", Name: "acme", RoutingHook: &provisioning.Hook{URL: "https://old.example.com/", TimeoutMS: 1500, OnFailure: "static"}}
	f.Fuzz(func(t *testing.T, body string) {
		var p provisioning.WorkspacePatch
		dec := json.NewDecoder(bytes.NewReader([]byte(body)))
		dec.DisallowUnknownFields()
		if dec.Decode(&p) != nil {
			return
		}
		got, err := provisioning.ApplyWorkspacePatchForTest(cur, p)
		if err != nil {
			var v *provisioning.ValidationError
			if !errors.As(err, &v) || len(v.Fields) == 0 || v.Fields[0].Field == "" {
				t.Fatalf("%s: %v, want a field error", body, err)
			}
			return
		}
		if h := got.RoutingHook; h != nil {
			if u, err := provisioning.CheckHookURL(h.URL); err != nil || u != h.URL || h.TimeoutMS < 1 || h.TimeoutMS > 5000 || (h.OnFailure != "static" && h.OnFailure != "reject") {
				t.Fatalf("%s: accepted hook %+v", body, h)
			}
		}
		for _, n := range []int{got.Limits.MaxConcurrentCalls, got.Outbound.MaxConcurrentCalls} {
			if n < 0 || n > provisioning.MaxConcurrentCallsLimit {
				t.Fatalf("%s: concurrent limit %d", body, n)
			}
		}
		for _, n := range []int{got.Limits.MaxCallsPerSecond, got.Outbound.MaxCallsPerSecond} {
			if n < 0 || n > provisioning.MaxCallsPerSecondLimit {
				t.Fatalf("%s: rate limit %d", body, n)
			}
		}
		for _, c := range got.Outbound.AllowedCountries {
			if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
				t.Fatalf("%s: country %q", body, c)
			}
		}
	})
}
