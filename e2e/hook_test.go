package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/sign"
)

// A routing hook set through the API (PATCH /v1/workspace) reaches the
// SIP edge through the routing snapshot: the hook, signed with the secret
// POST /v1/workspace/webhook-secret returned, sends the call to another
// agent of the workspace; with on_failure "reject" a hook that fails
// refuses the call with 480.
func TestRoutingHookThroughTheAPI(t *testing.T) {
	cfg := testConfig(t)
	cfg.Webhook.Messaging.AllowNetworks = []string{"127.0.0.0/8"} // the hook below is on loopback
	n, _ := startNode(t, cfg)
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	first, second, carrierUA := newUA(t), newUA(t), newUA(t)
	num := routeNumber(t, c, "228", "first", "local", first.uri())
	c.must(201, "POST", "/v1/agents", `{"id":"second","name":"second","endpoints":[{"region":"local","uri":"`+second.uri()+`"}]}`)
	secret, _ := c.must(201, "POST", "/v1/workspace/webhook-secret", "")["webhook_secret"].(string)
	if secret == "" {
		t.Fatal("no webhook secret returned")
	}

	var hits, bad atomic.Int32
	var answer atomic.Value
	answer.Store(`{"action":"route","agent_id":"second"}`)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		if sign.Verify([]byte(secret), r.Header.Get(sign.HeaderName), body, time.Now(), time.Minute) != nil {
			bad.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, answer.Load().(string))
	}))
	defer hook.Close()
	c.must(200, "PATCH", "/v1/workspace", fmt.Sprintf(`{"routing_hook":{"url":%q,"timeout_ms":2000,"on_failure":"reject"}}`, hook.URL))
	testwait.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		r, ok := n.Table().Load().Lookup(num)
		if !ok {
			return fmt.Errorf("%s not routed", num)
		}
		if ws := n.Table().Load().Workspace(r.Number.Workspace); ws == nil || ws.Hook == nil || ws.WebhookSecret != secret {
			return fmt.Errorf("hook and secret not in the snapshot yet")
		}
		return nil
	})

	if code := carrierUA.call(t, n.SIP().UDPAddr(), num); code != 200 {
		t.Fatalf("call: %d, want 200", code)
	}
	if inv, _ := second.counts(); inv != 1 {
		t.Errorf("agent second got %d INVITEs, want 1", inv)
	}
	if inv, _ := first.counts(); inv != 0 {
		t.Errorf("the statically assigned agent got %d INVITEs", inv)
	}
	if hits.Load() != 1 || bad.Load() != 0 {
		t.Errorf("hook asked %d times, %d bad signatures", hits.Load(), bad.Load())
	}

	answer.Store(`{"action":"route","agent_id":"nobody"}`) // invalid: on_failure reject
	if code := carrierUA.call(t, n.SIP().UDPAddr(), num); code != 480 {
		t.Errorf("call with a failing hook: %d, want 480", code)
	}
}
