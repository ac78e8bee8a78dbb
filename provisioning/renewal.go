package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// RenewalResult counts what one renewal pass did.
type RenewalResult struct {
	Renewed   int
	Suspended int
	Resumed   int
}

// RunRenewals charges every number whose monthly anniversary has come
// (possibly several, if the gateway was down), suspends those whose
// renewal cannot be paid, and resumes suspended ones that now can be.
// Every node may run it: the ledger entry for a period has a fixed
// message id (deduplicated by JetStream) and the number's record is
// advanced by compare-and-set, so a period is charged at most once.
func (s *Service) RunRenewals(ctx context.Context) (RenewalResult, error) {
	var res RenewalResult
	recs, revs, err := s.allNumbers(ctx)
	if err != nil {
		return res, err
	}
	now := s.now().UTC()
	for i, rec := range recs {
		if rec.Origin != routing.OriginPurchased || rec.MonthlyCost == 0 || rec.RenewsAt == nil {
			continue
		}
		switch rec.Status {
		case routing.StatusActive:
			if rec.RenewsAt.After(now) {
				continue
			}
		case routing.StatusSuspended:
		default:
			continue
		}
		out, err := s.renew(ctx, rec, revs[i], now)
		if err != nil {
			s.log.Warn("provisioning: renewal", "number", phone.Mask(rec.PhoneNumber), "err", err)
			continue
		}
		switch out {
		case "renewed":
			res.Renewed++
		case "suspended":
			res.Suspended++
		case "resumed":
			res.Resumed++
		}
	}
	return res, nil
}

func (s *Service) resumeSuspended(ctx context.Context, ws string) (int, error) {
	recs, revs, err := s.allNumbers(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	now := s.now().UTC()
	for i, rec := range recs {
		if rec.WorkspaceID != ws || rec.Status != routing.StatusSuspended {
			continue
		}
		if out, err := s.renew(ctx, rec, revs[i], now); err == nil && out == "resumed" {
			n++
		}
	}
	return n, nil
}

// renew charges the period starting at rec.RenewsAt. Repeats while
// further periods are due (gateway down for months), suspending on the
// first that cannot be paid.
func (s *Service) renew(ctx context.Context, rec numberRecord, rev uint64, now time.Time) (string, error) {
	wasSuspended := rec.Status == routing.StatusSuspended
	outcome := ""
	for !rec.RenewsAt.After(now) || rec.Status == routing.StatusSuspended {
		period := rec.RenewsAt.UTC()
		if rec.Status == routing.StatusSuspended && period.After(now) {
			period = now
		}
		msgID := fmt.Sprintf("renew:%s:%s:%d", rec.WorkspaceID, strings.TrimPrefix(rec.PhoneNumber, "+"), rec.Renewals+1)
		_, err := s.post(ctx, rec.WorkspaceID, LedgerEntry{
			Kind: KindRenewal, Amount: -rec.MonthlyCost, Number: rec.PhoneNumber,
			Reason: fmt.Sprintf("monthly renewal of %s for the month from %s", rec.PhoneNumber, period.Format("2006-01-02")),
		}, msgID)
		if errors.Is(err, ErrInsufficientCredits) {
			if rec.Status == routing.StatusSuspended {
				return "still_suspended", nil
			}
			rec.Status = routing.StatusSuspended
			t := now
			rec.SuspendedAt = &t
			if err := s.putNumber(ctx, rec, rev); err != nil {
				return "", err
			}
			s.m.op("renewal", "suspended")
			s.log.Warn("provisioning: number suspended, renewal unpaid", "workspace", rec.WorkspaceID, "number", phone.Mask(rec.PhoneNumber), "cost", rec.MonthlyCost)
			return "suspended", nil
		}
		if err != nil && !errors.Is(err, errDuplicateEntry) {
			s.m.op("renewal", resultOf(err))
			return "", err
		}
		s.m.op("renewal", "ok")
		rec.Renewals++
		next := addMonths(rec.PurchasedAt, rec.Renewals+1)
		if rec.Status == routing.StatusSuspended {
			// Resumed: the paid month starts now; the next charge falls on
			// the first anniversary of the purchase after now.
			for !next.After(now) {
				rec.Renewals++
				next = addMonths(rec.PurchasedAt, rec.Renewals+1)
			}
			rec.Status = routing.StatusActive
			rec.SuspendedAt = nil
		}
		rec.RenewsAt = &next
		newRev, err := s.putNumberRev(ctx, rec, rev)
		if err != nil {
			return "", err
		}
		rev = newRev
		outcome = "renewed"
		if wasSuspended {
			outcome = "resumed"
		}
	}
	return outcome, nil
}

func (s *Service) putNumber(ctx context.Context, rec numberRecord, rev uint64) error {
	_, err := s.putNumberRev(ctx, rec, rev)
	return err
}

func (s *Service) putNumberRev(ctx context.Context, rec numberRecord, rev uint64) (uint64, error) {
	b, _ := json.Marshal(rec)
	r, err := s.st.Numbers.Update(ctx, numberKey(rec.PhoneNumber), b, rev)
	if err != nil {
		return 0, storeErr("update number", err)
	}
	return r, nil
}

// RunRenewalLoop runs RunRenewals every interval until ctx ends.
func (s *Service) RunRenewalLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.RunRenewals(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("provisioning: renewal pass", "err", err)
		}
		if _, err := s.RecoverStaleClaims(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("provisioning: claim recovery pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
