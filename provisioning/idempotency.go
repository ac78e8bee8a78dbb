package provisioning

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Idempotent operations (purchase, top-up) remember their outcome under
// the client's Idempotency-Key for 24 hours (the bucket's TTL). The first
// request creates a pending record (KV create: exactly one request runs
// the operation); twins wait briefly for it to finish, then replay its
// outcome. A record left pending by a node that died mid-operation is
// finished or cleared by RecoverStaleClaims, never left answering 409.

// Operations that take an Idempotency-Key.
const (
	opPurchase = "purchase"
	opTopUp    = "top_up"
)

// idempotencyRecord remembers an operation's outcome under its key.
type idempotencyRecord struct {
	RequestHash string `json:"request_hash"`
	State       string `json:"state"` // pending, done
	// Op, Workspace and CreatedAt let recovery finish or clear a record
	// whose operation was interrupted (absent in records written before
	// they were added: those are cleared once stale).
	Op          string       `json:"op,omitempty"`
	Workspace   string       `json:"workspace,omitempty"`
	PhoneNumber string       `json:"phone_number,omitempty"` // purchase: the normalised number
	CreatedAt   *time.Time   `json:"created_at,omitempty"`
	Number      *Number      `json:"number,omitempty"`
	Entry       *LedgerEntry `json:"entry,omitempty"`
	Result      []byte       `json:"result,omitempty"` // RunIdempotent's result (idempotent_run.go)
	ErrKind     string       `json:"err_kind,omitempty"`
	ErrDetail   string       `json:"err_detail,omitempty"`
	ErrFields   []FieldError `json:"err_fields,omitempty"`
}

// idempotencyKey is the store key of a client's Idempotency-Key for op in
// workspace ws. Purchases keep the key format they always had.
func idempotencyKey(ws, op, clientKey string) (string, error) {
	if len(clientKey) > 255 {
		return "", invalid("Idempotency-Key", "must be at most 255 characters")
	}
	kh := sha256.Sum256([]byte(clientKey))
	h := hex.EncodeToString(kh[:16])
	if op == opPurchase {
		return ws + "." + h, nil
	}
	return ws + "." + op + "." + h, nil
}

func requestHash(parts string) string {
	h := sha256.Sum256([]byte(parts))
	return hex.EncodeToString(h[:])
}

// beginIdempotent claims key for rec (pending). It returns the record's
// revision when this request is to run the operation, or the finished
// record of an earlier identical request to replay. A different request
// under the same key, or one still running, is a conflict.
func (s *Service) beginIdempotent(ctx context.Context, key string, rec idempotencyRecord) (uint64, *idempotencyRecord, error) {
	now := s.now().UTC()
	rec.State, rec.CreatedAt = "pending", &now
	b, _ := json.Marshal(rec)
	var prev idempotencyRecord
	for i := 0; i < 100; i++ { // wait briefly for a concurrent twin to finish
		rev, err := s.st.Idempotency.Create(ctx, key, b)
		if err == nil {
			return rev, nil, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, nil, storeErr("idempotency", err)
		}
		if _, err := getJSON(ctx, s.st.Idempotency, key, &prev); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue // the twin gave the key back (nothing happened): run
			}
			return 0, nil, storeErr("idempotency", err)
		}
		if prev.State == "done" || prev.RequestHash != rec.RequestHash {
			break
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if prev.RequestHash != rec.RequestHash {
		return 0, nil, errorf(ErrConflict, "this Idempotency-Key was used for a different request")
	}
	if prev.State != "done" {
		return 0, nil, errorf(ErrConflict, "a request with this Idempotency-Key is still in progress; retry later")
	}
	return 0, &prev, nil
}

// endIdempotent records the outcome of the operation that holds key at
// rev. An outcome the client can safely retry (state store or carrier
// unavailable, request cancelled) gives the key back instead.
func (s *Service) endIdempotent(ctx context.Context, key string, rev uint64, done idempotencyRecord, err error) {
	ctx = context.WithoutCancel(ctx)
	if errors.Is(err, ErrUnavailable) || isCarrierTransient(err) || errors.Is(err, context.Canceled) {
		// Nothing happened that the client cannot safely retry.
		_ = s.st.Idempotency.Delete(ctx, key, jetstream.LastRevision(rev))
		return
	}
	done.State = "done"
	if err != nil {
		done.Number, done.Entry = nil, nil
		done.ErrKind, done.ErrDetail = kindName(err), err.Error()
		var ve *ValidationError
		if errors.As(err, &ve) {
			done.ErrFields = ve.Fields
		}
	}
	b, _ := json.Marshal(done)
	if _, err := s.st.Idempotency.Update(ctx, key, b, rev); err != nil {
		s.log.Warn("provisioning: idempotency record not saved", "err", err)
	}
}

// replayErr is the error an idempotency record remembers (nil: success).
func replayErr(r idempotencyRecord) error {
	if r.ErrKind == "" && r.ErrDetail == "" && len(r.ErrFields) == 0 {
		return nil
	}
	if len(r.ErrFields) > 0 {
		return &ValidationError{Fields: r.ErrFields}
	}
	for _, k := range []error{ErrNotFound, ErrConflict, ErrInsufficientCredits, ErrInvalid, ErrForbidden} {
		if k.Error() == r.ErrKind {
			return &kindError{kind: k, detail: r.ErrDetail}
		}
	}
	return errors.New(r.ErrDetail)
}

// errSimulatedCrash stops a saga where a test's crash hook says, leaving
// its state as a node that died there would (tests only).
var errSimulatedCrash = errors.New("simulated crash")

// crashed reports whether a test asked the saga to stop at step.
func (s *Service) crashed(step string) bool { return s.crash != nil && s.crash(step) }
