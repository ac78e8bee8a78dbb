package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// reindexWorkers is how many index writes a reindex keeps in flight.
const reindexWorkers = 8

// MigrateLayout brings a store written before the per-workspace index
// (layout 1: listings scanned whole buckets) to layout 2: every number,
// forwarding entry and integration gets its index entry (index.go), then
// the layout version is recorded so later starts skip the pass. Nothing
// is moved or deleted. It is idempotent and safe when several nodes run
// it at once (entries are created, an existing one is left alone). A node
// runs it on start, before it serves the API; it returns how many entries
// it wrote.
func (s *Service) MigrateLayout(ctx context.Context) (int, error) {
	e, err := s.st.Index.Get(ctx, indexLayoutKey)
	switch {
	case err == nil && string(e.Value()) >= layoutVersion:
		return 0, nil
	case err != nil && !errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, storeErr("read store layout", err)
	}
	start := time.Now()
	n, _, err := s.reindex(ctx, false)
	if err != nil {
		return n, err
	}
	if _, err := s.st.Index.Put(ctx, indexLayoutKey, []byte(layoutVersion)); err != nil {
		return n, storeErr("record store layout", err)
	}
	s.log.Info("provisioning: store layout migrated: each workspace's numbers, forwarding entries and integrations indexed",
		"layout", layoutVersion, "entries", n, "took", time.Since(start).Round(time.Millisecond))
	return n, nil
}

// recoverIndex is the recovery pass over the index: entries missing for
// a record (written by an older version during a rolling upgrade) are
// created, and entries without their record (a purchase or release
// interrupted between its two writes, or a lost race) are deleted once
// older than StaleClaimAge.
func (s *Service) recoverIndex(ctx context.Context) (int, error) {
	created, deleted, err := s.reindex(ctx, true)
	if created+deleted > 0 {
		s.log.Warn("provisioning: repaired the workspace index", "created", created, "deleted", deleted)
	}
	return created + deleted, err
}

type indexEntry struct {
	rev uint64
	at  time.Time
}

// reindex creates the index entries missing for existing records and,
// with gc, deletes stale entries that no record backs. The index is read
// before the records: an entry written after that read is not judged, and
// one judged stale but touched since (a purchase of the same number by
// the same workspace) survives its revision-guarded delete.
func (s *Service) reindex(ctx context.Context, gc bool) (created, deleted int, err error) {
	have := map[string]indexEntry{}
	err = s.scanKV(ctx, s.st.Index, func(e jetstream.KeyValueEntry) error {
		k := e.Key()
		if strings.HasPrefix(k, indexNumbers+".") || strings.HasPrefix(k, indexForwarding+".") || strings.HasPrefix(k, indexIntegrations+".") {
			have[k] = indexEntry{rev: e.Revision(), at: indexWritten(e)}
		}
		return nil
	})
	if err != nil {
		return 0, 0, storeErr("read index", err)
	}
	var missing []string
	want := func(kind, ws, id string) {
		if !indexable(ws, id) {
			s.log.Warn("provisioning: record not indexed: its workspace or key cannot be an index key", "kind", kind, "workspace", ws)
			return
		}
		k := indexKey(kind, ws, id)
		if _, ok := have[k]; ok {
			delete(have, k) // backed: not stale
			return
		}
		missing = append(missing, k)
	}
	// Number, forwarding and integration records all name their
	// workspace in "workspace".
	type owned struct {
		Workspace string `json:"workspace"`
	}
	for _, b := range []struct {
		kind string
		kv   jetstream.KeyValue
	}{{indexNumbers, s.st.Numbers}, {indexForwarding, s.st.Forwarding}, {indexIntegrations, s.st.Integrations}} {
		err := s.scanKV(ctx, b.kv, func(e jetstream.KeyValueEntry) error {
			var o owned
			if json.Unmarshal(e.Value(), &o) != nil {
				s.log.Warn("provisioning: record not indexed: it does not decode", "bucket", b.kv.Bucket(), "key", e.Key())
				return nil
			}
			want(b.kind, o.Workspace, e.Key())
			return nil
		})
		if err != nil {
			return 0, 0, storeErr("read "+b.kv.Bucket(), err)
		}
	}
	var mu sync.Mutex
	err = parallel(ctx, reindexWorkers, missing, func(k string) error {
		_, err := s.st.Index.Create(ctx, k, s.indexStamp())
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil // another node, or the record's own writer, was first
		}
		if err != nil {
			return storeErr("write index", err)
		}
		mu.Lock()
		created++
		mu.Unlock()
		return nil
	})
	if err != nil || !gc {
		return created, 0, err
	}
	now := s.now().UTC()
	for k, e := range have {
		if now.Sub(e.at) < StaleClaimAge {
			continue // its record may be about to be written
		}
		if err := s.st.Index.Delete(ctx, k, jetstream.LastRevision(e.rev)); err != nil {
			if isRevisionConflict(err) {
				continue // touched since: in use again
			}
			return created, deleted, storeErr("delete stale index entry", err)
		}
		deleted++
	}
	return created, deleted, nil
}

// parallel calls fn for each item, workers at a time, and returns the
// first error (the remaining items are then skipped).
func parallel(ctx context.Context, workers int, items []string, fn func(string) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	next := make(chan string)
	for range min(workers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range next {
				if err := fn(it); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for _, it := range items {
		select {
		case next <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}
