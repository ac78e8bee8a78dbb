package provisioning

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/store"
)

// The per-workspace index (bucket store.BucketIndex) lets a workspace's
// listing read only its own keys: "numbers.<ws>.<digits>",
// "forwarding.<ws>.<digits>" and "integrations.<ws>.<id>" name the
// records of ws. The records stay where they were (a number's record is
// also its global claim, keyed by its digits), so the routing Syncer,
// renewals and recovery read them as before, and every number is seen
// exactly once.
//
// Write order keeps one invariant: every record of workspace ws has its
// index entry. An entry is written (created, or touched so that its
// revision changes) before its record is created, and removed only after
// its record is deleted, and then only at the revision read before that
// deletion, so a remover never drops an entry that an adder touched
// meanwhile. A crash or a lost race can leave an entry without its record
// (never the reverse): listings skip such entries, and the recovery pass
// (recoverIndex) deletes those older than StaleClaimAge and recreates any
// entry missing (records written by an older version).
const (
	indexNumbers      = "numbers"
	indexForwarding   = "forwarding"
	indexIntegrations = "integrations"
	// indexLayoutKey holds the store layout version once existing records
	// are indexed (MigrateLayout).
	indexLayoutKey = "layout.version"
	layoutVersion  = "2"
)

// indexGets is how many record reads a listing keeps in flight.
const indexGets = 16

func indexKey(kind, ws, id string) string { return kind + "." + ws + "." + id }

// indexable reports whether ws and id can be NATS key tokens.
func indexable(ws, id string) bool {
	return ValidID(ws) && id != "" && !strings.ContainsAny(id, ".*> \t\r\n")
}

// indexRef is an entry written by indexAdd.
type indexRef struct {
	key     string
	rev     uint64
	created bool // absent before: undo deletes it
}

// indexAdd writes the entry of a record about to be created: created if
// absent, else touched (its revision bumped) so that a concurrent
// remover's guarded delete fails.
func (s *Service) indexAdd(ctx context.Context, kind, ws, id string) (indexRef, error) {
	if !indexable(ws, id) {
		return indexRef{}, fmt.Errorf("index %s of workspace %q: %q is not a usable key", kind, ws, id)
	}
	key := indexKey(kind, ws, id)
	for attempt := 0; attempt < 20; attempt++ {
		rev, err := s.st.Index.Create(ctx, key, s.indexStamp())
		if err == nil {
			return indexRef{key: key, rev: rev, created: true}, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return indexRef{}, storeErr("index "+kind, err)
		}
		e, err := s.st.Index.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed meanwhile: create it
		}
		if err != nil {
			return indexRef{}, storeErr("index "+kind, err)
		}
		rev, err = s.st.Index.Update(ctx, key, s.indexStamp(), e.Revision())
		if err == nil {
			return indexRef{key: key, rev: rev}, nil
		}
		if !isRevisionConflict(err) {
			return indexRef{}, storeErr("index "+kind, err)
		}
	}
	return indexRef{}, errorf(ErrConflict, "the %s index of this workspace is changing too fast; retry", kind)
}

// indexStamp is an entry's value: when it was written, on the service's
// clock (recovery judges an entry's age by it).
func (s *Service) indexStamp() []byte {
	return []byte(s.now().UTC().Format(time.RFC3339Nano))
}

// indexWritten is when an entry was written: its stamp, else the time
// the store took it.
func indexWritten(e jetstream.KeyValueEntry) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, string(e.Value())); err == nil {
		return t
	}
	return e.Created()
}

// indexUndo removes an entry indexAdd created when its record was not
// created after all (unless it was touched since: then it stays, and
// recovery or its record decides).
func (s *Service) indexUndo(ctx context.Context, ref indexRef) {
	if !ref.created {
		return
	}
	if err := s.st.Index.Delete(context.WithoutCancel(ctx), ref.key, jetstream.LastRevision(ref.rev)); err != nil && !isRevisionConflict(err) {
		s.log.Warn("provisioning: index entry left behind; recovery removes it", "key", ref.key, "err", err)
	}
}

// indexRev is the revision of an entry (0: absent or unreadable), read
// before its record is deleted and passed to indexRemove after.
func (s *Service) indexRev(ctx context.Context, kind, ws, id string) uint64 {
	if !indexable(ws, id) {
		return 0
	}
	e, err := s.st.Index.Get(ctx, indexKey(kind, ws, id))
	if err != nil {
		return 0
	}
	return e.Revision()
}

// indexRemove deletes the entry of a deleted record if it is still at
// rev (an adder touching it meanwhile keeps it).
func (s *Service) indexRemove(ctx context.Context, kind, ws, id string, rev uint64) {
	if rev == 0 {
		return
	}
	key := indexKey(kind, ws, id)
	if err := s.st.Index.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev)); err != nil && !isRevisionConflict(err) {
		s.log.Warn("provisioning: index entry left behind; recovery removes it", "key", key, "err", err)
	}
}

// indexed returns the ids the index lists for ws, reading only the
// workspace's keys (a watch filtered on "<kind>.<ws>.*", keys only).
func (s *Service) indexed(ctx context.Context, kind, ws string) ([]string, error) {
	if !ValidID(ws) {
		return nil, nil // no key of this workspace can exist
	}
	prefix := kind + "." + ws + "."
	var ids []string
	err := watchOnce(ctx, s.st, s.st.Index, prefix+"*", true, func(e jetstream.KeyValueEntry) error {
		ids = append(ids, strings.TrimPrefix(e.Key(), prefix))
		return nil
	})
	if err != nil {
		return nil, storeErr("list "+kind, err)
	}
	return ids, nil
}

// watchOnce calls fn with the current entry of every key of kv matching
// filter (values too unless metaOnly) and returns once all are seen, as
// Service.scanKV does for a whole bucket, with the same idle deadline.
func watchOnce(ctx context.Context, st *store.Store, kv jetstream.KeyValue, filter string, metaOnly bool, fn func(jetstream.KeyValueEntry) error) error {
	if err := st.WaitConnected(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := []jetstream.WatchOpt{jetstream.IgnoreDeletes()}
	if metaOnly {
		opts = append(opts, jetstream.MetaOnly())
	}
	w, err := kv.Watch(ctx, filter, opts...)
	if err != nil {
		return err
	}
	defer w.Stop()
	idle := time.NewTimer(store.OpTimeout)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle.C:
			return fmt.Errorf("reading %s %s: nothing for %s: %w", kv.Bucket(), filter, store.OpTimeout, context.DeadlineExceeded)
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("reading %s %s: the watch ended early: %w", kv.Bucket(), filter, nats.ErrConnectionClosed)
			}
			if e == nil {
				return nil
			}
			if err := fn(e); err != nil {
				return err
			}
			idle.Reset(store.OpTimeout)
		}
	}
}

// getEach reads the current entry of each key of kv, indexGets at a
// time, and calls fn (serialised) with those that exist; a key without
// an entry (an index entry whose record is gone) is skipped.
func getEach(ctx context.Context, kv jetstream.KeyValue, keys []string, fn func(jetstream.KeyValueEntry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan string)
	workers := min(indexGets, len(keys))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for key := range next {
				e, err := kv.Get(ctx, key)
				mu.Lock()
				switch {
				case first != nil:
				case errors.Is(err, jetstream.ErrKeyNotFound):
				case err != nil:
					first = err
					cancel()
				default:
					if err := fn(e); err != nil {
						first = err
						cancel()
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, k := range keys {
		select {
		case next <- k:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}
