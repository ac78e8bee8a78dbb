package carrier

import (
	"context"
	"errors"
)

// PendingOrder is implemented by the error of a purchase the carrier had not
// finished when Buy gave up (telnyx.PendingOrderError). The purchase must be
// treated as failed (refund), and undone later with OrderReleaser.
type PendingOrder interface {
	error
	PendingOrderID() string
}

// OrderReleaser is implemented by adapters whose purchases can stay pending
// (telnyx). ReleaseOrder gives back whatever the order bought, does nothing
// for an order that failed, and returns a PendingOrder error while the order
// is still pending: call it again later until it returns nil.
type OrderReleaser interface {
	ReleaseOrder(ctx context.Context, orderID string) error
}

// PendingOrderID returns the carrier's order id when err says a purchase is
// still pending at the carrier.
func PendingOrderID(err error) (string, bool) {
	var po PendingOrder
	if errors.As(err, &po) {
		return po.PendingOrderID(), true
	}
	return "", false
}

// Unwrap returns the adapter under Instrument's wrapper, or c itself; use it
// to reach an adapter's optional interfaces (OrderReleaser).
func Unwrap(c Carrier) Carrier {
	for {
		u, ok := c.(interface{ Unwrap() Carrier })
		if !ok {
			return c
		}
		c = u.Unwrap()
	}
}

// ReleaseOrder undoes a pending purchase through c (instrumented or not).
// It reports false when c's adapter has no pending orders.
func ReleaseOrder(ctx context.Context, c Carrier, orderID string) (supported bool, err error) {
	r, ok := Unwrap(c).(OrderReleaser)
	if !ok {
		return false, nil
	}
	return true, r.ReleaseOrder(ctx, orderID)
}
