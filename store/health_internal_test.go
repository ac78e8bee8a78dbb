package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// TestJetStreamShutDownRecovers: nats-server shuts JetStream down after a
// permission error while writing; once the data directory takes writes
// the store enables it again, and the data is still there.
func TestJetStreamShutDownRecovers(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, Config{}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Numbers.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := st.srv.ShutdownJetStream(); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if err := st.CheckHealth(ctx); err != nil {
			return fmt.Errorf("store not writable after JetStream was shut down: %w", err)
		}
		return nil
	})
	if st.Recoveries() == 0 {
		t.Fatal("no recovery counted")
	}
	if e, err := st.Numbers.Get(ctx, "k"); err != nil || string(e.Value()) != "v" {
		t.Fatalf("data after recovery: %v", err)
	}
	if _, err := st.Numbers.Put(ctx, "k2", []byte("v")); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
}
