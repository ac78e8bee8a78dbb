package node_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/store/storetest"
)

// TestAPIKeyCheckDuringStoreOutage: while the state store cannot be read,
// a valid API key gets a 503 problem that says so (with Retry-After),
// never a 401 that calls the key invalid.
func TestAPIKeyCheckDuringStoreOutage(t *testing.T) {
	tests := []struct {
		name   string
		outage func(*server.Server)
	}{
		{"NATS stopped", func(s *server.Server) { s.Shutdown(); s.WaitForShutdown() }},
		{"JetStream shut down", func(s *server.Server) { _ = s.ShutdownJetStream() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := storetest.RunJetStreamServer(t)
			n := startNode(t, t.TempDir(), func(c *config.Config) { c.NATS.URL = srv.ClientURL() })
			t.Cleanup(n.Close)
			c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
			if code, m := c.do("GET", "/v1/numbers", ""); code != 200 {
				t.Fatalf("before the outage: %d %v", code, m)
			}
			tc.outage(srv)
			var last string
			deadline := time.Now().Add(20 * time.Second)
			for seen := 0; seen < 3; {
				if time.Now().After(deadline) {
					t.Fatalf("no 503 within 20s; last answer %s", last)
				}
				req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+"/v1/numbers", nil)
				req.Header.Set("Authorization", "Bearer "+n.APIKey())
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				last = fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
				switch resp.StatusCode {
				case 200: // not noticed yet
					time.Sleep(20 * time.Millisecond)
					continue
				case 503:
				default:
					t.Fatalf("valid key during a store outage: %s", last)
				}
				if resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Retry-After") == "" ||
					!strings.Contains(string(b), "state store") {
					t.Fatalf("503 is not a problem naming the state store with Retry-After: %s (Retry-After %q)", last, resp.Header.Get("Retry-After"))
				}
				seen++
			}
		})
	}
}
