package node_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node/nodetest"
)

// Workspace settings and SIP credentials written through the API reach
// the node's routing table; a workspace stored without a webhook secret
// (before secrets existed) gets one when the node starts again.
func TestSettingsReachTheTableAndSecretsAreMigrated(t *testing.T) {
	dir := t.TempDir()
	var ws string
	t.Run("first start", func(t *testing.T) {
		n := nodetest.Start(t, nodetest.DataDir(dir))
		ws = n.Config().Bootstrap.Workspace
		c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
		if code, m := c.do("PATCH", "/v1/workspace", `{"routing_hook":{"url":"https://hooks.example.com/r"},"limits":{"max_calls_per_second":7}}`); code != 200 {
			t.Fatalf("PATCH /v1/workspace: %d %v", code, m)
		}
		if code, m := c.do("POST", "/v1/agents", agentBody("bot", "sip:bot@127.0.0.1:5090")); code != 201 {
			t.Fatalf("create agent: %d %v", code, m)
		}
		code, m := c.do("POST", "/v1/agents/bot/sip-credentials", "")
		if code != 201 {
			t.Fatalf("create credential: %d %v", code, m)
		}
		user := m["username"].(string)
		testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			snap := n.Table().Load()
			w := snap.Workspace(ws)
			if w == nil || w.Hook == nil || w.Limits.MaxCallsPerSecond != 7 || w.WebhookSecret == "" {
				return fmt.Errorf("workspace in the table: %+v", w)
			}
			if c, ok := snap.Credential(user); !ok || c.AgentID != "bot" {
				return errors.New("credential not in the table")
			}
			return nil
		})
		// Make the workspace look as it was stored before webhook secrets.
		ctx := context.Background()
		kv := n.Store().Workspaces
		e, err := kv.Get(ctx, ws)
		if err != nil {
			t.Fatal(err)
		}
		var rec map[string]any
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			t.Fatal(err)
		}
		delete(rec, "sealed_webhook_secret")
		b, _ := json.Marshal(rec)
		if _, err := kv.Update(ctx, ws, b, e.Revision()); err != nil {
			t.Fatal(err)
		}
		if code, m := c.do("GET", "/v1/workspace", ""); code != 200 || m["webhook_secret_set"] != false {
			t.Fatalf("after removing the secret: %d %v", code, m)
		}
	})
	n := nodetest.Start(t, nodetest.DataDir(dir))
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	if code, m := c.do("GET", "/v1/workspace", ""); code != 200 || m["webhook_secret_set"] != true || m["routing_hook"] == nil {
		t.Fatalf("after restart: %d %v; want a webhook secret and the hook kept", code, m)
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if w := n.Table().Load().Workspace(ws); w == nil || w.WebhookSecret == "" {
			return fmt.Errorf("workspace in the table after restart: %+v", w)
		}
		return nil
	})
}
