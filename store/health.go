package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// BucketHealth holds one key per node that the write probe rewrites.
const BucketHealth = "callgate_health"

const (
	// ProbeInterval is how often the store checks that it can write.
	ProbeInterval = 2 * time.Second
	// ProbeTimeout bounds one probe write.
	ProbeTimeout = 2 * time.Second
	// recoverEvery spaces out attempts to restart a faulty embedded
	// JetStream (a disk that stays broken is not restarted in a loop).
	recoverEvery = 10 * time.Second
	healthKeyTTL = 10 * time.Minute
)

// health is the store's write probe state: the probe runs every
// ProbeInterval in the background, so Writable is cheap enough for
// /readyz.
type health struct {
	kv       jetstream.KeyValue
	key      string
	storeDir string // embedded: the server's StoreDir, to restart JetStream

	mu         sync.Mutex
	err        error // last probe result (nil: the write went through)
	checked    time.Time
	lastRecov  time.Time
	recoveries atomic.Uint64
	probes     atomic.Uint64
	failures   atomic.Uint64

	stop chan struct{}
	done chan struct{}
}

// Writable reports the last write probe: nil when the store accepted a
// write within ProbeTimeout, else why not.
func (s *Store) Writable() error {
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	return s.health.err
}

// Recoveries counts restarts of the embedded JetStream after a sticky
// write error.
func (s *Store) Recoveries() uint64 { return s.health.recoveries.Load() }

// ProbeFailures counts write probes that failed.
func (s *Store) ProbeFailures() uint64 { return s.health.failures.Load() }

func (s *Store) startHealth(ctx context.Context) {
	s.health.key = "probe." + nuid.Next()
	s.health.stop = make(chan struct{})
	s.health.done = make(chan struct{})
	s.CheckHealth(ctx)
	go func() {
		defer close(s.health.done)
		t := time.NewTicker(ProbeInterval)
		defer t.Stop()
		for {
			select {
			case <-s.health.stop:
				return
			case <-t.C:
				s.CheckHealth(context.Background())
			}
		}
	}()
}

func (s *Store) stopHealth() {
	if s.health.stop == nil {
		return
	}
	close(s.health.stop)
	<-s.health.done
	s.health.stop = nil
}

// CheckHealth probes now: with the embedded server it first looks for a
// sticky write error (nats-server stops writing to a stream after an IO
// failure such as EMFILE or EFBIG until the stream is loaded again, and
// shuts JetStream down after a permission error) and restarts JetStream
// to clear it; then it writes this node's probe key. The result is what
// Writable reports until the next check.
func (s *Store) CheckHealth(ctx context.Context) error {
	if fault := s.embeddedFault(); fault != nil {
		if err := diskWritable(s.health.storeDir); err != nil {
			// The cause is still there: restarting would not help.
			s.log.Debug("store: data directory not writable yet; not restarting JetStream", "err", err)
		} else {
			s.recoverEmbedded(fault)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	_, err := s.health.kv.Put(ctx, s.health.key, []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	if err != nil {
		err = fmt.Errorf("store: the state store does not accept writes: %w", err)
	}
	if err == nil {
		// A stream may have failed while the probe's did not.
		err = s.embeddedFault()
	}
	s.health.probes.Add(1)
	s.health.mu.Lock()
	was := s.health.err
	s.health.err, s.health.checked = err, time.Now()
	s.health.mu.Unlock()
	switch {
	case err != nil:
		s.health.failures.Add(1)
		if was == nil {
			s.log.Error("store: write probe failed; not ready until writes go through", "err", err)
		}
	case was != nil:
		s.log.Info("store: writes go through again")
	}
	return err
}

// embeddedFault asks the embedded nats-server for a stream write error or
// a JetStream that shut itself down; nil with an external NATS.
func (s *Store) embeddedFault() error {
	if s.srv == nil {
		return nil
	}
	if !s.srv.JetStreamEnabled() {
		return errors.New("store: embedded JetStream is disabled (after a storage error)")
	}
	h := s.srv.Healthz(&server.HealthzOptions{Details: true})
	var msgs []string
	for _, e := range h.Errors {
		if e.Type == server.HealthzErrorJetStream || (e.Type == server.HealthzErrorStream && strings.Contains(e.Error, "write error")) {
			msgs = append(msgs, e.Error)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("store: embedded NATS: %s", strings.Join(msgs, "; "))
}

// recoverEmbedded loads the embedded JetStream's streams from disk
// again, which clears their sticky write errors: for a stream error, by
// turning JetStream off and on for the (global) account, which stops
// the streams without deleting anything and recovers them from their
// files; when JetStream shut itself down, by enabling it again. The
// in-process connection and the buckets carry on; KV watchers recreate
// their consumers.
func (s *Store) recoverEmbedded(fault error) {
	s.health.mu.Lock()
	if !s.health.lastRecov.IsZero() && time.Since(s.health.lastRecov) < recoverEvery {
		s.health.mu.Unlock()
		return
	}
	s.health.lastRecov = time.Now()
	s.health.mu.Unlock()
	s.log.Error("store: embedded JetStream cannot write; reloading it to recover", "fault", fault)
	s.health.recoveries.Add(1)
	if !s.srv.JetStreamEnabled() {
		// nats-server's own reload path does this (restartJetStream).
		cfg := &server.JetStreamConfig{StoreDir: s.health.storeDir, MaxMemory: embeddedMaxMemory, Strict: true}
		if err := s.srv.EnableJetStream(cfg); err != nil {
			s.log.Error("store: enabling embedded JetStream failed; retrying later", "err", err)
			return
		}
		s.log.Warn("store: embedded JetStream enabled again")
		return
	}
	acc := s.srv.GlobalAccount()
	if err := acc.DisableJetStream(); err != nil {
		s.log.Error("store: stopping the embedded JetStream streams", "err", err)
	}
	if err := acc.EnableJetStream(nil, nil); err != nil {
		s.log.Error("store: reloading the embedded JetStream streams failed; retrying later", "err", err)
		return
	}
	s.log.Warn("store: embedded JetStream streams reloaded")
}

// diskWritable writes, syncs and removes a 128 KiB file in dir: whether the
// IO error that stopped JetStream (no space, no file descriptors, file
// size limit, permissions) is gone.
func diskWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".callgate-probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(make([]byte, 128<<10)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
