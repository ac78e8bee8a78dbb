package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ReconnectGrace is how long a control-plane request waits for a lost NATS
// connection to come back before it fails. A fail-over to another node of
// a cluster takes well under it; a NATS outage then answers at once
// instead of when the caller's deadline passes (nats.go would otherwise
// keep the request in its reconnect buffer for the whole deadline, 30 s
// for an API request).
const ReconnectGrace = 2 * time.Second

// OpTimeout bounds one control-plane request that has a single answer
// (get, create, update, put, delete, publish). A request the cluster loses
// (sent as the NATS server went away, or a publish while its stream elects
// a new leader) is never answered; without a bound it would wait out the
// caller's deadline.
const OpTimeout = 5 * time.Second

// waitConnected returns nil once the connection is up, and an error
// wrapping nats.ErrConnectionReconnecting (which provisioning maps to 503)
// when it is still down after ReconnectGrace.
func waitConnected(ctx context.Context, nc *nats.Conn) error {
	if nc.IsConnected() {
		return nil
	}
	grace := time.NewTimer(ReconnectGrace)
	defer grace.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-grace.C:
			return fmt.Errorf("store: NATS unreachable for %s: %w", ReconnectGrace, nats.ErrConnectionReconnecting)
		case <-tick.C:
			if nc.IsConnected() {
				return nil
			}
			if nc.IsClosed() {
				return nats.ErrConnectionClosed
			}
		}
	}
}

// ErrUnavailable is a state store that answered, but could not read or
// write what was asked (a JetStream storage failure): a 503, not a 404.
var ErrUnavailable = errors.New("state store unavailable")

// guardedKV fails fast while NATS is unreachable; watches pass through
// (they resume by themselves).
type guardedKV struct {
	jetstream.KeyValue
	nc     *nats.Conn
	stream jetstream.Stream // the bucket's stream, to confirm a key is absent
}

// Get is KeyValue.Get, but a "not found" is confirmed before it is
// returned: nats-server answers 404 to a get whose message it failed to
// load (server/stream.go folds every load error into "Message Not
// Found"), so under an IO failure (EMFILE) an existing key, such as a
// valid API key, looked absent.
func (g guardedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		e, err := g.KeyValue.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) && g.stream != nil {
			if cerr := g.confirmAbsent(ctx, key); cerr != nil {
				if errors.Is(cerr, errRewritten) && attempt < 3 {
					continue // written again since the get: read it again
				}
				return nil, cerr
			}
		}
		return e, err
	}
}

// errRewritten: a key found absent was written again before its absence
// was confirmed (a delete and a create racing), so the get is repeated.
var errRewritten = fmt.Errorf("key written again while it was read: %w", ErrUnavailable)

// confirmAbsent asks the stream's subject index (kept in memory, so it
// does not depend on loading messages) how many messages the key has:
// none, or a delete marker last, means absent; anything else means the
// read failed.
func (g guardedKV) confirmAbsent(ctx context.Context, key string) error {
	subj := "$KV." + g.Bucket() + "." + key
	info, err := g.stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return fmt.Errorf("store: %s: key %q not found, and confirming it failed (%v): %w", g.Bucket(), key, err, ErrUnavailable)
	}
	if info.State.Subjects[subj] == 0 {
		return nil
	}
	if m, err := g.stream.GetLastMsgForSubject(ctx, subj); err == nil {
		switch m.Header.Get("KV-Operation") {
		case "DEL", "PURGE":
			return nil
		}
		return fmt.Errorf("store: %s: key %q: %w", g.Bucket(), key, errRewritten)
	}
	return fmt.Errorf("store: %s: key %q exists but could not be read: %w", g.Bucket(), key, ErrUnavailable)
}

func (g guardedKV) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.KeyValue.GetRevision(ctx, key, revision)
}

func (g guardedKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return 0, err
	}
	return g.KeyValue.Put(ctx, key, value)
}

func (g guardedKV) PutString(ctx context.Context, key string, value string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return 0, err
	}
	return g.KeyValue.PutString(ctx, key, value)
}

func (g guardedKV) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return 0, err
	}
	return g.KeyValue.Create(ctx, key, value, opts...)
}

func (g guardedKV) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return 0, err
	}
	return g.KeyValue.Update(ctx, key, value, revision)
}

func (g guardedKV) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return err
	}
	return g.KeyValue.Delete(ctx, key, opts...)
}

func (g guardedKV) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return err
	}
	return g.KeyValue.Purge(ctx, key, opts...)
}

func (g guardedKV) ListKeys(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyLister, error) {
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.KeyValue.ListKeys(ctx, opts...)
}

func (g guardedKV) ListKeysFiltered(ctx context.Context, filters ...string) (jetstream.KeyLister, error) {
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.KeyValue.ListKeysFiltered(ctx, filters...)
}

func (g guardedKV) Keys(ctx context.Context, opts ...jetstream.WatchOpt) ([]string, error) {
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.KeyValue.Keys(ctx, opts...) //nolint:staticcheck // pass-through of a deprecated method
}

func (g guardedKV) History(ctx context.Context, key string, opts ...jetstream.WatchOpt) ([]jetstream.KeyValueEntry, error) {
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.KeyValue.History(ctx, key, opts...)
}

// guardedStream guards the ledger stream's reads.
type guardedStream struct {
	jetstream.Stream
	nc *nats.Conn
}

func (g guardedStream) Info(ctx context.Context, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.Stream.Info(ctx, opts...)
}

func (g guardedStream) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.Stream.GetMsg(ctx, seq, opts...)
}

func (g guardedStream) GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.Stream.GetLastMsgForSubject(ctx, subject)
}

// guardedJS guards JetStream publishes (ledger entries).
type guardedJS struct {
	jetstream.JetStream
	nc *nats.Conn
}

func (g guardedJS) Publish(ctx context.Context, subject string, payload []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.JetStream.Publish(ctx, subject, payload, opts...)
}

func (g guardedJS) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.JetStream.PublishMsg(ctx, msg, opts...)
}
