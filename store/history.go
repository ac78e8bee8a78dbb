package store

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamHistory holds every call's lifecycle events (package callhistory),
// one subject per workspace and call: HistorySubjectPrefix +
// "<workspace>.<call key>", so that a workspace's calls are read without
// reading anyone else's.
const (
	StreamHistory        = "CALLGATE_HISTORY"
	HistorySubjectPrefix = "callgate.history."
)

// Call history stream limits by default: 30 days, 1 GiB.
const (
	DefaultHistoryMaxAge   = 30 * 24 * time.Hour
	DefaultHistoryMaxBytes = 1 << 30
)

// HistoryConfig bounds the call history stream: the oldest events go
// first when either limit is reached.
type HistoryConfig struct {
	MaxAge   time.Duration `yaml:"max_age" env:"CALLGATE_HISTORY_MAX_AGE" default:"720h" help:"call events older than this are dropped from the call history (GET /v1/calls); 0 = the default"`
	MaxBytes int64         `yaml:"max_bytes" env:"CALLGATE_HISTORY_MAX_BYTES" default:"1073741824" help:"call history stream size limit; the oldest events are dropped first; 0 = the default"`
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

// ensureHistory creates or updates the call history stream: bounded by
// age and size (oldest events dropped first).
func (s *Store) ensureHistory(ctx context.Context, replicas int, c HistoryConfig) error {
	if c.MaxAge == 0 {
		c.MaxAge = DefaultHistoryMaxAge
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultHistoryMaxBytes
	}
	st, err := s.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       StreamHistory,
		Subjects:   []string{HistorySubjectPrefix + ">"},
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
		return fmt.Errorf("store: stream %s: %w", StreamHistory, err)
	}
	s.History = guardedStream{Stream: st, nc: s.NC}
	return nil
}
