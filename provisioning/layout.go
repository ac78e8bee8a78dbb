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

// reindex adds the ids missing from the index for existing records and,
// with gc, removes stale ids that no record backs. The index is read
// before the records: an id added after that read is not judged, and one
// judged stale but stamped again since (a purchase of the same number by
// the same workspace) survives its stamp-guarded removal.
func (s *Service) reindex(ctx context.Context, gc bool) (created, deleted int, err error) {
	type listed struct{ kind, ws, id, stamp string }
	have := map[string]listed{} // kind ws id -> its listing
	err = s.scanKV(ctx, s.st.Index, func(e jetstream.KeyValueEntry) error {
		kind, rest, _ := strings.Cut(e.Key(), ".")
		ws, _, _ := strings.Cut(rest, ".")
		if kind != indexNumbers && kind != indexForwarding && kind != indexIntegrations {
			return nil
		}
		var d indexDoc
		if json.Unmarshal(e.Value(), &d) != nil {
			return nil // unreadable: its ids are added again below
		}
		for id, stamp := range d {
			have[kind+" "+ws+" "+id] = listed{kind, ws, id, stamp}
		}
		return nil
	})
	if err != nil {
		return 0, 0, storeErr("read index", err)
	}
	missing := map[string][]string{} // shard key -> ids
	want := func(kind, ws, id string) {
		if !indexable(ws, id) {
			s.log.Warn("provisioning: record not indexed: its workspace or key cannot be an index key", "kind", kind, "workspace", ws)
			return
		}
		k := kind + " " + ws + " " + id
		if _, ok := have[k]; ok {
			delete(have, k) // backed: not stale
			return
		}
		shard := indexShard(kind, ws, id)
		missing[shard] = append(missing[shard], id)
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
	shards := make([]string, 0, len(missing))
	for k := range missing {
		shards = append(shards, k)
	}
	var mu sync.Mutex
	err = parallel(ctx, reindexWorkers, shards, func(shard string) error {
		kind, rest, _ := strings.Cut(shard, ".")
		ws, _, _ := strings.Cut(rest, ".")
		ids := missing[shard]
		stamp := s.indexStamp()
		added := 0
		err := s.changeIndex(ctx, kind, ws, ids[0], func(d indexDoc) bool {
			added = 0
			for _, id := range ids {
				if _, ok := d[id]; !ok { // another node, or the record's writer, was first
					d[id] = stamp
					added++
				}
			}
			return added > 0
		})
		mu.Lock()
		created += added
		mu.Unlock()
		return err
	})
	if err != nil || !gc {
		return created, 0, err
	}
	now := s.now().UTC()
	for _, l := range have {
		if now.Sub(stampTime(l.stamp)) < StaleClaimAge {
			continue // its record may be about to be written
		}
		removed := false
		err := s.changeIndex(ctx, l.kind, l.ws, l.id, func(d indexDoc) bool {
			removed = d[l.id] == l.stamp // stamped again since: in use again
			if removed {
				delete(d, l.id)
			}
			return removed
		})
		if err != nil {
			return created, deleted, err
		}
		if removed {
			deleted++
		}
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
