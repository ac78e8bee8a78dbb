package provisioning

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/phone"
)

// StaleClaimAge is how old a pending claim must be before recovery
// treats its purchase as abandoned (a node died mid-saga).
const StaleClaimAge = 10 * time.Minute

// RecoverStaleClaims finishes purchases abandoned between claim and
// commit: the charge, if one was made and not refunded, is refunded, the
// carrier is asked to release the number, and the claim is deleted so the
// number returns to inventory. It runs with the renewal loop.
//
// The same pass finishes the other sagas a dead node can leave half done:
// releases (status releasing: released at the carrier, then deleted),
// agent deletions (agent marked deleting: deleted, or unmarked if numbers
// are assigned to it), and idempotency records left pending (finished
// with the operation's outcome when it completed, else cleared so that
// the client's retry runs it), and the per-workspace index (entries
// missing for a record created, stale ones without a record deleted:
// layout.go). The count is of everything recovered.
func (s *Service) RecoverStaleClaims(ctx context.Context) (int, error) {
	n, err := s.recoverStalePurchases(ctx)
	if err != nil {
		return n, err
	}
	for _, pass := range []func(context.Context) (int, error){s.recoverStaleReleases, s.recoverStaleAgentDeletes, s.recoverStaleIdempotency, s.recoverIndex} {
		m, err := pass(ctx)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (s *Service) recoverStalePurchases(ctx context.Context) (int, error) {
	recs, revs, err := s.allNumbers(ctx)
	if err != nil {
		return 0, err
	}
	now := s.now().UTC()
	n := 0
	for i, rec := range recs {
		if rec.Status != StatusPending || now.Sub(rec.ClaimedAt) < StaleClaimAge {
			continue
		}
		entries, err := s.Ledger(ctx, rec.WorkspaceID)
		if err != nil {
			return n, err
		}
		var charge *LedgerEntry
		refunded := false
		for j := range entries {
			e := &entries[j]
			if e.Number != rec.PhoneNumber || e.Time.Before(rec.ClaimedAt.Add(-time.Second)) {
				continue
			}
			switch e.Kind {
			case KindPurchase:
				charge = e
			case KindRefund:
				refunded = true
			}
		}
		if charge != nil && !refunded {
			if _, err := s.post(ctx, rec.WorkspaceID, LedgerEntry{
				Kind: KindRefund, Amount: -charge.Amount, Number: rec.PhoneNumber,
				Reason: "refund of purchase " + charge.ID + ": the purchase was interrupted and did not complete",
			}, "refund:"+charge.ID); err != nil && err != errDuplicateEntry {
				return n, err
			}
		}
		if rec.Origin == "purchased" && rec.Carrier != "sandbox" {
			if c, err := s.carrierFor(ctx, rec.WorkspaceID, rec.Carrier, rec.IntegrationID); err == nil {
				go s.undoBuy(c, rec.PhoneNumber, errors.New("purchase interrupted before commit"))
			}
		}
		key := numberKey(rec.PhoneNumber)
		irev := s.indexStampOf(ctx, indexNumbers, rec.WorkspaceID, key)
		if err := s.st.Numbers.Delete(ctx, key, jetstream.LastRevision(revs[i])); err != nil {
			continue // changed meanwhile: leave it for the next pass
		}
		s.indexRemove(ctx, indexNumbers, rec.WorkspaceID, key, irev)
		s.log.Warn("provisioning: recovered an interrupted purchase", "workspace", rec.WorkspaceID, "number", phone.Mask(rec.PhoneNumber), "refunded", charge != nil && !refunded)
		n++
	}
	return n, nil
}
