package provisioning

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// RunIdempotent runs fn once for workspace ws's Idempotency-Key clientKey
// of operation op (e.g. "place_call", POST /v1/calls) with the same
// machinery as purchases: the first request claims the key, a retry of
// the same request (same request string) gets fn's recorded result, a
// different request under the key is ErrConflict. A failed fn records
// nothing (the key is given back): nothing was done, so a retry runs
// again. Results are kept for the bucket's TTL (24 hours).
func (s *Service) RunIdempotent(ctx context.Context, ws, op, clientKey, request string, fn func(context.Context) (json.RawMessage, error)) (json.RawMessage, error) {
	if op == opPurchase || op == opTopUp || op == "" {
		return nil, errors.New("provisioning: RunIdempotent: reserved operation " + op)
	}
	key, err := idempotencyKey(ws, op, clientKey)
	if err != nil {
		return nil, err
	}
	rec := idempotencyRecord{RequestHash: requestHash(op + "|" + request), Op: op, Workspace: ws}
	rev, prev, err := s.beginIdempotent(ctx, key, rec)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		if prev.Result != nil {
			return prev.Result, nil
		}
		return nil, replayErr(*prev)
	}
	res, err := fn(ctx)
	if err != nil {
		_ = s.st.Idempotency.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev))
		return nil, err
	}
	rec.Result = res
	s.endIdempotent(ctx, key, rev, rec, nil)
	return res, nil
}
