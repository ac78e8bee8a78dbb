package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/store/storetest"
)

// POST /v1/calls/{id}/dtmf: digits validated (400 naming digits), the
// command delivered over the control bus to the node holding the call in
// the key's workspace, its answer mapped (202, 409), 404 when no node
// holds the call. The holding node here is a second bus on the same NATS
// answering like the SIP edge (gateway/sip TestAPIDigits* run the edge).
func TestSendDTMFEndpoint(t *testing.T) {
	st := storetest.OpenEmbedded(t)
	box, err := secrets.NewBox(secrets.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	svc := provisioning.New(st, provisioning.Options{Sandbox: true, Box: box})
	ctx := context.Background()
	_, acme, err := svc.CreateWorkspace(ctx, "acme", "Acme", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, beta, err := svc.CreateWorkspace(ctx, "beta", "Beta", 0)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := svc.CreateKey(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	bus := calls.NewControlBus(st.NC, nil)
	bus.Timeout = time.Second
	node := calls.NewControlBus(st.NC, nil) // the holding node's bus (one connection serves both here)
	got := make(chan calls.Command, 8)
	node.Handle(func(_ context.Context, cmd calls.Command) (calls.Reply, bool) {
		if cmd.Op != calls.OpDTMF || cmd.Workspace != "acme" {
			return calls.Reply{}, false
		}
		got <- cmd
		switch cmd.CallID {
		case "up@10.0.0.1":
			return calls.Reply{Status: 202, Detail: map[string]string{"via": "rfc4733"}}, true
		case "ringing@10.0.0.1":
			return calls.Reply{Status: 409, Error: "the call is not answered yet"}, true
		}
		return calls.Reply{}, false
	})
	for _, b := range []*calls.ControlBus{bus, node} {
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
	}
	srv := httptest.NewServer(New(Options{Service: svc, Control: bus}))
	t.Cleanup(srv.Close)
	post := func(key, id, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", srv.URL+"/v1/calls/"+url.PathEscape(id)+"/dtmf", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m
	}
	named := func(m map[string]any, field string) bool {
		errs, _ := m["errors"].([]any)
		for _, e := range errs {
			if f, _ := e.(map[string]any)["field"].(string); f == field {
				return true
			}
		}
		return false
	}
	for _, bad := range []string{`{"digits": ""}`, `{"digits": "12x"}`, `{"digits": "` + strings.Repeat("1", 65) + `"}`, `{"digits": 12}`, `{}`} {
		if code, m := post(acme, "up@10.0.0.1", bad); code != 400 || !named(m, "digits") {
			t.Errorf("%s: %d %v, want 400 naming digits", bad, code, m)
		}
	}
	if code, m := post(acme, "up@10.0.0.1", `{"digits": "1", "tone": 3}`); code != 400 || !named(m, "tone") {
		t.Errorf("unknown field: %d %v", code, m)
	}
	select {
	case c := <-got:
		t.Fatalf("an invalid request reached the node: %+v", c)
	default:
	}
	code, m := post(acme, "up@10.0.0.1", `{"digits": "12w34#"}`)
	if code != 202 || m["via"] != "rfc4733" || m["digits"] != "12w34#" || m["call_id"] != "up@10.0.0.1" {
		t.Fatalf("running call: %d %v", code, m)
	}
	if c := <-got; c.Digits != "12w34#" || c.CallID != "up@10.0.0.1" || c.Workspace != "acme" {
		t.Fatalf("node got %+v", c)
	}
	if code, m := post(acme, "ringing@10.0.0.1", `{"digits": "1"}`); code != 409 || !strings.Contains(m["detail"].(string), "not answered") {
		t.Errorf("unanswered call: %d %v", code, m)
	}
	if code, _ := post(acme, "gone@10.0.0.1", `{"digits": "1"}`); code != 404 {
		t.Errorf("no such call: %d, want 404", code)
	}
	if code, _ := post(beta, "up@10.0.0.1", `{"digits": "1"}`); code != 404 {
		t.Errorf("another workspace's call: %d, want 404", code)
	}
	if code, _ := post(admin, "up@10.0.0.1", `{"digits": "1"}`); code != 403 {
		t.Errorf("admin key: %d, want 403", code)
	}
}
