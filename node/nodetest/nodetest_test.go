package nodetest_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testlog"
	"github.com/callgate/callgate/node/nodetest"
)

// TestStartIsReadyOnLoopbackAndClosedAtTheEnd: Start returns a node that
// answers /readyz 200 on a loopback port, and the node is gone when the
// test that started it ends.
func TestStartIsReadyOnLoopbackAndClosedAtTheEnd(t *testing.T) {
	var addr string
	t.Run("node", func(t *testing.T) {
		n := nodetest.Start(t)
		addr = n.HTTPAddr()
		if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
			t.Fatalf("HTTP on %s, want loopback", addr)
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/readyz %d right after Start", resp.StatusCode)
		}
	})
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the test that started the node ended", addr)
	}
}

// TestStartOnADataDirRestarts: a node started again on the same data
// directory finds its state (the bootstrap API key) there.
func TestStartOnADataDirRestarts(t *testing.T) {
	dir := t.TempDir()
	var key string
	t.Run("first", func(t *testing.T) {
		key = nodetest.Start(t, nodetest.DataDir(dir)).APIKey()
	})
	n := nodetest.Start(t, nodetest.DataDir(dir))
	if n.Config().DataDir != dir || key == "" || n.APIKey() != key {
		t.Fatalf("restart on %s: data dir %s, key %q then %q", dir, n.Config().DataDir, key, n.APIKey())
	}
}

// TestStartAppliesConfigAndLog: Config changes reach the node in order and
// Log receives its JSON lines.
func TestStartAppliesConfigAndLog(t *testing.T) {
	var logs testlog.Buffer
	n := nodetest.Start(t, nodetest.Log(&logs),
		nodetest.Config(func(c *config.Config) { c.Region = "first" }),
		nodetest.Config(func(c *config.Config) { c.Region = "eu-test" }),
		nodetest.Config(nil))
	if got := n.Config().Region; got != "eu-test" {
		t.Fatalf("region %q, want the last Config's", got)
	}
	line, _, _ := strings.Cut(logs.String(), "\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil || m["msg"] == nil {
		t.Fatalf("log is not JSON lines: %q (%v)", line, err)
	}
}
