// Package storetest starts real NATS JetStream servers for tests.
package storetest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
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

// RunJetStreamCluster starts n JetStream nats-servers clustered on
// loopback (random client ports; cluster ports picked free beforehand,
// every server routed to all) and returns them once JetStream has a meta
// leader that sees all n peers online; they are shut down when the test ends. A store connects with
// Config{URL: ClusterURL(srvs), Replicas: n}.
func RunJetStreamCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	srvs := make([]*server.Server, n)
	for i := range srvs {
		o := &server.Options{
			ServerName: fmt.Sprintf("cg-%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster:    server.ClusterOpts{Name: "callgate-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:     routes,
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("nats-server %d: %v", i, err)
		}
		srvs[i] = s
		t.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		go s.Start()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ready, leader := true, false
		for _, s := range srvs {
			if !s.ReadyForConnections(10*time.Millisecond) || s.NumRoutes() < n-1 || !s.JetStreamIsCurrent() {
				ready = false
			}
			// The meta leader lists the peers that are online with
			// JetStream stats: placement of R3 assets needs all of them.
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == n {
				leader = true
			}
		}
		if ready && leader {
			return srvs
		}
		if time.Now().After(deadline) {
			t.Fatalf("JetStream cluster of %d did not form within 60s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ClusterURL is the comma-separated client URLs of srvs.
func ClusterURL(srvs []*server.Server) string {
	urls := make([]string, len(srvs))
	for i, s := range srvs {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}
