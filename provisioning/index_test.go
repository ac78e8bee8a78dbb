package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store/storetest"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newIndexService(t *testing.T) (*Service, *testClock) {
	t.Helper()
	st := storetest.OpenEmbedded(t)
	clk := &testClock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	return New(st, Options{Sandbox: true, Now: clk.Now}), clk
}

func sandboxNumbers(t *testing.T, s *Service, ws, area string, n int) []string {
	t.Helper()
	page, err := s.Search(context.Background(), Principal{Workspace: ws}, SearchRequest{Carrier: "sandbox", SearchQuery: carrier.SearchQuery{Country: "US", AreaCode: area, Limit: n}})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range page.Numbers {
		out = append(out, a.PhoneNumber)
	}
	return out
}

func listed(t *testing.T, s *Service, ws string) []string {
	t.Helper()
	ns, err := s.ListNumbers(context.Background(), Principal{Workspace: ws})
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, n := range ns {
		out = append(out, n.PhoneNumber)
	}
	return out
}

// checkIndexExact fails unless the numbers index names exactly the
// records of each workspace (every record indexed under its own
// workspace, no entry without its record) and each workspace's listing
// is its active records.
func checkIndexExact(t *testing.T, s *Service, wss ...string) {
	t.Helper()
	checkIndex(t, s, true, wss...)
}

// checkIndex is checkIndexExact, but with exact false it allows entries
// without their record (left by a lost race until recovery removes them).
func checkIndex(t *testing.T, s *Service, exact bool, wss ...string) {
	t.Helper()
	ctx := context.Background()
	recs, _, err := s.allNumbers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byWS := map[string][]string{}
	active := map[string][]string{}
	for _, r := range recs {
		byWS[r.WorkspaceID] = append(byWS[r.WorkspaceID], numberKey(r.PhoneNumber))
		if r.Status != StatusPending {
			active[r.WorkspaceID] = append(active[r.WorkspaceID], r.PhoneNumber)
		}
	}
	for _, ws := range wss {
		keys, err := s.indexed(ctx, indexNumbers, ws)
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(keys)
		want := byWS[ws]
		sort.Strings(want)
		for _, k := range want {
			if _, found := slices.BinarySearch(keys, k); !found {
				t.Errorf("workspace %s: record %s not indexed (index %v)", ws, k, keys)
			}
		}
		if exact && !slices.Equal(keys, want) {
			t.Errorf("workspace %s: index %v, records %v", ws, keys, want)
		}
		sort.Strings(active[ws])
		if got := listed(t, s, ws); !slices.Equal(got, active[ws]) {
			t.Errorf("workspace %s lists %v, holds %v", ws, got, active[ws])
		}
	}
}

// TestListingReadsTheWorkspaceIndex: a workspace lists its own numbers,
// forwarding entries and integrations through its index; another
// workspace's record named under its prefix (a dangling or forged entry)
// is not shown; a release removes the entry; the routing snapshot holds
// every number once (the index is not routed).
func TestListingReadsTheWorkspaceIndex(t *testing.T) {
	s, _ := newIndexService(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	table := &routing.Table{}
	y := &Syncer{Table: table}
	st := s.Store()
	go y.Run(ctx, st.Numbers, st.Agents, st.Forwarding, st.Integrations)
	for _, ws := range []string{"alpha", "beta"} {
		if _, _, err := s.CreateWorkspace(ctx, ws, ws, 100_000); err != nil {
			t.Fatal(err)
		}
	}
	a := sandboxNumbers(t, s, "alpha", "228", 3)
	b := sandboxNumbers(t, s, "beta", "646", 2)
	for _, n := range a {
		if _, err := s.Purchase(ctx, Principal{Workspace: "alpha"}, PurchaseRequest{PhoneNumber: n, Carrier: "sandbox"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range b {
		if _, err := s.Purchase(ctx, Principal{Workspace: "beta"}, PurchaseRequest{PhoneNumber: n, Carrier: "sandbox"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := listed(t, s, "alpha"); !slices.Equal(got, a) {
		t.Fatalf("alpha lists %v, bought %v", got, a)
	}
	// An entry under alpha's prefix for beta's number is not alpha's.
	forged, err := s.indexAdd(ctx, indexNumbers, "alpha", numberKey(b[0]))
	if err != nil {
		t.Fatal(err)
	}
	if got := listed(t, s, "alpha"); !slices.Equal(got, a) {
		t.Fatalf("alpha lists %v after a foreign entry, want %v", got, a)
	}
	s.indexRemove(ctx, indexNumbers, "alpha", numberKey(b[0]), forged.stamp)
	if _, err := s.CreateForwarding(ctx, Principal{Workspace: "alpha"}, "+12025550123", a[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateForwarding(ctx, Principal{Workspace: "beta"}, "+12025550199", b[0]); err != nil {
		t.Fatal(err)
	}
	fw, err := s.ListForwarding(ctx, Principal{Workspace: "alpha"})
	if err != nil || len(fw) != 1 || fw[0].BusinessNumber != "+12025550123" || fw[0].GatewayNumber != a[0] {
		t.Fatalf("alpha forwarding %+v %v", fw, err)
	}
	if err := s.Release(ctx, Principal{Workspace: "alpha"}, a[0]); err != nil {
		t.Fatal(err)
	}
	if stamp := s.indexStampOf(ctx, indexNumbers, "alpha", numberKey(a[0])); stamp != "" {
		t.Fatalf("released number still indexed (%s)", stamp)
	}
	// The release removed the forwarding to it, index entry included.
	if fw, err := s.ListForwarding(ctx, Principal{Workspace: "alpha"}); err != nil || len(fw) != 0 {
		t.Fatalf("alpha forwarding after release %+v %v", fw, err)
	}
	if stamp := s.indexStampOf(ctx, indexForwarding, "alpha", "12025550123"); stamp != "" {
		t.Fatalf("deleted forwarding still indexed (%s)", stamp)
	}
	checkIndexExact(t, s, "alpha", "beta")
	testwait.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if n := table.Load().Len(); n != 4 {
			return fmt.Errorf("snapshot holds %d numbers, want 4", n)
		}
		return nil
	})
}

// TestPurchaseAndReleaseRacingKeepTheIndexExact: two workspaces buy and
// release the same few numbers from many goroutines. Each number has one
// owner at a time, every record is indexed under its owner, no entry
// lasts without its record past a recovery pass, listings equal the
// records, and the ledgers are exact.
func TestPurchaseAndReleaseRacingKeepTheIndexExact(t *testing.T) {
	s, clk := newIndexService(t)
	ctx := context.Background()
	wss := []string{"red", "blue"}
	for _, ws := range wss {
		if _, _, err := s.CreateWorkspace(ctx, ws, ws, 10_000_000); err != nil {
			t.Fatal(err)
		}
	}
	nums := sandboxNumbers(t, s, "red", "228", 4)
	var wg sync.WaitGroup
	var mu sync.Mutex
	bought := map[string]int{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			p := Principal{Workspace: wss[g%2]}
			for i := 0; i < 12; i++ {
				n := nums[(g+i)%len(nums)]
				if _, err := s.Purchase(ctx, p, PurchaseRequest{PhoneNumber: n, Carrier: "sandbox"}, ""); err == nil {
					mu.Lock()
					bought[p.Workspace]++
					mu.Unlock()
				} else if !errors.Is(err, ErrConflict) {
					t.Error(err)
					return
				}
				if err := s.Release(ctx, p, n); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if bought["red"]+bought["blue"] == 0 {
		t.Fatal("no purchase went through")
	}
	checkIndex(t, s, false, wss...)
	clk.Add(StaleClaimAge + time.Minute)
	if _, err := s.RecoverStaleClaims(ctx); err != nil {
		t.Fatal(err)
	}
	checkIndexExact(t, s, wss...)
	for _, ws := range wss {
		entries, err := s.Ledger(ctx, ws)
		if err != nil {
			t.Fatal(err)
		}
		var sum int64
		charges := 0
		for _, e := range entries {
			sum += e.Amount
			if e.Kind == KindPurchase {
				charges++
			}
		}
		bal, err := s.Balance(ctx, ws)
		if err != nil || bal != sum || charges != bought[ws] {
			t.Fatalf("%s: balance %d, ledger sum %d, %d charges for %d purchases (%v)", ws, bal, sum, charges, bought[ws], err)
		}
	}
}

// TestCrashBetweenIndexAndClaimIsRecovered: a purchase that died after
// its index entry (before the claim, or after the claim before commit)
// shows nothing in the listing; recovery deletes the stale entry (and
// the stale claim, refunding it), while an entry touched again by a new
// purchase of the same number survives.
func TestCrashBetweenIndexAndClaimIsRecovered(t *testing.T) {
	s, clk := newIndexService(t)
	ctx := context.Background()
	p := Principal{Workspace: "crash"}
	if _, _, err := s.CreateWorkspace(ctx, p.Workspace, "crash", 100_000); err != nil {
		t.Fatal(err)
	}
	nums := sandboxNumbers(t, s, p.Workspace, "228", 3)
	// 1. Died between the index entry and the claim.
	if _, err := s.indexAdd(ctx, indexNumbers, p.Workspace, numberKey(nums[0])); err != nil {
		t.Fatal(err)
	}
	// 2. Died after the claim and the charge.
	CrashAtForTest(s, "purchase:charged")
	if _, err := s.Purchase(ctx, p, PurchaseRequest{PhoneNumber: nums[1], Carrier: "sandbox"}, ""); !errors.Is(err, errSimulatedCrash) {
		t.Fatalf("crash: %v", err)
	}
	CrashAtForTest(s, "")
	// 3. Died before the claim, then bought for real later (the entry is
	// touched, not stale).
	if _, err := s.indexAdd(ctx, indexNumbers, p.Workspace, numberKey(nums[2])); err != nil {
		t.Fatal(err)
	}
	if got := listed(t, s, p.Workspace); len(got) != 0 {
		t.Fatalf("listing shows unfinished purchases: %v", got)
	}
	if n, err := s.RecoverStaleClaims(ctx); err != nil || n != 0 {
		t.Fatalf("fresh entries recovered: %d %v", n, err)
	}
	clk.Add(StaleClaimAge + time.Minute)
	if _, err := s.Purchase(ctx, p, PurchaseRequest{PhoneNumber: nums[2], Carrier: "sandbox"}, ""); err != nil {
		t.Fatal(err)
	}
	// claim of nums[1] refunded and deleted with its entry, nums[0]'s
	// entry deleted: 1 + 1.
	if n, err := s.RecoverStaleClaims(ctx); err != nil || n != 2 {
		t.Fatalf("recover: %d %v", n, err)
	}
	for _, n := range nums[:2] {
		if stamp := s.indexStampOf(ctx, indexNumbers, p.Workspace, numberKey(n)); stamp != "" {
			t.Fatalf("stale entry of %s kept (%s)", n, stamp)
		}
	}
	if got := listed(t, s, p.Workspace); !slices.Equal(got, nums[2:]) {
		t.Fatalf("lists %v, want %v", got, nums[2:])
	}
	checkIndexExact(t, s, p.Workspace)
	bal, _ := s.Balance(ctx, p.Workspace)
	cost, _ := s.sandbox.Describe(nums[2])
	if bal != 100_000-cost.MonthlyCost {
		t.Fatalf("balance %d, want %d (one purchase; the interrupted one refunded)", bal, 100_000-cost.MonthlyCost)
	}
}

// writeOldLayout writes records as a store of layout 1 held them: no
// index, no layout version.
func writeOldLayout(t *testing.T, s *Service) (numbers map[string][]string) {
	t.Helper()
	ctx := context.Background()
	numbers = map[string][]string{}
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 30; i++ {
		ws := []string{"old-a", "old-b", "old-c"}[i%3]
		e164 := fmt.Sprintf("+1228300%04d", i)
		rec := numberRecord{Number: Number{PhoneNumber: e164, Carrier: "sandbox", Origin: "purchased", Status: "active", MonthlyCost: 100, PurchasedAt: now}, WorkspaceID: ws, ClaimedAt: now}
		v, _ := json.Marshal(rec)
		if _, err := s.st.Numbers.Create(ctx, numberKey(e164), v); err != nil {
			t.Fatal(err)
		}
		numbers[ws] = append(numbers[ws], e164)
	}
	for i, ws := range []string{"old-a", "old-b"} {
		f := Forward{BusinessNumber: fmt.Sprintf("+1202555010%d", i), GatewayNumber: numbers[ws][0], Workspace: ws, CreatedAt: now}
		v, _ := json.Marshal(f)
		if _, err := s.st.Forwarding.Create(ctx, numberKey(f.BusinessNumber), v); err != nil {
			t.Fatal(err)
		}
		in := integrationRecord{Integration: Integration{ID: fmt.Sprintf("int_old%d", i), Name: "acct", Carrier: "twilio", Hints: map[string]string{}, CreatedAt: now}, Workspace: ws}
		v, _ = json.Marshal(in)
		if _, err := s.st.Integrations.Create(ctx, in.ID, v); err != nil {
			t.Fatal(err)
		}
	}
	return numbers
}

// TestMigrateOldLayout: a store written in the old layout comes up with
// every listing right and nothing lost, when two nodes migrate it at
// once; a second migration writes nothing.
func TestMigrateOldLayout(t *testing.T) {
	dir := t.TempDir()
	st := storetest.OpenEmbeddedAt(t, dir)
	s := New(st, Options{Sandbox: true})
	numbers := writeOldLayout(t, s)
	ctx := context.Background()
	if got := listed(t, s, "old-a"); len(got) != 0 {
		t.Fatalf("before migration the index is empty, yet old-a lists %v", got)
	}
	// Two nodes start at once on the same store.
	s2 := New(st, Options{Sandbox: true})
	var wg sync.WaitGroup
	counts := make([]int, 2)
	errs := make([]error, 2)
	for i, svc := range []*Service{s, s2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = svc.MigrateLayout(ctx)
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("migrate: %v, %v", errs[0], errs[1])
	}
	// 30 numbers + 2 forwarding entries + 2 integrations, written once
	// between the two nodes (a node that starts after the first finished
	// writes nothing).
	if counts[0]+counts[1] != 34 {
		t.Fatalf("entries written %v, want 34 in all", counts)
	}
	st.Close()
	st = storetest.OpenEmbeddedAt(t, dir) // restart: nothing lost
	s = New(st, Options{Sandbox: true})
	if n, err := s.MigrateLayout(ctx); err != nil || n != 0 {
		t.Fatalf("second migration: %d %v", n, err)
	}
	for ws, want := range numbers {
		sort.Strings(want)
		if got := listed(t, s, ws); !slices.Equal(got, want) {
			t.Fatalf("%s lists %v, want %v", ws, got, want)
		}
	}
	checkIndexExact(t, s, "old-a", "old-b", "old-c")
	for i, ws := range []string{"old-a", "old-b"} {
		fw, err := s.ListForwarding(ctx, Principal{Workspace: ws})
		if err != nil || len(fw) != 1 || fw[0].BusinessNumber != fmt.Sprintf("+1202555010%d", i) {
			t.Fatalf("%s forwarding %+v %v", ws, fw, err)
		}
		its, err := s.ListIntegrations(ctx, Principal{Workspace: ws})
		if err != nil || len(its) != 1 || its[0].ID != fmt.Sprintf("int_old%d", i) {
			t.Fatalf("%s integrations %+v %v", ws, its, err)
		}
	}
	if its, err := s.ListIntegrations(ctx, Principal{Workspace: "old-c"}); err != nil || len(its) != 0 {
		t.Fatalf("old-c integrations %+v %v", its, err)
	}
}

// TestRecoveryIndexesRecordsOfAnOlderNode: after the migration, a record
// written without its entry (a node of the older version during a
// rolling upgrade) is indexed by the next recovery pass.
func TestRecoveryIndexesRecordsOfAnOlderNode(t *testing.T) {
	s, _ := newIndexService(t)
	ctx := context.Background()
	if _, err := s.MigrateLayout(ctx); err != nil {
		t.Fatal(err)
	}
	numbers := writeOldLayout(t, s)
	if got := listed(t, s, "old-b"); len(got) != 0 {
		t.Fatalf("unindexed records listed: %v", got)
	}
	if n, err := s.RecoverStaleClaims(ctx); err != nil || n != 34 {
		t.Fatalf("recover: %d %v", n, err)
	}
	want := numbers["old-b"]
	sort.Strings(want)
	if got := listed(t, s, "old-b"); !slices.Equal(got, want) {
		t.Fatalf("old-b lists %v, want %v", got, want)
	}
}
