package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

func TestEmbeddedReopenKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Embedded() || st.ClientURL() != "" {
		t.Fatalf("embedded store listens: %q", st.ClientURL())
	}
	if _, err := st.Numbers.Create(ctx, "12282001234", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, err = store.Open(ctx, store.Config{}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Numbers.Get(ctx, "12282001234"); err != nil {
		t.Fatalf("data lost on reopen: %v", err)
	}
	if _, err := st.Numbers.Create(ctx, "12282001234", []byte(`{}`)); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("claim of an existing key: %v", err)
	}
}

// TestRequestsFailFastWhileNATSIsDown: with the server gone, a KV read
// fails within the reconnect grace (mapped to 503 by provisioning)
// instead of waiting out the caller's deadline.
func TestRequestsFailFastWhileNATSIsDown(t *testing.T) {
	srv := storetest.RunJetStreamServer(t)
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{URL: srv.ClientURL()}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Numbers.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	// A request sent before the client notices is bounded by OpTimeout;
	// once it knows the server is gone, requests fail within the grace.
	testwait.CheckFor(t, store.OpTimeout, 10*time.Millisecond, func() error {
		if st.Connected() {
			return errors.New("client still thinks it is connected")
		}
		return nil
	})
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = st.Numbers.Get(cctx, "k")
	took := time.Since(start)
	if !errors.Is(err, nats.ErrConnectionReconnecting) {
		t.Fatalf("read with NATS down: %v", err)
	}
	if took > store.ReconnectGrace+2*time.Second {
		t.Fatalf("read with NATS down took %v, want about %v", took, store.ReconnectGrace)
	}
}
