package usage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/callgate/callgate/provisioning"
)

// fixedLedger is a ledger whose every workspace holds the same balance
// (benchmarks measure the meter, not the store).
type fixedLedger struct{ balance int64 }

func (l fixedLedger) Balance(context.Context, string) (int64, error) { return l.balance, nil }

func (l fixedLedger) ChargeUsage(_ context.Context, c provisioning.UsageCharge) (provisioning.LedgerEntry, error) {
	return provisioning.LedgerEntry{Amount: -c.Amount, Balance: l.balance}, nil
}

// BenchmarkAuthorizeAmongOtherTenants: Authorize for a workspace with 10
// running calls while n calls of other workspaces (10 each) run on the
// node. A tenant's call setup should not cost more with the others' calls
// (issue 15).
func BenchmarkAuthorizeAmongOtherTenants(b *testing.B) {
	for _, n := range []int{0, 10_000, 100_000} {
		b.Run(fmt.Sprintf("others=%d", n), func(b *testing.B) {
			t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
			clk := newClock(t0.Add(30 * time.Second)) // fixed: the balance read stays recent
			// an hour's interval: no report or check runs during the benchmark
			m, err := New(prices, fixedLedger{balance: 1 << 40}, nil, Options{Interval: time.Hour, Now: clk.now})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			for i := range n {
				m.Answered(fmt.Sprintf("other-%d", i), fmt.Sprintf("ws-%d", i/10), usNumber, t0)
			}
			for i := range 10 {
				m.Answered(fmt.Sprintf("mine-%d", i), "mine", gbNumber, t0)
			}
			if err := m.Authorize("mine", usNumber); err != nil { // reads the balance once
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := m.Authorize("mine", usNumber); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
