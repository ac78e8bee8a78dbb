// Package storetest starts real NATS JetStream servers for tests.
package storetest

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/callgate/callgate/store"
)

// OpenEmbedded opens a store on an embedded nats-server with JetStream in
// a fresh temporary directory, closed when the test ends.
func OpenEmbedded(t testing.TB) *store.Store {
	t.Helper()
	return OpenEmbeddedAt(t, t.TempDir())
}

// OpenEmbeddedAt opens an embedded store on dataDir (to test restarts).
// The caller closes it.
func OpenEmbeddedAt(t testing.TB, dataDir string) *store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{}, dataDir, nil)
	if err != nil {
		t.Fatalf("open embedded store: %v", err)
	}
	t.Cleanup(st.Close)
	return st
}

// RunServer starts a core nats-server (no JetStream) listening on a
// random loopback port and returns it; it is shut down when the test ends.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServerWithOptions(t, &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true})
}

// RunJetStreamServer starts a standalone JetStream nats-server listening
// on a random loopback port (as an external NATS would be) and returns it;
// it is shut down when the test ends.
func RunJetStreamServer(t testing.TB) *server.Server {
	t.Helper()
	return RunJetStreamServerOnPort(t, server.RANDOM_PORT)
}

// RunJetStreamServerOnPort is RunJetStreamServer on a given loopback port.
func RunJetStreamServerOnPort(t testing.TB, port int) *server.Server {
	t.Helper()
	return RunServerWithOptions(t, &server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  t.TempDir(),
		NoSigs:    true,
		NoLog:     true,
	})
}

// RunServerWithOptions starts a nats-server with opts (a fresh Options
// each time: the server keeps and changes them), waits until it accepts
// connections and shuts it down when the test ends. Shutting it down
// earlier, to test an outage, is allowed.
func RunServerWithOptions(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("nats-server %s not ready for connections", opts.ServerName)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// LimitFileSize makes files of this process fail to grow past n bytes
// (EFBIG; Go ignores SIGXFSZ), a real IO error for JetStream's file store,
// until the returned func (or the test's end) restores the limit. It
// skips the test where the limit cannot be set. The limit is the whole
// process's: do not use it in parallel tests.
func LimitFileSize(t testing.TB, n uint64) (restore func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	lim := syscall.Rlimit{Cur: n, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("setrlimit: %v", err)
	}
	restored := false
	restore = func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
				t.Errorf("restore RLIMIT_FSIZE: %v", err)
			}
		}
	}
	t.Cleanup(restore)
	return restore
}
