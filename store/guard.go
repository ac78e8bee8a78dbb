package store

import (
	"context"
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

// guardedKV fails fast while NATS is unreachable; watches pass through
// (they resume by themselves).
type guardedKV struct {
	jetstream.KeyValue
	nc *nats.Conn
}

func (g guardedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, OpTimeout)
	defer cancel()
	if err := waitConnected(ctx, g.nc); err != nil {
		return nil, err
	}
	return g.KeyValue.Get(ctx, key)
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
