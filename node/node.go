// Package node assembles one callgate gateway node from its config: the
// state store, the provisioning service, the routing snapshot kept current
// from NATS, the HTTP API and the edges. cmd/callgate's `serve` is a thin
// wrapper around it, and tests start whole nodes with it.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/callgate/callgate/api"
	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store"
)

// Node is a running gateway.
type Node struct {
	cfg      config.Config
	log      *slog.Logger
	now      func() time.Time // Options.Now: the clock of provisioning and the usage meter (nil: time.Now)
	reg      *prometheus.Registry
	st       *store.Store
	svc      *provisioning.Service
	table    *routing.Table
	syncer   *provisioning.Syncer
	httpSrv  *http.Server
	httpLn   net.Listener
	ready    atomic.Bool
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closers  []func()
	apiKey   string
	adminKey string
	edges    edges
	handler  handlerSwitch
	// dialogKey is secret_key: the SIP edge derives the key of its
	// Record-Route MACs from it, so every node verifies the others'.
	dialogKey []byte
}

// handlerSwitch serves whichever handler is current (start-up, then the API).
type handlerSwitch struct{ p atomic.Pointer[http.Handler] }

func (s *handlerSwitch) Store(h http.Handler) { s.p.Store(&h) }

func (s *handlerSwitch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.p.Load()).ServeHTTP(w, r)
}

// startingHandler answers while the store opens: alive, not ready.
func startingHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"alive"}` + "\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"status":"not ready","reason":"connecting to the state store (NATS)"}` + "\n"))
	})
	return mux
}

// openStore opens the store, retrying an external NATS that is not up
// yet until ctx ends.
func openStore(ctx context.Context, cfg config.Config, log *slog.Logger) (*store.Store, error) {
	delay := 250 * time.Millisecond
	for {
		st, err := store.Open(ctx, cfg.NATS, cfg.DataDir, log)
		if err == nil || cfg.NATS.URL == "" {
			return st, err
		}
		log.Warn("node: state store not reachable yet; retrying", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(delay):
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

// Options beyond the config (tests).
type Options struct {
	Log *slog.Logger
	Now func() time.Time
}

// Start opens the store, bootstraps on first start, starts the watchers
// and listeners. It returns once the HTTP listener is bound; /readyz turns
// 200 when the first routing snapshot is loaded.
func Start(ctx context.Context, cfg config.Config, o Options) (*Node, error) {
	cfg.Inherit()
	n := &Node{cfg: cfg, log: o.Log, now: o.Now, reg: prometheus.NewRegistry(), table: &routing.Table{}}
	if n.log == nil {
		n.log = slog.Default()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: data_dir %s: %w", cfg.DataDir, err)
	}
	applyRuntime(cfg.Runtime, n.log) // runtime.go: GC target
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(n.reg, cfg.Region)

	runCtx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel

	// The HTTP listener comes first, so that /healthz answers and /readyz
	// says 503 while the state store is being opened.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("node: http_addr %s: %w", cfg.HTTPAddr, err)
	}
	n.httpLn = ln
	n.handler.Store(startingHandler(n.reg))
	var limited net.Listener
	n.httpSrv, limited = newHTTPServer(ln, cfg.HTTP, &n.handler, n.log, n.reg)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.httpSrv.Serve(limited); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("node: http server", "err", err)
		}
	}()

	octx, ocancel := context.WithTimeout(ctx, 60*time.Second)
	defer ocancel()
	st, err := openStore(octx, cfg, n.log)
	if err != nil {
		n.Close()
		return nil, err
	}
	n.st = st
	n.closers = append(n.closers, st.Close)
	registerStoreMetrics(n.reg, st, n.table)
	registerStoreHealthMetrics(n.reg, st)

	key, keySource, err := secrets.Load(cfg.SecretKey, cfg.DataDir)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("node: secret_key: %w", err)
	}
	box, err := secrets.NewBox(key)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("node: secret_key: %w", err)
	}
	n.log.Debug("node: credentials key loaded", "source", keySource)
	n.dialogKey = key
	if err := checkSecretKey(octx, st, box, keySource); err != nil {
		n.Close()
		return nil, err
	}
	n.svc = provisioning.New(st, provisioning.Options{
		Sandbox:   cfg.Sandbox,
		PublicURL: cfg.PublicURL,
		Now:       o.Now,
		SIPRealm:  cfg.SIP.Agents.Realm,
		Log:       n.log,
		Metrics:   provisioning.NewMetrics(n.reg),
		Box:       box,
		Carriers: provisioning.CarrierSettings{
			TwilioAPIBase: cfg.Carriers.Twilio.APIBase,
			TwilioEdge:    cfg.Carriers.Twilio.Edge,
			TelnyxAPIBase: cfg.Carriers.Telnyx.APIBase,
			Metrics:       carrier.NewMetrics(n.reg),
		},
	})
	if err := n.startDebug(); err != nil {
		n.Close()
		return nil, fmt.Errorf("node: debug_addr %s: %w", cfg.DebugAddr, err)
	}
	if err := n.bootstrap(octx); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.migrateLayout(ctx); err != nil {
		n.Close()
		return nil, err
	}

	n.setSIPSelf()
	if _, err := n.svc.EnsureWebhookSecrets(octx); err != nil {
		n.log.Warn("node: could not give every workspace a webhook secret; retried at the next start", "err", err)
	}
	n.syncer = &provisioning.Syncer{Table: n.table, Integrations: n.svc.DecodeIntegration, Endpoints: n.svc.CheckEndpoint, Log: n.log,
		WorkspaceBucket: st.Workspaces, Workspaces: n.svc.DecodeWorkspace, CredentialBucket: st.SIPCredentials}
	registerSyncMetrics(n.reg, n.syncer, n.table)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.syncer.Run(runCtx, st.Numbers, st.Agents, st.Forwarding, st.Integrations); err != nil {
			n.log.Error("node: routing sync stopped", "err", err)
		}
	}()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.svc.RunRenewalLoop(runCtx, cfg.RenewalInterval)
	}()

	extra := map[string]http.Handler{
		"GET /metrics": promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}),
	}
	if err := n.startEdges(runCtx, extra); err != nil {
		n.Close()
		return nil, err
	}
	n.setSIPSelf()
	auditLog := n.startAudit(runCtx)
	if err := n.mountConsole(octx, extra, auditLog); err != nil {
		n.Close()
		return nil, err
	}
	h := api.New(api.Options{
		Service: n.svc,
		Log:     n.log,
		Ready:   n.readiness,
		Regions: n.regions,
		Extra:   extra,
		Metrics: api.NewMetrics(n.reg),
		Audit:   auditLog,
		Calls:   n.callHistory(),
		Placer:  n.edges.placer,
		Control: n.edges.control,
		// calls that reached agents by carrier webhooks (api/webhookcalls.go)
		WebhookCalls: n.edges.placer,
	})
	n.handler.Store(h)
	go func() {
		select {
		case <-n.syncer.Ready():
			n.ready.Store(true)
			n.log.Info("node: ready", "http", n.HTTPAddr(), "numbers", n.table.Load().Len())
		case <-runCtx.Done():
		}
	}()
	return n, nil
}

func (n *Node) readiness() (bool, string) {
	if !n.ready.Load() {
		return false, "routing snapshot not loaded yet"
	}
	if !n.edgesReady() {
		return false, "listeners not up"
	}
	// A store that is reachable but refuses this node's writes (a sticky
	// stream write error, a full disk) makes the node unready: other
	// nodes can serve. NATS out of reach altogether keeps it ready: every
	// node is in the same state then, and calls are routed from the last
	// snapshot (callgate_nats_connected and its alert tell the operator).
	if n.st.Connected() && n.st.Writable() != nil {
		return false, "the state store (NATS) does not accept writes (see the log)"
	}
	return true, ""
}

// Ready reports /readyz's answer.
func (n *Node) Ready() bool { ok, _ := n.readiness(); return ok }

// HTTPAddr is the bound HTTP address.
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// Service is the provisioning service (tests, CLI in-process).
func (n *Node) Service() *provisioning.Service { return n.svc }

// Table is the routing table.
func (n *Node) Table() *routing.Table { return n.table }

// Store is the state store.
func (n *Node) Store() *store.Store { return n.st }

// Registry is the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// APIKey and AdminKey are the bootstrap keys (empty when the files were
// removed by an operator).
func (n *Node) APIKey() string   { return n.apiKey }
func (n *Node) AdminKey() string { return n.adminKey }

// Close stops everything.
func (n *Node) Close() {
	if n.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = n.httpSrv.Shutdown(ctx)
		cancel()
	}
	if n.cancel != nil {
		n.cancel()
	}
	n.stopEdges()
	n.wg.Wait()
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
	n.closers = nil
}

// bootstrap creates the default workspace and the key files on first
// start; later starts reuse them.
func (n *Node) bootstrap(ctx context.Context) error {
	apiPath := filepath.Join(n.cfg.DataDir, "api-key")
	adminPath := filepath.Join(n.cfg.DataDir, "admin-key")
	ws := n.cfg.Bootstrap.Workspace
	_, err := n.svc.GetWorkspace(ctx, ws)
	switch {
	case err == nil:
		n.apiKey = readKey(apiPath)
		n.adminKey = readKey(adminPath)
		if n.adminKey == "" {
			n.log.Warn("node: admin key file missing; workspace management needs a key (delete the data dir to start over)", "path", adminPath)
		}
		return nil
	case !errors.Is(err, provisioning.ErrNotFound):
		return err
	}
	_, key, err := n.svc.CreateWorkspace(ctx, ws, ws, n.cfg.Bootstrap.Credits)
	if err != nil && !errors.Is(err, provisioning.ErrConflict) {
		return fmt.Errorf("node: bootstrap workspace %q: %w", ws, err)
	}
	if errors.Is(err, provisioning.ErrConflict) {
		// Another node sharing this NATS created it first.
		n.apiKey = readKey(apiPath)
		return nil
	}
	admin, err := n.svc.CreateKey(ctx, "", true)
	if err != nil {
		return err
	}
	if err := writeKey(apiPath, key); err != nil {
		return err
	}
	if err := writeKey(adminPath, admin); err != nil {
		return err
	}
	n.apiKey, n.adminKey = key, admin
	n.log.Info("node: first start: created workspace with credits; keys written (mode 0600)",
		"workspace", ws, "credits", n.cfg.Bootstrap.Credits, "api_key_file", apiPath, "admin_key_file", adminPath)
	return nil
}

func readKey(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func writeKey(path, key string) error {
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return fmt.Errorf("node: write %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

// Log is the node's logger.
func (n *Node) Log() *slog.Logger { return n.log }

// Config is the node's config.
func (n *Node) Config() config.Config { return n.cfg }

// secretCheckKey holds a value sealed with the cluster's credentials key.
const secretCheckKey = "_meta.secret_check"

// checkSecretKey refuses to start a node whose credentials key differs
// from the one the shared state was sealed with: it could not read other
// nodes' integrations, and what it sealed no other node could read.
func checkSecretKey(ctx context.Context, st *store.Store, box *secrets.Box, source string) error {
	e, err := st.Workspaces.Get(ctx, secretCheckKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, err = st.Workspaces.Create(ctx, secretCheckKey, []byte(box.SealString("callgate secret check", secretCheckKey)))
		if err == nil || errors.Is(err, jetstream.ErrKeyExists) {
			return checkSecretKey(ctx, st, box, source)
		}
	}
	if err != nil {
		return fmt.Errorf("node: secret key check: %w", err)
	}
	if _, err := box.OpenString(string(e.Value()), secretCheckKey); err != nil {
		return fmt.Errorf("node: secret_key (from %s) is not the key this NATS state was sealed with: every node sharing a NATS must use the same secret_key (CALLGATE_SECRET_KEY), or carrier credentials cannot be read", source)
	}
	return nil
}
