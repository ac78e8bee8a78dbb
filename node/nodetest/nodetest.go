// Package nodetest starts callgate nodes for tests, as nats-server's test
// helpers start servers: every listener on a loopback port chosen at
// start, a fresh data directory, the config validated as `callgate serve`
// would, and a wait until the node is ready (what /readyz answers) instead
// of a sleep. The node is closed when the test ends.
//
//	n := nodetest.Start(t)
//	n := nodetest.Start(t, nodetest.Config(func(c *config.Config) { c.NATS.URL = url }))
//	n := nodetest.Start(t, nodetest.DataDir(dir), nodetest.Log(&logs))
package nodetest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
)

// StartTimeout bounds node.Start and then the wait for readiness (each).
const StartTimeout = 30 * time.Second

// Option changes how Start sets up a node.
type Option func(*options)

type options struct {
	base    *config.Config
	dataDir string
	mutate  []func(*config.Config)
	log     io.Writer
	now     func() time.Time
}

// Clock sets the node's clock (node.Options.Now: provisioning and the
// usage meter), e.g. to jump a metered call a minute ahead.
func Clock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// Config changes the node's config (after Base and DataDir, before
// validation). Several are applied in order; a nil f is ignored.
func Config(f func(*config.Config)) Option {
	return func(o *options) { o.mutate = append(o.mutate, f) }
}

// Base starts from cfg instead of TestConfig; its listeners and data
// directory are used as they are (a fresh temporary directory when
// DataDir is empty).
func Base(cfg config.Config) Option {
	return func(o *options) { o.base = &cfg }
}

// DataDir starts the node on dir instead of a fresh temporary directory
// (to test a restart on the same state).
func DataDir(dir string) Option {
	return func(o *options) { o.dataDir = dir }
}

// Log writes the node's log to w, as JSON lines at debug level. Without
// it the log is discarded.
func Log(w io.Writer) Option {
	return func(o *options) { o.log = w }
}

// TestConfig is the config Start begins with: the defaults, with the data
// directory in t.TempDir() and the HTTP and SIP listeners on loopback
// ports chosen at start.
func TestConfig(t testing.TB) config.Config {
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.SIP.Addr = "127.0.0.1:0"
	return cfg
}

// Start validates the config, starts a node and waits until it is ready;
// it fails the test if any of that fails. The node is closed when the test
// ends (closing it earlier, to test a restart, is allowed).
func Start(t testing.TB, opts ...Option) *node.Node {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	var cfg config.Config
	if o.base != nil {
		cfg = *o.base
		if cfg.DataDir == "" {
			cfg.DataDir = t.TempDir()
		}
	} else {
		cfg = TestConfig(t)
	}
	if o.dataDir != "" {
		cfg.DataDir = o.dataDir
	}
	for _, f := range o.mutate {
		if f != nil {
			f(&cfg)
		}
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("nodetest: config: %v", err)
	}
	log := slog.New(slog.DiscardHandler)
	if o.log != nil {
		log = slog.New(slog.NewJSONHandler(o.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	n, err := node.Start(ctx, cfg, node.Options{Log: log, Now: o.now})
	if err != nil {
		t.Fatalf("nodetest: start node: %v", err)
	}
	t.Cleanup(n.Close)
	testwait.CheckFor(t, StartTimeout, 10*time.Millisecond, func() error {
		if !n.Ready() {
			return errors.New("node not ready (/readyz)")
		}
		return nil
	})
	return n
}
