// Package store keeps callgate's state in NATS JetStream: KV buckets for
// workspaces, keys, numbers, agents, forwarding and integrations, and the
// append-only credit ledger stream. By default it runs an embedded
// nats-server (JetStream file store under the data dir) and connects to it
// in-process; with a URL it uses an external NATS cluster instead.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket and stream names.
const (
	BucketWorkspaces   = "callgate_workspaces"
	BucketAPIKeys      = "callgate_apikeys"
	BucketNumbers      = "callgate_numbers"
	BucketAgents       = "callgate_agents"
	BucketForwarding   = "callgate_forwarding"
	BucketIntegrations = "callgate_integrations"
	BucketIdempotency  = "callgate_idempotency"
	StreamLedger       = "CALLGATE_LEDGER"
	// LedgerSubjectPrefix + workspace id is the ledger subject of a workspace.
	LedgerSubjectPrefix = "callgate.ledger."
	StreamAudit         = "CALLGATE_AUDIT"
	// AuditSubjectPrefix + "<workspace>.<resource>.<verb>" is the subject
	// of an audit record (package audit).
	AuditSubjectPrefix = "callgate.audit."
)

// BucketIndex lists each workspace's numbers, forwarding entries and
// integrations under "<kind>.<workspace>.<key>", so that a workspace's
// listing reads only its own keys (provisioning/index.go). The records
// themselves stay where they were: numbers and business lines keyed by
// their digits (the global claim that keeps them unique), integrations
// by id.
const BucketIndex = "callgate_index"

// BucketSIPCredentials holds agents' SIP digest credentials (HA1s only),
// keyed by username, which is unique across the deployment.
const BucketSIPCredentials = "callgate_sip_credentials"

// Audit stream limits by default: 90 days, 256 MiB.
const (
	DefaultAuditMaxAge   = 90 * 24 * time.Hour
	DefaultAuditMaxBytes = 256 << 20
)

// AuditConfig bounds the audit stream: the oldest records go first when
// either limit is reached.
type AuditConfig struct {
	MaxAge   time.Duration `yaml:"max_age" env:"CALLGATE_AUDIT_MAX_AGE" default:"2160h" help:"audit records older than this are dropped (GET /v1/audit); 0 = the default"`
	MaxBytes int64         `yaml:"max_bytes" env:"CALLGATE_AUDIT_MAX_BYTES" default:"268435456" help:"audit stream size limit; the oldest records are dropped first; 0 = the default"`
}

// Config selects and tunes the NATS the store uses.
type Config struct {
	// URL of an external NATS server or cluster (comma-separated); empty
	// runs the embedded server.
	URL string `yaml:"url" env:"CALLGATE_NATS_URL" help:"external NATS server/cluster (JetStream), comma-separated; empty = embedded server"`
	// Listen makes the embedded server accept clients on this address
	// (e.g. "127.0.0.1:4222", or port 0 for one chosen at start). Empty
	// means in-process connections only.
	Listen string `yaml:"listen" env:"CALLGATE_NATS_LISTEN" help:"embedded server client address (e.g. 127.0.0.1:4222); empty = in-process only"`
	// Replicas for KV buckets and the ledger stream (3 on a cluster).
	Replicas int `yaml:"replicas" env:"CALLGATE_NATS_REPLICAS" help:"KV and ledger replicas (3 on a cluster)"`
	// Credentials file (.creds) for an external NATS.
	CredsFile string `yaml:"creds_file" env:"CALLGATE_NATS_CREDS" help:"NATS credentials file for an external cluster"`
	// Audit bounds the audit stream (zero values: the defaults).
	Audit AuditConfig `yaml:"audit"`
	// History bounds the call history stream (zero values: the defaults).
	History HistoryConfig `yaml:"history"`
}

// Validate checks the config.
func (c Config) Validate() []error {
	var errs []error
	if c.Replicas < 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("nats.replicas: %d is out of range 1..5", c.Replicas))
	}
	if c.URL != "" && c.Listen != "" {
		errs = append(errs, errors.New("nats.listen: only applies to the embedded server, but nats.url is set"))
	}
	if c.Audit.MaxAge < 0 || (c.Audit.MaxAge > 0 && c.Audit.MaxAge < time.Minute) {
		errs = append(errs, fmt.Errorf("nats.audit.max_age: %s is out of range (at least 1m; 0 = default %s)", c.Audit.MaxAge, DefaultAuditMaxAge))
	}
	if c.Audit.MaxBytes < 0 || (c.Audit.MaxBytes > 0 && c.Audit.MaxBytes < 1<<20) {
		errs = append(errs, fmt.Errorf("nats.audit.max_bytes: %d is out of range (at least 1048576; 0 = default %d)", c.Audit.MaxBytes, DefaultAuditMaxBytes))
	}
	errs = append(errs, c.History.validate()...)
	return errs
}

// Store is an open connection to callgate's state.
type Store struct {
	NC  *nats.Conn
	JS  jetstream.JetStream
	srv *server.Server // embedded server, nil when external
	log *slog.Logger
	// health is the write probe and embedded-server recovery (health.go).
	health health

	Workspaces   jetstream.KeyValue
	APIKeys      jetstream.KeyValue
	Numbers      jetstream.KeyValue
	Agents       jetstream.KeyValue
	Forwarding   jetstream.KeyValue
	Integrations jetstream.KeyValue
	Idempotency  jetstream.KeyValue
	Ledger       jetstream.Stream
	Audit        jetstream.Stream

	history  HistoryConfig // per-workspace call history streams (history.go)
	replicas int

	// SIPCredentials holds agents' SIP credentials (provisioning).
	SIPCredentials jetstream.KeyValue
	// Index holds the per-workspace keys of BucketIndex.
	Index jetstream.KeyValue
}

// Open starts (when embedded) and connects to NATS, then creates or opens
// every bucket and stream. dataDir holds the embedded JetStream store.
func Open(ctx context.Context, cfg Config, dataDir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{log: log}
	opts := []nats.Option{
		nats.Name("callgate"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() || err == nil {
				return // our own Close
			}
			log.Warn("store: NATS disconnected; routing continues from the last snapshot", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("store: NATS reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		// Asynchronous errors (a KV watcher's consumer missing its
		// heartbeats, slow consumers) go to the log, not to stderr.
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			if errors.Is(err, nats.ErrConsumerNotActive) && !nc.IsConnected() {
				log.Debug("store: NATS watcher idle while disconnected", "subject", subject, "err", err)
				return
			}
			log.Warn("store: NATS asynchronous error", "subject", subject, "err", err)
		}),
	}
	if cfg.URL == "" {
		srv, err := StartEmbedded(EmbeddedOptions{StoreDir: filepath.Join(dataDir, "nats"), Listen: cfg.Listen, Log: log})
		if err != nil {
			return nil, err
		}
		s.srv = srv
		s.health.storeDir = filepath.Join(dataDir, "nats")
		opts = append(opts, nats.InProcessServer(srv))
		nc, err := nats.Connect("", opts...)
		if err != nil {
			srv.Shutdown()
			return nil, fmt.Errorf("store: connect to embedded NATS: %w", err)
		}
		s.NC = nc
	} else {
		if cfg.CredsFile != "" {
			opts = append(opts, nats.UserCredentials(cfg.CredsFile))
		}
		opts = append(opts, nats.RetryOnFailedConnect(false))
		nc, err := nats.Connect(cfg.URL, opts...)
		if err != nil {
			return nil, fmt.Errorf("store: connect to NATS at %s: %w", redactURL(cfg.URL), err)
		}
		s.NC = nc
	}
	js, err := jetstream.New(s.NC)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("store: jetstream: %w", err)
	}
	s.JS = guardedJS{JetStream: js, nc: s.NC}
	if err := s.ensure(ctx, cfg.Replicas, cfg.Audit); err != nil {
		s.Close()
		return nil, err
	}
	s.history, s.replicas = cfg.History, cfg.Replicas
	s.startHealth(ctx)
	return s, nil
}

func (s *Store) ensure(ctx context.Context, replicas int, audit AuditConfig) error {
	if replicas == 0 {
		replicas = 1
	}
	kvs := []struct {
		dst     *jetstream.KeyValue
		name    string
		history uint8
		ttl     time.Duration
	}{
		{&s.Workspaces, BucketWorkspaces, 1, 0},
		{&s.APIKeys, BucketAPIKeys, 1, 0},
		{&s.Numbers, BucketNumbers, 5, 0},
		{&s.Agents, BucketAgents, 1, 0},
		{&s.Forwarding, BucketForwarding, 1, 0},
		{&s.Integrations, BucketIntegrations, 1, 0},
		{&s.Idempotency, BucketIdempotency, 1, 24 * time.Hour},
		{&s.Index, BucketIndex, 1, 0},
		{&s.SIPCredentials, BucketSIPCredentials, 1, 0},
		{&s.health.kv, BucketHealth, 1, healthKeyTTL},
	}
	for _, k := range kvs {
		kv, err := s.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:   k.name,
			History:  k.history,
			TTL:      k.ttl,
			Replicas: replicas,
			Storage:  jetstream.FileStorage,
		})
		if err != nil {
			return fmt.Errorf("store: bucket %s: %w", k.name, err)
		}
		if replicas > 1 {
			// Direct gets may be answered by a replica that has not caught
			// up (a listing right after a NATS restart missed keys): read
			// from the stream leader instead.
			if kv, err = leaderReads(ctx, s.JS, k.name, kv); err != nil {
				return fmt.Errorf("store: bucket %s: %w", k.name, err)
			}
		}
		st, err := s.JS.Stream(ctx, "KV_"+k.name)
		if err != nil {
			return fmt.Errorf("store: bucket %s: %w", k.name, err)
		}
		*k.dst = guardedKV{KeyValue: kv, nc: s.NC, stream: st}
	}
	st, err := s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       StreamLedger,
		Subjects:   []string{LedgerSubjectPrefix + ">"},
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		Retention:  jetstream.LimitsPolicy,
		Duplicates: 10 * time.Minute,
		DenyDelete: true,
		DenyPurge:  true,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", StreamLedger, err)
	}
	s.Ledger = guardedStream{Stream: st, nc: s.NC}
	return s.ensureAudit(ctx, replicas, audit)
}

// ensureAudit creates or updates the audit stream: bounded by age and
// size (oldest records dropped first), never by a flood of writes.
func (s *Store) ensureAudit(ctx context.Context, replicas int, c AuditConfig) error {
	if c.MaxAge == 0 {
		c.MaxAge = DefaultAuditMaxAge
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultAuditMaxBytes
	}
	st, err := s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       StreamAudit,
		Subjects:   []string{AuditSubjectPrefix + ">"},
		Storage:    jetstream.FileStorage,
		Replicas:   replicas,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		MaxAge:     c.MaxAge,
		MaxBytes:   c.MaxBytes,
		MaxMsgSize: 16 << 10,
		DenyDelete: true,
		DenyPurge:  true,
	})
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", StreamAudit, err)
	}
	s.Audit = guardedStream{Stream: st, nc: s.NC}
	return nil
}

// Embedded reports whether the store runs its own nats-server.
func (s *Store) Embedded() bool { return s.srv != nil }

// ClientURL is the embedded server's client URL when it listens, else "".
func (s *Store) ClientURL() string {
	if s.srv == nil {
		return ""
	}
	if s.srv.Addr() == nil {
		return ""
	}
	return s.srv.ClientURL()
}

// Connected reports whether the NATS connection is up.
func (s *Store) Connected() bool { return s.NC != nil && s.NC.IsConnected() }

// WaitConnected returns nil once the NATS connection is up, and an error
// (nats.ErrConnectionReconnecting: the state store is unavailable) when
// it is still down after ReconnectGrace. Watches are not guarded (they
// resume by themselves); a caller that reads a bucket through one and
// wants to fail fast calls this first.
func (s *Store) WaitConnected(ctx context.Context) error { return waitConnected(ctx, s.NC) }

// Close drains the connection and stops the embedded server.
func (s *Store) Close() {
	s.stopHealth()
	if s.NC != nil {
		s.NC.Close()
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
}

// EmbeddedOptions configure StartEmbedded.
type EmbeddedOptions struct {
	StoreDir string
	Listen   string       // "" = no client listener (in-process only)
	Log      *slog.Logger // the server's warnings and errors; nil = slog.Default()
}

const embeddedMaxMemory = 256 << 20

// StartEmbedded starts a JetStream-enabled nats-server in this process.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	opts := &server.Options{
		ServerName:         "callgate-embedded",
		JetStream:          true,
		StoreDir:           o.StoreDir,
		NoSigs:             true,
		NoLog:              true,
		DontListen:         o.Listen == "",
		MaxPayload:         8 << 20,
		JetStreamMaxMemory: embeddedMaxMemory,
	}
	if o.Listen != "" {
		host, port, err := splitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("store: nats.listen %q: %w", o.Listen, err)
		}
		opts.Host, opts.Port = host, port
		if port == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("store: embedded NATS: %w", err)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	srv.SetLoggerV2(natsLogger{log: o.Log}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("store: embedded NATS did not become ready within 10s")
	}
	return srv, nil
}

// leaderReads turns off direct gets on a bucket's stream and rebinds it.
func leaderReads(ctx context.Context, js jetstream.JetStream, bucket string, kv jetstream.KeyValue) (jetstream.KeyValue, error) {
	st, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return nil, err
	}
	cfg := st.CachedInfo().Config
	if !cfg.AllowDirect {
		return kv, nil
	}
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return nil, err
	}
	return js.KeyValue(ctx, bucket)
}
