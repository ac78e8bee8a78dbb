package webhook

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTelnyxCallControlClient(t *testing.T) {
	api := newRecorder(t)
	api.status = func(n int) int {
		if n == 2 {
			return 422
		}
		return 200
	}
	keys := func(_ context.Context, id string) (string, error) {
		switch id {
		case "int-tx":
			return "KEY1", nil
		case "empty":
			return "", nil
		}
		return "", errors.New("no such integration")
	}
	cc := &TelnyxCallControl{APIBase: api.srv.URL + "/", Client: api.srv.Client(), APIKey: keys}
	ctx := t.Context()

	tr := Transfer{IntegrationID: "int-tx", CallControlID: "v3:a/b c", To: "sip:x@127.0.0.1",
		Headers: []SIPHeader{{"X-Callgate-Agent", "a1"}}, CommandID: "cmd-1"}
	if err := cc.Transfer(ctx, tr); err != nil {
		t.Fatal(err)
	}
	got := api.next(t)
	if got.Path != "/v2/calls/v3:a%2Fb%20c/actions/transfer" || got.Auth != "Bearer KEY1" ||
		string(got.Body) != `{"to":"sip:x@127.0.0.1","custom_headers":[{"name":"X-Callgate-Agent","value":"a1"}],"command_id":"cmd-1"}` {
		t.Errorf("%s %s %s", got.Path, got.Auth, got.Body)
	}

	// A refusal carries Telnyx's error detail.
	err := cc.Transfer(ctx, tr)
	var ce *CallControlError
	if !errors.As(err, &ce) || ce.Status != 422 || !strings.Contains(ce.Detail, "Call has already ended") || !strings.Contains(ce.Detail, "90018") {
		t.Fatalf("refusal: %v", err)
	}
	api.next(t)

	for name, tc := range map[string]Transfer{
		"unknown integration": {IntegrationID: "nope", CallControlID: "c", To: "sip:x@y"},
		"empty key":           {IntegrationID: "empty", CallControlID: "c", To: "sip:x@y"},
		"no call id":          {IntegrationID: "int-tx", To: "sip:x@y"},
		"no destination":      {IntegrationID: "int-tx", CallControlID: "c"},
	} {
		if err := cc.Transfer(ctx, tc); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	api.none(t, 50*time.Millisecond)

	// Bounded by the caller's context.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // net/http notices the client going away only after the body
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer slow.Close()
	cc2 := &TelnyxCallControl{APIBase: slow.URL, Client: slow.Client(), APIKey: keys}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := cc2.Reject(cctx, Reject{IntegrationID: "int-tx", CallControlID: "c"}); err == nil {
		t.Error("no timeout error")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}
