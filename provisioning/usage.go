package provisioning

import (
	"context"
	"errors"
	"fmt"
)

// Usage charges (issue 12): outbound minutes cost credits. The meter
// (gateway/usage) prices a call when it ends; this writes its one ledger
// entry.

// KindUsage is the ledger entry kind of an outbound call's minutes.
const KindUsage = "usage"

// UsageCharge is what one outbound call costs.
type UsageCharge struct {
	Workspace   string
	CallID      string
	Destination string // E.164 called number
	Minutes     int64  // started minutes
	Amount      int64  // credits, > 0
}

// usageEntryID is the ledger entry id of a call's usage charge (same
// shape as random ids: "le_" and 24 hex digits).
func usageEntryID(ws, callID string) string {
	return "le_" + requestHash("usage:" + ws + "\x00" + callID)[:24]
}

// ChargeUsage writes the ledger entry of kind usage for one call, once:
// the entry's id and JetStream message id derive from the call id, so a
// retried or repeated charge of the same call (another node, a lost ack)
// is written once and answers with the first entry. The balance never
// goes below zero: when it cannot pay the whole amount (a call cut late),
// what is left is charged and the reason says how much went unpaid.
func (s *Service) ChargeUsage(ctx context.Context, c UsageCharge) (LedgerEntry, error) {
	if c.Workspace == "" || c.CallID == "" || c.Amount <= 0 || c.Minutes <= 0 {
		return LedgerEntry{}, fmt.Errorf("charge usage: workspace, call id, minutes and a positive amount are required")
	}
	if len(c.CallID) > 256 {
		return LedgerEntry{}, fmt.Errorf("charge usage: call id longer than 256 bytes")
	}
	id := usageEntryID(c.Workspace, c.CallID)
	msgID := "usage:" + c.Workspace + ":" + c.CallID
	reason := fmt.Sprintf("outbound call to %s: %d min", c.Destination, c.Minutes)
	amount := c.Amount
	for attempt := 0; ; attempt++ {
		e := LedgerEntry{ID: id, Kind: KindUsage, Amount: -amount, Number: c.Destination, CallID: c.CallID, Reason: reason}
		if amount < c.Amount {
			e.Reason = fmt.Sprintf("%s (%d credits unpaid: balance exhausted)", reason, c.Amount-amount)
		}
		entry, err := s.post(ctx, c.Workspace, e, msgID)
		switch {
		case err == nil:
			s.m.charged(amount)
			return entry, nil
		case errors.Is(err, errDuplicateEntry):
			return s.ledgerEntry(ctx, c.Workspace, id)
		case errors.Is(err, ErrInsufficientCredits) && attempt < 100:
			bal, err := s.Balance(ctx, c.Workspace)
			if err != nil {
				return LedgerEntry{}, err
			}
			if bal <= 0 {
				// nothing left to charge: still one entry, of 0, so the
				// call's usage is on record
				bal = 0
			}
			if bal < amount {
				amount = bal
			}
			continue
		default:
			return LedgerEntry{}, err
		}
	}
}
