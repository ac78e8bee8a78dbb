package provisioning_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/callgate/callgate/provisioning"
)

// TestUsageChargesExactUnderConcurrency: calls ending at once on several
// nodes (each charge sent three times, as retries would) leave one entry
// per call, a balance that is exactly the credits less their cost, and
// a ledger whose sum is the balance; with the balance too small for all,
// it never goes below zero.
func TestUsageChargesExactUnderConcurrency(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	newWorkspace(t, s, "ws", 500)
	const n = 30
	var wg sync.WaitGroup
	errs := make(chan error, 3*n)
	for i := 0; i < n; i++ {
		for rep := 0; rep < 3; rep++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				_, err := s.ChargeUsage(ctx, provisioning.UsageCharge{Workspace: "ws", CallID: fmt.Sprintf("c%02d", i),
					Destination: "+442079460000", Minutes: int64(i%4 + 1), Amount: int64(i%4+1) * 3})
				if err != nil {
					errs <- err
				}
			}(i)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("charge: %v", err)
	}
	var want int64
	for i := 0; i < n; i++ {
		want += int64(i%4+1) * 3
	}
	bal, entries := ledgerOK(t, s, "ws")
	if bal != 500-want {
		t.Fatalf("balance %d, want %d", bal, 500-want)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Kind != provisioning.KindUsage {
			continue
		}
		if seen[e.CallID] {
			t.Fatalf("call %s charged twice", e.CallID)
		}
		seen[e.CallID] = true
		if e.Number != "+442079460000" || !strings.Contains(e.Reason, "min") {
			t.Fatalf("entry %+v", e)
		}
	}
	if len(seen) != n {
		t.Fatalf("%d calls charged, want %d", len(seen), n)
	}

	// 20 calls of 10 credits against 75 credits: what is left is taken,
	// never more; every call has its entry.
	newWorkspace(t, s, "small", 75)
	wg = sync.WaitGroup{}
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := s.ChargeUsage(ctx, provisioning.UsageCharge{Workspace: "small", CallID: fmt.Sprintf("s%02d", i),
				Destination: "+12282001234", Minutes: 5, Amount: 10}); err != nil {
				t.Errorf("charge: %v", err)
			}
		}(i)
	}
	wg.Wait()
	bal, entries = ledgerOK(t, s, "small")
	usage, unpaid := 0, 0
	for _, e := range entries {
		if e.Kind == provisioning.KindUsage {
			usage++
			if strings.Contains(e.Reason, "unpaid") {
				unpaid++
			}
		}
	}
	if bal != 0 || usage != 20 || unpaid != 13 {
		t.Fatalf("balance %d, %d usage entries (%d partly unpaid); want 0, 20 (13: 7 paid in full, one 5 of 10, 12 with nothing left)", bal, usage, unpaid)
	}
}

func TestChargeUsageRefusesIncompleteCharges(t *testing.T) {
	s, _ := newService(t)
	newWorkspace(t, s, "ws", 10)
	for _, c := range []provisioning.UsageCharge{
		{CallID: "x", Minutes: 1, Amount: 1},
		{Workspace: "ws", Minutes: 1, Amount: 1},
		{Workspace: "ws", CallID: "x", Minutes: 1, Amount: 0},
		{Workspace: "ws", CallID: "x", Minutes: 0, Amount: 1},
		{Workspace: "ws", CallID: strings.Repeat("x", 300), Minutes: 1, Amount: 1},
	} {
		if _, err := s.ChargeUsage(context.Background(), c); err == nil {
			t.Errorf("charge %+v accepted", c)
		}
	}
	if bal, _ := ledgerOK(t, s, "ws"); bal != 10 {
		t.Fatalf("balance %d after refused charges", bal)
	}
}
