package store

import (
	"context"
	"testing"
	"time"
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
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := st.CheckHealth(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store not writable 20s after JetStream was shut down: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
