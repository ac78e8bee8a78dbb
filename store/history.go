package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Call history (package callhistory) lives in one stream per workspace,
// HistoryStreamPrefix + workspace id, subjects HistorySubjectPrefix +
// "<workspace>.*" (batches of events, and in history written before
// batches one subject per call). A workspace's calls are stored together, so
// listing them reads that workspace's stream and nobody else's (in one
// shared stream, a workspace's events are spread over every block and a
// listing loads them all), and one tenant's call volume cannot push
// another's history out of a shared size limit.
const (
	HistoryStreamPrefix  = "CALLGATE_HISTORY_"
	HistorySubjectPrefix = "callgate.history."
	// HistoryMaxMsgSize bounds a history message: a batch of a
	// workspace's events (callhistory.MaxBatchBytes) or, in history
	// written before batches, one event. An existing stream's limit is
	// raised to it by EnsureHistory.
	HistoryMaxMsgSize = 128 << 10
)

// Call history stream limits by default: 30 days, 64 MiB per workspace
// (about 50,000 answered calls). JetStream reserves each stream's max_bytes out of
// its storage (max_store): workspaces × max_bytes must fit in it.
const (
	DefaultHistoryMaxAge   = 30 * 24 * time.Hour
	DefaultHistoryMaxBytes = 64 << 20
)

// HistoryConfig bounds each workspace's call history stream: the oldest
// events go first when either limit is reached.
type HistoryConfig struct {
	MaxAge   time.Duration `yaml:"max_age" env:"CALLGATE_HISTORY_MAX_AGE" default:"720h" help:"call events older than this are dropped from the call history (GET /v1/calls); 0 = the default"`
	MaxBytes int64         `yaml:"max_bytes" env:"CALLGATE_HISTORY_MAX_BYTES" default:"67108864" help:"size limit of each workspace's call history (JetStream reserves it per workspace); its oldest events are dropped first; 0 = the default"`
}

func (c HistoryConfig) validate() []error {
	var errs []error
	if c.MaxAge < 0 || (c.MaxAge > 0 && c.MaxAge < time.Minute) {
		errs = append(errs, fmt.Errorf("nats.history.max_age: %s is out of range (at least 1m; 0 = default %s)", c.MaxAge, DefaultHistoryMaxAge))
	}
	if c.MaxBytes < 0 || (c.MaxBytes > 0 && c.MaxBytes < 1<<20) {
		errs = append(errs, fmt.Errorf("nats.history.max_bytes: %d is out of range (at least 1048576; 0 = default %d)", c.MaxBytes, DefaultHistoryMaxBytes))
	}
	return errs
}

// HistoryStreamName is the name of workspace ws's call history stream.
func HistoryStreamName(ws string) string { return HistoryStreamPrefix + ws }

// EnsureHistory creates workspace ws's call history stream, or updates
// its limits to the configured ones.
//
// On one node (one replica) a new stream is created in JetStream's async
// persist mode: a call event is acknowledged once it is in the stream's
// block cache, and written to the file with the events of the next few
// milliseconds (at most 8 ms later, nats-server's flush wait) instead of
// one write(2) per event: about 10 µs less CPU per call in
// callhistory's BenchmarkCallEvents (issue 15). What that gives up: if the callgate process
// dies, the events of those last milliseconds are not in the history
// (with the default mode they were already in the kernel's page cache;
// neither mode syncs to disk per event, so a crash of the machine loses
// recent events either way). Replicated streams are flushed
// asynchronously by nats-server already (their Raft log holds the
// events). A stream's persist mode cannot be changed after it is
// created, so an existing stream keeps the one it has.
func (s *Store) EnsureHistory(ctx context.Context, ws string) error {
	c := s.history
	if c.MaxAge == 0 {
		c.MaxAge = DefaultHistoryMaxAge
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultHistoryMaxBytes
	}
	cfg := jetstream.StreamConfig{
		Name:       HistoryStreamName(ws),
		Subjects:   []string{HistorySubjectPrefix + ws + ".*"},
		Storage:    jetstream.FileStorage,
		Replicas:   max(s.replicas, 1),
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
		MaxAge:     c.MaxAge,
		MaxBytes:   c.MaxBytes,
		MaxMsgSize: HistoryMaxMsgSize,
		DenyDelete: true,
		DenyPurge:  true,
	}
	if cfg.Replicas == 1 {
		cfg.PersistMode = jetstream.AsyncPersistMode
	}
	st, err := s.JS.Stream(ctx, cfg.Name)
	switch {
	case err == nil:
		cfg.PersistMode = st.CachedInfo().Config.PersistMode
		_, err = s.JS.UpdateStream(ctx, cfg)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		// CreateOrUpdate: another node may create it meanwhile
		_, err = s.JS.CreateOrUpdateStream(ctx, cfg)
	}
	if err != nil {
		return fmt.Errorf("store: stream %s: %w", HistoryStreamName(ws), err)
	}
	return nil
}

// History returns workspace ws's call history stream; (nil, nil) when
// the workspace has no call recorded.
func (s *Store) History(ctx context.Context, ws string) (jetstream.Stream, error) {
	st, err := s.JS.Stream(ctx, HistoryStreamName(ws))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: stream %s: %w", HistoryStreamName(ws), err)
	}
	return guardedStream{Stream: st, nc: s.NC}, nil
}
