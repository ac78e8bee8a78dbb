package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/store"
)

// The credit ledger is one JetStream subject per workspace. Each entry
// carries the balance after it, so the balance is the last entry's and
// always equals the sum of the amounts. A change is one publish that
// expects the subject's last sequence to be the one it read (optimistic
// concurrency on the ledger itself): two concurrent charges cannot both
// spend the same credits, and there is no second record (a balance key)
// that could disagree with the ledger after a crash.

func ledgerSubject(ws string) string { return store.LedgerSubjectPrefix + ws }

// Balance returns a workspace's balance and the sequence of its last entry.
func (s *Service) balance(ctx context.Context, ws string) (int64, uint64, error) {
	m, err := s.st.Ledger.GetLastMsgForSubject(ctx, ledgerSubject(ws))
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return 0, 0, nil
		}
		return 0, 0, storeErr("read balance", err)
	}
	var e LedgerEntry
	if err := json.Unmarshal(m.Data, &e); err != nil {
		return 0, 0, fmt.Errorf("read balance: decode ledger entry %d: %w", m.Sequence, err)
	}
	return e.Balance, m.Sequence, nil
}

// Balance returns the workspace's current credits.
func (s *Service) Balance(ctx context.Context, ws string) (int64, error) {
	b, _, err := s.balance(ctx, ws)
	return b, err
}

// post appends an entry. A negative amount that would take the balance
// below zero fails with ErrInsufficientCredits and writes nothing. msgID
// makes the entry idempotent (JetStream deduplication) when not empty.
func (s *Service) post(ctx context.Context, ws string, e LedgerEntry, msgID string) (LedgerEntry, error) {
	timeouts := 0
	for attempt := 0; ; attempt++ {
		bal, seq, err := s.balance(ctx, ws)
		if err != nil {
			return LedgerEntry{}, err
		}
		if e.Amount < 0 && bal+e.Amount < 0 {
			return LedgerEntry{}, errorf(ErrInsufficientCredits, "this costs %d credits and the balance is %d", -e.Amount, bal)
		}
		entry := e
		entry.Balance = bal + e.Amount
		entry.Time = s.now().UTC()
		if entry.ID == "" {
			entry.ID = randomToken("le_")[:27]
		}
		b, _ := json.Marshal(entry)
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(seq)}
		if msgID != "" {
			opts = append(opts, jetstream.WithMsgID(msgID))
		}
		ack, err := s.st.JS.Publish(ctx, ledgerSubject(ws), b, opts...)
		if err != nil {
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				if attempt > 1000 {
					return LedgerEntry{}, errorf(ErrConflict, "credits are changing too fast; retry")
				}
				if err := ctx.Err(); err != nil {
					return LedgerEntry{}, err
				}
				continue // someone else wrote first: re-read and retry
			}
			if msgID != "" && timeouts < 3 && ctx.Err() == nil && isTimeout(err) {
				// The write may have landed without its ack: send it again
				// under the same message id; JetStream deduplicates.
				timeouts++
				continue
			}
			return LedgerEntry{}, storeErr("write ledger", err)
		}
		if ack.Duplicate {
			return LedgerEntry{}, errDuplicateEntry
		}
		entry.Seq = ack.Sequence
		if e.Kind == KindPurchase || e.Kind == KindRenewal || e.Kind == KindRefund {
			s.m.charged(-e.Amount)
		}
		return entry, nil
	}
}

// errDuplicateEntry: the msg id was already written (a retried operation).
var errDuplicateEntry = errors.New("ledger entry already written")

// Ledger returns a workspace's entries, oldest first.
func (s *Service) Ledger(ctx context.Context, ws string) ([]LedgerEntry, error) {
	subj := ledgerSubject(ws)
	info, err := s.st.Ledger.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil, storeErr("read ledger", err)
	}
	total := int(info.State.Subjects[subj])
	out := make([]LedgerEntry, 0, total)
	if total == 0 {
		return out, nil
	}
	cons, err := s.st.Ledger.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, storeErr("read ledger", err)
	}
	for len(out) < total {
		want := total - len(out)
		if want > 500 {
			want = 500
		}
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, storeErr("read ledger", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var e LedgerEntry
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				return nil, fmt.Errorf("read ledger: decode: %w", err)
			}
			if md, _ := m.Metadata(); md != nil {
				e.Seq = md.Sequence.Stream
			}
			out = append(out, e)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, storeErr("read ledger", err)
		}
		if n == 0 {
			return nil, storeErr("read ledger", context.DeadlineExceeded)
		}
	}
	return out, nil
}

// TopUp adds credits (admin). It also resumes suspended numbers that the
// new balance can pay for.
func (s *Service) TopUp(ctx context.Context, ws string, amount int64, reason string) (LedgerEntry, error) {
	return s.TopUpIdempotent(ctx, ws, amount, reason, "")
}

// TopUpIdempotent is TopUp under a client's Idempotency-Key (none when
// empty): the same key with the same amount and reason returns the first
// top-up's entry and credits once; with another amount or reason it is a
// conflict. The entry's id and message id derive from the key, so a
// retry whose first attempt landed unacknowledged is written once, and
// recovery can tell whether an interrupted top-up happened.
func (s *Service) TopUpIdempotent(ctx context.Context, ws string, amount int64, reason, idemKey string) (LedgerEntry, error) {
	if amount <= 0 || amount > 1e12 {
		return LedgerEntry{}, invalid("amount", "must be a positive integer up to 10^12")
	}
	if len(reason) > 500 {
		return LedgerEntry{}, invalid("reason", "must be at most 500 characters")
	}
	if _, err := s.GetWorkspace(ctx, ws); err != nil {
		return LedgerEntry{}, err
	}
	if reason == "" {
		reason = "top-up"
	}
	entry := LedgerEntry{Kind: KindTopUp, Amount: amount, Reason: reason}
	if idemKey == "" {
		return s.topUp(ctx, ws, entry, "")
	}
	key, err := idempotencyKey(ws, opTopUp, idemKey)
	if err != nil {
		return LedgerEntry{}, err
	}
	rec := idempotencyRecord{RequestHash: requestHash(fmt.Sprintf("%d|%s", amount, reason)), Op: opTopUp, Workspace: ws}
	rev, prev, err := s.beginIdempotent(ctx, key, rec)
	if err != nil {
		return LedgerEntry{}, err
	}
	if prev != nil {
		if prev.Entry != nil {
			return *prev.Entry, nil
		}
		return LedgerEntry{}, replayErr(*prev)
	}
	if s.crashed("topup:begun") {
		return LedgerEntry{}, errSimulatedCrash
	}
	entry.ID = topUpEntryID(key)
	e, err := s.topUp(ctx, ws, entry, "topup:"+key)
	if errors.Is(err, errSimulatedCrash) {
		return e, err
	}
	if err == nil {
		rec.Entry = &e
	}
	s.endIdempotent(ctx, key, rev, rec, err)
	return e, err
}

func (s *Service) topUp(ctx context.Context, ws string, entry LedgerEntry, msgID string) (LedgerEntry, error) {
	e, err := s.post(ctx, ws, entry, msgID)
	if errors.Is(err, errDuplicateEntry) {
		// An earlier attempt of this very top-up landed: answer with it.
		e, err = s.ledgerEntry(ctx, ws, entry.ID)
	}
	if err != nil {
		return e, err
	}
	if s.crashed("topup:posted") {
		return e, errSimulatedCrash
	}
	if _, err := s.resumeSuspended(ctx, ws); err != nil {
		s.log.Warn("provisioning: resume after top-up", "workspace", ws, "err", err)
	}
	return e, nil
}

// topUpEntryID is the ledger entry id of the top-up under idempotency
// record key (same shape as random ids: "le_" and 24 hex digits).
func topUpEntryID(key string) string { return "le_" + requestHash("topup:" + key)[:24] }

// ledgerEntry finds entry id in the workspace's ledger.
func (s *Service) ledgerEntry(ctx context.Context, ws, id string) (LedgerEntry, error) {
	entries, err := s.Ledger(ctx, ws)
	if err != nil {
		return LedgerEntry{}, err
	}
	for _, e := range entries {
		if e.ID == id {
			return e, nil
		}
	}
	return LedgerEntry{}, fmt.Errorf("read ledger: entry %s was written but is not in the ledger", id)
}

func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, jetstream.ErrNoStreamResponse)
}
