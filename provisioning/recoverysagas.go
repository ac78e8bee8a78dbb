package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/phone"
)

// recoverStaleReleases finishes releases interrupted after the number was
// marked releasing: the carrier is asked again (releasing an already
// released number is not an error) and the record deleted.
func (s *Service) recoverStaleReleases(ctx context.Context) (int, error) {
	recs, revs, err := s.allNumbers(ctx)
	if err != nil {
		return 0, err
	}
	now := s.now().UTC()
	n := 0
	for i, rec := range recs {
		if rec.Status != StatusReleasing || (rec.ReleasingAt != nil && now.Sub(*rec.ReleasingAt) < StaleClaimAge) {
			continue
		}
		if err := s.releaseAtCarrier(ctx, rec); err != nil {
			s.log.Warn("provisioning: interrupted release still refused by the carrier; retried next pass", "workspace", rec.WorkspaceID, "number", phone.Mask(rec.PhoneNumber), "err", err)
			continue
		}
		if err := s.deleteReleased(ctx, rec, revs[i]); err != nil {
			continue // changed meanwhile: the next pass looks again
		}
		s.log.Warn("provisioning: finished an interrupted release", "workspace", rec.WorkspaceID, "number", phone.Mask(rec.PhoneNumber))
		n++
	}
	return n, nil
}

// recoverStaleAgentDeletes finishes agent deletions interrupted after the
// agent was marked: deleted if no number is assigned to it, else unmarked.
func (s *Service) recoverStaleAgentDeletes(ctx context.Context) (int, error) {
	type marked struct{ ws, id string }
	var stale []marked
	now := s.now().UTC()
	err := scanJSON(ctx, s, s.st.Agents, func(key string, a Agent, _ uint64) {
		if a.DeletingAt != nil && now.Sub(*a.DeletingAt) >= StaleClaimAge {
			ws, id, _ := strings.Cut(key, ".")
			stale = append(stale, marked{ws, id})
		}
	})
	if err != nil {
		return 0, storeErr("list agents", err)
	}
	n := 0
	for _, m := range stale {
		err := s.deleteAgent(ctx, Principal{Workspace: m.ws}, m.id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil && !errors.Is(err, ErrConflict) {
			return n, err
		}
		s.log.Warn("provisioning: finished an interrupted agent deletion", "workspace", m.ws, "agent", m.id, "deleted", err == nil)
		n++
	}
	return n, nil
}

// recoverStaleIdempotency settles idempotency records left pending by an
// interrupted operation. A purchase whose number was committed, or a
// top-up whose ledger entry was written, is recorded as done with that
// result (the key answers it); otherwise the record is deleted (the
// operation did not happen, or was undone: a retry runs it).
func (s *Service) recoverStaleIdempotency(ctx context.Context) (int, error) {
	type pending struct {
		key string
		rec idempotencyRecord
		rev uint64
	}
	var stale []pending
	now := s.now().UTC()
	err := s.scanKV(ctx, s.st.Idempotency, func(e jetstream.KeyValueEntry) error {
		var r idempotencyRecord
		if json.Unmarshal(e.Value(), &r) != nil {
			stale = append(stale, pending{key: e.Key(), rev: e.Revision()}) // unreadable: clear it
			return nil
		}
		created := e.Created()
		if r.CreatedAt != nil {
			created = *r.CreatedAt
		}
		if r.State == "pending" && now.Sub(created) >= StaleClaimAge {
			stale = append(stale, pending{e.Key(), r, e.Revision()})
		}
		return nil
	})
	if err != nil {
		return 0, storeErr("list idempotency records", err)
	}
	n := 0
	for _, p := range stale {
		done, settled, err := s.settleIdempotency(ctx, p.key, p.rec)
		if err != nil {
			return n, err
		}
		if !settled {
			continue // its saga is still being recovered: next pass
		}
		if done != nil {
			b, _ := json.Marshal(done)
			_, err = s.st.Idempotency.Update(ctx, p.key, b, p.rev)
		} else {
			err = s.st.Idempotency.Delete(ctx, p.key, jetstream.LastRevision(p.rev))
		}
		if err != nil {
			continue // changed meanwhile
		}
		s.log.Warn("provisioning: settled an interrupted idempotent request", "workspace", p.rec.Workspace, "op", p.rec.Op, "finished", done != nil)
		n++
	}
	return n, nil
}

// settleIdempotency finds the outcome of a pending record's operation:
// the finished record, or nil to clear it; settled is false while the
// operation's own state is still to be recovered.
func (s *Service) settleIdempotency(ctx context.Context, key string, r idempotencyRecord) (*idempotencyRecord, bool, error) {
	done := r
	done.State = "done"
	switch r.Op {
	case opPurchase:
		if r.PhoneNumber == "" {
			return nil, true, nil
		}
		var rec numberRecord
		if _, err := getJSON(ctx, s.st.Numbers, numberKey(r.PhoneNumber), &rec); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil, true, nil
			}
			return nil, false, storeErr("get number", err)
		}
		if rec.IdempotencyKey != key {
			return nil, true, nil // someone else's number now
		}
		if rec.Status == StatusPending {
			return nil, false, nil // the claim is recovered (refunded, deleted) first
		}
		n := rec.number()
		done.Number = &n
		return &done, true, nil
	case opTopUp:
		entries, err := s.Ledger(ctx, r.Workspace)
		if err != nil {
			return nil, false, err
		}
		id := topUpEntryID(key)
		for i := range entries {
			if entries[i].ID == id {
				done.Entry = &entries[i]
				return &done, true, nil
			}
		}
		return nil, true, nil
	}
	return nil, true, nil // written before records named their operation
}
