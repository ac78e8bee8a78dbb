package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/store/storetest"
)

// TestReadyzFollowsStoreWrites: /readyz says not ready while the state
// store refuses writes (a real IO error in the embedded JetStream), and
// ready again once it recovered, without a restart.
func TestReadyzFollowsStoreWrites(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	t.Cleanup(n.Close)
	c := httpClient{t: t, base: n.HTTPAddr()}
	if code, m := c.do("GET", "/readyz", ""); code != 200 {
		t.Fatalf("readyz at start: %d %v", code, m)
	}
	ctx := context.Background()
	val := make([]byte, 8<<10)
	restore := storetest.LimitFileSize(t, 64<<10)
	var failed error
	for i := 0; i < 64 && failed == nil; i++ {
		_, failed = n.Store().Idempotency.Put(ctx, fmt.Sprintf("fill-%d", i), val)
	}
	if failed == nil {
		restore()
		t.Fatal("no write failed with files limited to 64 KiB")
	}
	var reason any
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		code, m := c.do("GET", "/readyz", "")
		if code != 503 {
			return fmt.Errorf("readyz %d %v while writes fail", code, m)
		}
		reason = m["reason"]
		return nil
	})
	t.Logf("not ready: %v", reason)
	if code, _ := c.do("GET", "/healthz", ""); code != 200 {
		t.Fatalf("healthz while the store cannot write: %d", code)
	}
	restore()
	testwait.CheckFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if code, m := c.do("GET", "/readyz", ""); code != 200 {
			return fmt.Errorf("readyz %d %v after the cause is gone", code, m)
		}
		return nil
	})
	if _, err := n.Store().Idempotency.Put(ctx, "after", val); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
}
