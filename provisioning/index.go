package provisioning

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The per-workspace index (bucket store.BucketIndex) lets a workspace's
// listing read only its own keys: the ids of its numbers (digits),
// forwarding entries (digits) and integrations are kept in
// indexShards small documents per workspace and kind,
// "<kind>.<ws>.<shard>", each a JSON object id -> stamp (when and by
// which write the id was added). A listing is indexShards direct gets and
// a get per record, whatever the size of the store: a watch filtered on
// a workspace's keys costs the server a pass over the whole subject
// space (100 ms at 1,000,000 keys). The records stay where they were (a
// number's record is also its global claim, keyed by its digits), so
// the routing Syncer, renewals and recovery read them as before, and
// every number is seen exactly once.
//
// Write order keeps one invariant: every record of workspace ws is listed
// in its index. An id is added (with a fresh stamp, even when present)
// before its record is created, and removed only after its record is
// deleted, and then only if its stamp is still the one read before that
// deletion, so a remover never drops an id that an adder stamped
// meanwhile. Each document changes by compare-and-set. A crash or a lost
// race can leave an id without its record (never the reverse): listings
// skip such ids, and the recovery pass (recoverIndex) removes those older
// than StaleClaimAge and adds any id missing (records written by an older
// version).
const (
	indexNumbers      = "numbers"
	indexForwarding   = "forwarding"
	indexIntegrations = "integrations"
	// indexLayoutKey holds the store layout version once existing records
	// are indexed (MigrateLayout).
	indexLayoutKey = "layout.version"
	layoutVersion  = "2"
	// indexShards documents per workspace and kind: each holds about
	// 1/indexShards of the ids (about 40 bytes each), so a workspace can hold
	// some 200,000 numbers under NATS's default 1 MB message size.
	indexShards = 8
)

// indexGets is how many record reads a listing keeps in flight.
const indexGets = 16

// indexDoc is one shard: id -> stamp.
type indexDoc map[string]string

// indexShard is the document key of id in ws's index of kind.
func indexShard(kind, ws, id string) string {
	h := fnv.New32a()
	h.Write([]byte(id))
	return kind + "." + ws + "." + strconv.Itoa(int(h.Sum32()%indexShards))
}

// indexable reports whether ws can be a NATS key token and id an entry.
func indexable(ws, id string) bool {
	return ValidID(ws) && id != "" && len(id) <= 200
}

// indexRef is an id written by indexAdd.
type indexRef struct {
	kind, ws, id string
	stamp        string
	created      bool // absent before: undo removes it
}

// indexStamp is a fresh stamp: the service clock's time (recovery judges
// an id's age by it) and a random part that makes each write's unique.
func (s *Service) indexStamp() string {
	var r [4]byte
	_, _ = rand.Read(r[:])
	return strconv.FormatInt(s.now().UnixNano(), 36) + "." + hex.EncodeToString(r[:])
}

// stampTime is when a stamp was written (zero when it does not parse).
func stampTime(stamp string) time.Time {
	ns, _, _ := strings.Cut(stamp, ".")
	n, err := strconv.ParseInt(ns, 36, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// changeIndex applies change to the document holding id (compare-and-set,
// retried on conflict); change returns false to leave it as it is.
func (s *Service) changeIndex(ctx context.Context, kind, ws, id string, change func(indexDoc) bool) error {
	key := indexShard(kind, ws, id)
	for attempt := 0; attempt < 100; attempt++ {
		doc := indexDoc{}
		var rev uint64
		e, err := s.st.Index.Get(ctx, key)
		switch {
		case err == nil:
			rev = e.Revision()
			if json.Unmarshal(e.Value(), &doc) != nil {
				doc = indexDoc{} // unreadable: rebuilt by recovery
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return storeErr("index "+kind, err)
		}
		if !change(doc) {
			return nil
		}
		b, _ := json.Marshal(doc)
		if rev == 0 {
			_, err = s.st.Index.Create(ctx, key, b)
		} else {
			_, err = s.st.Index.Update(ctx, key, b, rev)
		}
		if err == nil {
			return nil
		}
		if !isRevisionConflict(err) {
			return storeErr("index "+kind, err)
		}
	}
	return errorf(ErrConflict, "the %s index of this workspace is changing too fast; retry", kind)
}

// indexAdd lists id in ws's index before its record is created, with a
// fresh stamp even when it is listed already (so that a concurrent
// remover holding the old stamp leaves it).
func (s *Service) indexAdd(ctx context.Context, kind, ws, id string) (indexRef, error) {
	if !indexable(ws, id) {
		return indexRef{}, fmt.Errorf("index %s of workspace %q: %q is not a usable key", kind, ws, id)
	}
	ref := indexRef{kind: kind, ws: ws, id: id, stamp: s.indexStamp()}
	err := s.changeIndex(ctx, kind, ws, id, func(d indexDoc) bool {
		_, had := d[id]
		ref.created = !had
		d[id] = ref.stamp
		return true
	})
	return ref, err
}

// indexUndo removes an id indexAdd added when its record was not created
// after all (unless it was stamped again since: then it stays, and its
// record or recovery decides).
func (s *Service) indexUndo(ctx context.Context, ref indexRef) {
	if ref.created {
		s.indexRemove(ctx, ref.kind, ref.ws, ref.id, ref.stamp)
	}
}

// indexStampOf is id's current stamp ("" when not listed or unreadable),
// read before its record is deleted and passed to indexRemove after.
func (s *Service) indexStampOf(ctx context.Context, kind, ws, id string) string {
	if !indexable(ws, id) {
		return ""
	}
	e, err := s.st.Index.Get(ctx, indexShard(kind, ws, id))
	if err != nil {
		return ""
	}
	var d indexDoc
	if json.Unmarshal(e.Value(), &d) != nil {
		return ""
	}
	return d[id]
}

// indexRemove unlists the id of a deleted record if its stamp is still
// stamp (an adder stamping it meanwhile keeps it).
func (s *Service) indexRemove(ctx context.Context, kind, ws, id, stamp string) {
	if stamp == "" {
		return
	}
	err := s.changeIndex(context.WithoutCancel(ctx), kind, ws, id, func(d indexDoc) bool {
		if d[id] != stamp {
			return false
		}
		delete(d, id)
		return true
	})
	if err != nil {
		s.log.Warn("provisioning: index entry left behind; recovery removes it", "kind", kind, "workspace", ws, "err", err)
	}
}

// indexed returns the ids ws's index of kind lists: indexShards direct
// gets, whatever the size of the store.
func (s *Service) indexed(ctx context.Context, kind, ws string) ([]string, error) {
	if !ValidID(ws) {
		return nil, nil // no key of this workspace can exist
	}
	keys := make([]string, indexShards)
	for i := range keys {
		keys[i] = kind + "." + ws + "." + strconv.Itoa(i)
	}
	var ids []string
	err := getEach(ctx, s.st.Index, keys, func(e jetstream.KeyValueEntry) error {
		var d indexDoc
		if err := json.Unmarshal(e.Value(), &d); err != nil {
			return fmt.Errorf("decode %s/%s: %w", s.st.Index.Bucket(), e.Key(), err)
		}
		for id := range d {
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		return nil, storeErr("list "+kind, err)
	}
	return ids, nil
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
