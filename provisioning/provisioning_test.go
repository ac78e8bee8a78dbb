package provisioning_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store/storetest"
)

// clock is an injectable clock for renewal tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func newService(t *testing.T) (*provisioning.Service, *clock) {
	t.Helper()
	st := storetest.OpenEmbedded(t)
	clk := &clock{t: time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)}
	return provisioning.New(st, provisioning.Options{Sandbox: true, Now: clk.Now}), clk
}

func newWorkspace(t *testing.T, s *provisioning.Service, id string, credits int64) provisioning.Principal {
	t.Helper()
	if _, _, err := s.CreateWorkspace(context.Background(), id, id, credits); err != nil {
		t.Fatal(err)
	}
	return provisioning.Principal{Workspace: id}
}

func search(t *testing.T, s *provisioning.Service, p provisioning.Principal, areaCode string, limit int) []carrier.AvailableNumber {
	t.Helper()
	page, err := s.Search(context.Background(), p, provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: carrier.SearchQuery{Country: "US", AreaCode: areaCode, Limit: limit}})
	if err != nil {
		t.Fatal(err)
	}
	return page.Numbers
}

// ledgerOK checks that the balance equals the sum of the ledger and is never negative.
func ledgerOK(t *testing.T, s *provisioning.Service, ws string) (int64, []provisioning.LedgerEntry) {
	t.Helper()
	ctx := context.Background()
	entries, err := s.Ledger(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	bal, err := s.Balance(ctx, ws)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for i, e := range entries {
		sum += e.Amount
		if e.Balance != sum {
			t.Fatalf("entry %d: balance %d, running sum %d", i, e.Balance, sum)
		}
		if e.Balance < 0 {
			t.Fatalf("entry %d: balance went negative: %d", i, e.Balance)
		}
	}
	if sum != bal {
		t.Fatalf("balance %d != ledger sum %d", bal, sum)
	}
	return bal, entries
}

func TestFiftyBuyersOneNumber(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	const buyers = 50
	ps := make([]provisioning.Principal, buyers)
	for i := range ps {
		ps[i] = newWorkspace(t, s, fmt.Sprintf("ws%d", i), 1000)
	}
	num := search(t, s, ps[0], "228", 1)[0]
	var wins, conflicts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < buyers; i++ {
		wg.Add(1)
		go func(p provisioning.Principal) {
			defer wg.Done()
			<-start
			_, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: num.PhoneNumber, Carrier: "sandbox"}, "")
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, provisioning.ErrConflict):
				conflicts.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		}(ps[i])
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != buyers-1 {
		t.Fatalf("wins=%d conflicts=%d, want 1 and %d", wins.Load(), conflicts.Load(), buyers-1)
	}
	charges := 0
	for _, p := range ps {
		bal, entries := ledgerOK(t, s, p.Workspace)
		for _, e := range entries {
			if e.Kind == provisioning.KindPurchase {
				charges++
				if bal != 1000-num.MonthlyCost {
					t.Fatalf("winner balance %d", bal)
				}
			}
			if e.Kind == provisioning.KindRefund {
				t.Fatalf("unexpected refund in %s", p.Workspace)
			}
		}
	}
	if charges != 1 {
		t.Fatalf("charges = %d, want exactly 1", charges)
	}
}

func TestConcurrentPurchasesNeverOverspend(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	nums := search(t, s, provisioning.Principal{}, "415", 12)
	cost := nums[0].MonthlyCost
	const k = 5
	p := newWorkspace(t, s, "tight", cost*k+cost/2) // credits for k numbers, not k+1
	var wins, short atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, n := range nums {
		wg.Add(1)
		go func(n carrier.AvailableNumber) {
			defer wg.Done()
			<-start
			_, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: n.PhoneNumber, Carrier: "sandbox"}, "")
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, provisioning.ErrInsufficientCredits):
				short.Add(1)
			default:
				t.Errorf("unexpected: %v", err)
			}
		}(n)
	}
	close(start)
	wg.Wait()
	if wins.Load() != k || int(short.Load()) != len(nums)-k {
		t.Fatalf("wins=%d short=%d, want %d and %d", wins.Load(), short.Load(), k, len(nums)-k)
	}
	bal, _ := ledgerOK(t, s, p.Workspace)
	if bal != cost/2 {
		t.Fatalf("balance %d, want %d", bal, cost/2)
	}
	owned, err := s.ListNumbers(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(owned) != k {
		t.Fatalf("owned %d numbers, want %d (a failed purchase left a claim?)", len(owned), k)
	}
	// Numbers whose purchase failed are back in inventory.
	avail := map[string]bool{}
	for _, n := range search(t, s, p, "415", 12) {
		avail[n.PhoneNumber] = true
	}
	for _, n := range owned {
		if avail[n.PhoneNumber] {
			t.Fatalf("owned number %s still listed in the marketplace", n.PhoneNumber)
		}
	}
}

func TestIdempotentPurchase(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "idem", 1000)
	num := search(t, s, p, "228", 1)[0]
	req := provisioning.PurchaseRequest{PhoneNumber: num.PhoneNumber, Carrier: "sandbox"}
	var wg sync.WaitGroup
	results := make([]error, 10)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, results[i] = s.Purchase(ctx, p, req, "key-1")
		}(i)
	}
	wg.Wait()
	for i, err := range results {
		// Concurrent twins either get the first result or are told it is in progress.
		if err != nil && !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	n, err := s.Purchase(ctx, p, req, "key-1")
	if err != nil || n.PhoneNumber != num.PhoneNumber {
		t.Fatalf("replay: %v %v", n, err)
	}
	bal, entries := ledgerOK(t, s, p.Workspace)
	if bal != 1000-num.MonthlyCost || len(entries) != 2 {
		t.Fatalf("balance %d with %d entries: charged more than once", bal, len(entries))
	}
	// The same key for another number is refused.
	other := search(t, s, p, "228", 1)[0]
	if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: other.PhoneNumber, Carrier: "sandbox"}, "key-1"); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("reused key for another request: %v", err)
	}
	// A failed purchase (no credits) is remembered too and charged nothing.
	poor := newWorkspace(t, s, "poor", 1)
	_, err1 := s.Purchase(ctx, poor, provisioning.PurchaseRequest{PhoneNumber: other.PhoneNumber, Carrier: "sandbox"}, "k")
	_, err2 := s.Purchase(ctx, poor, provisioning.PurchaseRequest{PhoneNumber: other.PhoneNumber, Carrier: "sandbox"}, "k")
	if !errors.Is(err1, provisioning.ErrInsufficientCredits) || !errors.Is(err2, provisioning.ErrInsufficientCredits) {
		t.Fatalf("want 402 twice: %v / %v", err1, err2)
	}
}

func TestRenewalSuspendResume(t *testing.T) {
	s, clk := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "renew", 250)
	num := search(t, s, p, "228", 1)[0] // 100 credits a month
	if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: num.PhoneNumber}, ""); err != nil {
		t.Fatal(err)
	}
	// Bought on Jan 31: renews Feb 28 (clamped), then Mar 31.
	n, _ := s.GetNumber(ctx, p, num.PhoneNumber)
	if got := n.RenewsAt.Format("2006-01-02"); got != "2026-02-28" {
		t.Fatalf("renews at %s, want 2026-02-28", got)
	}
	// Nothing is due the day before.
	clk.Set(time.Date(2026, 2, 27, 10, 0, 0, 0, time.UTC))
	if res, err := s.RunRenewals(ctx); err != nil || res.Renewed != 0 {
		t.Fatalf("early renewal: %+v %v", res, err)
	}
	clk.Set(time.Date(2026, 2, 28, 10, 0, 1, 0, time.UTC))
	if res, err := s.RunRenewals(ctx); err != nil || res.Renewed != 1 {
		t.Fatalf("renewal: %+v %v", res, err)
	}
	// A second pass (another node) charges nothing more.
	if res, err := s.RunRenewals(ctx); err != nil || res.Renewed != 0 {
		t.Fatalf("double renewal: %+v %v", res, err)
	}
	if bal, _ := ledgerOK(t, s, p.Workspace); bal != 50 {
		t.Fatalf("balance %d after renewal, want 50", bal)
	}
	// March 31: 50 credits cannot pay 100: suspended, not lost.
	clk.Set(time.Date(2026, 3, 31, 11, 0, 0, 0, time.UTC))
	if res, err := s.RunRenewals(ctx); err != nil || res.Suspended != 1 {
		t.Fatalf("suspend: %+v %v", res, err)
	}
	n, _ = s.GetNumber(ctx, p, num.PhoneNumber)
	if n.Status != routing.StatusSuspended {
		t.Fatalf("status %q, want suspended", n.Status)
	}
	if bal, _ := ledgerOK(t, s, p.Workspace); bal != 50 {
		t.Fatalf("suspension charged: balance %d", bal)
	}
	// Top-up resumes it and charges the month.
	clk.Set(time.Date(2026, 4, 2, 9, 0, 0, 0, time.UTC))
	if _, err := s.TopUp(ctx, p.Workspace, 100, "test"); err != nil {
		t.Fatal(err)
	}
	n, _ = s.GetNumber(ctx, p, num.PhoneNumber)
	if n.Status != routing.StatusActive {
		t.Fatalf("status %q after top-up, want active", n.Status)
	}
	if got := n.RenewsAt.Format("2006-01-02"); got != "2026-04-30" {
		t.Fatalf("next renewal %s, want 2026-04-30", got)
	}
	bal, entries := ledgerOK(t, s, p.Workspace)
	if bal != 50 {
		t.Fatalf("balance %d, want 50", bal)
	}
	renewals := 0
	for _, e := range entries {
		if e.Kind == provisioning.KindRenewal {
			renewals++
		}
	}
	if renewals != 2 {
		t.Fatalf("%d renewal entries, want 2", renewals)
	}
}

func TestReleaseNoRefundBackToInventory(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "rel", 1000)
	num := search(t, s, p, "228", 1)[0]
	if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: num.PhoneNumber}, ""); err != nil {
		t.Fatal(err)
	}
	if got := search(t, s, p, "228", 1)[0].PhoneNumber; got == num.PhoneNumber {
		t.Fatal("owned number still in inventory")
	}
	other := newWorkspace(t, s, "other", 1000)
	if err := s.Release(ctx, other, num.PhoneNumber); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("another workspace released it: %v", err)
	}
	if err := s.Release(ctx, p, num.PhoneNumber); err != nil {
		t.Fatal(err)
	}
	if bal, _ := ledgerOK(t, s, p.Workspace); bal != 1000-num.MonthlyCost {
		t.Fatalf("balance %d: release refunded", bal)
	}
	if got := search(t, s, p, "228", 1)[0].PhoneNumber; got != num.PhoneNumber {
		t.Fatalf("released number not back in inventory: first is %s", got)
	}
}

func TestAgentsAndAssignment(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "ag", 1000)
	q := newWorkspace(t, s, "ag2", 1000)
	num := search(t, s, p, "228", 1)[0]
	if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: num.PhoneNumber}, ""); err != nil {
		t.Fatal(err)
	}
	ghost := "ghost"
	if _, err := s.UpdateNumber(ctx, p, num.PhoneNumber, provisioning.NumberPatch{AgentID: &ghost}); !errors.Is(err, provisioning.ErrInvalid) {
		t.Fatalf("assign to missing agent: %v", err)
	}
	in := provisioning.AgentInput{ID: "bot", Name: "Bot", Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:bot@127.0.0.1:5090;transport=udp"}}}
	if _, err := s.CreateAgent(ctx, p, in); err != nil {
		t.Fatal(err)
	}
	// An agent of another workspace is not assignable.
	if _, err := s.CreateAgent(ctx, q, provisioning.AgentInput{ID: "theirs", Name: "x", Endpoints: in.Endpoints}); err != nil {
		t.Fatal(err)
	}
	theirs := "theirs"
	if _, err := s.UpdateNumber(ctx, p, num.PhoneNumber, provisioning.NumberPatch{AgentID: &theirs}); !errors.Is(err, provisioning.ErrInvalid) {
		t.Fatalf("assigned another workspace's agent: %v", err)
	}
	bot := "bot"
	if _, err := s.UpdateNumber(ctx, p, num.PhoneNumber, provisioning.NumberPatch{AgentID: &bot}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAgent(ctx, p, "bot"); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("deleted an agent with numbers: %v", err)
	}
	if _, err := s.GetAgent(ctx, q, "bot"); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("other workspace sees agent: %v", err)
	}
	none := ""
	if _, err := s.UpdateNumber(ctx, p, num.PhoneNumber, provisioning.NumberPatch{AgentID: &none}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAgent(ctx, p, "bot"); err != nil {
		t.Fatal(err)
	}
}

// Number changes reach the table as overlays on the last snapshot, not
// as full rebuilds; an agent change, or an overlay past CompactAfter,
// rebuilds it whole. Every step routes what the store holds.
func TestRoutingSyncIncremental(t *testing.T) {
	s, _ := newService(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	table := &routing.Table{}
	y := &provisioning.Syncer{Table: table, CompactAfter: 4, Debounce: time.Millisecond}
	st := s.Store()
	p := newWorkspace(t, s, "incr", 1000)
	if _, err := s.CreateAgent(ctx, p, provisioning.AgentInput{ID: "bot", Name: "Bot", Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:bot@127.0.0.1:5090"}}}); err != nil {
		t.Fatal(err)
	}
	go y.Run(ctx, st.Numbers, st.Agents, st.Forwarding, st.Integrations)
	<-y.Ready()
	if n := y.FullBuilds.Load(); n != 1 {
		t.Fatalf("%d full builds after start, want 1", n)
	}
	routes := func(e164, agent string) func() error {
		return func() error {
			r, ok := table.Load().Lookup(e164)
			switch {
			case agent == "" && ok:
				return fmt.Errorf("%s still routed: %+v", e164, r)
			case agent != "" && (!ok || r.Agent == nil || r.Agent.ID != agent):
				return fmt.Errorf("%s: route %+v %v, want agent %s", e164, r, ok, agent)
			}
			return nil
		}
	}
	nums := search(t, s, p, "228", 7)
	for _, n := range nums[:2] {
		if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: n.PhoneNumber, AgentID: "bot"}, ""); err != nil {
			t.Fatal(err)
		}
		testwait.CheckFor(t, time.Second, 2*time.Millisecond, routes(n.PhoneNumber, "bot"))
	}
	if err := s.Release(ctx, p, nums[0].PhoneNumber); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, time.Second, 2*time.Millisecond, routes(nums[0].PhoneNumber, ""))
	if snap := table.Load(); y.FullBuilds.Load() != 1 || snap.Overlay() == 0 || snap.Len() != 1 {
		t.Fatalf("after 2 purchases and a release: %d full builds, overlay %d, %d numbers; want 1 build, an overlay, 1 number",
			y.FullBuilds.Load(), snap.Overlay(), snap.Len())
	}
	// An agent's new endpoint needs the routes resolved again: full build.
	if _, err := s.UpdateAgent(ctx, p, "bot", provisioning.AgentInput{Name: "Bot", Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:bot@127.0.0.1:5099"}}}); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, time.Second, 2*time.Millisecond, func() error {
		r, ok := table.Load().Lookup(nums[1].PhoneNumber)
		if !ok || r.Agent == nil || len(r.Agent.Endpoints) != 1 || r.Agent.Endpoints[0].URI != "sip:bot@127.0.0.1:5099" {
			return fmt.Errorf("route %+v %v does not carry the new endpoint", r, ok)
		}
		return nil
	})
	if n := y.FullBuilds.Load(); n != 2 || table.Load().Overlay() != 0 {
		t.Fatalf("after an agent change: %d full builds, overlay %d; want 2 and 0", n, table.Load().Overlay())
	}
	// The same number changed again and again keeps one overlay entry.
	for _, agent := range []string{"", "bot", "", "bot"} {
		if _, err := s.UpdateNumber(ctx, p, nums[1].PhoneNumber, provisioning.NumberPatch{AgentID: &agent}); err != nil {
			t.Fatal(err)
		}
		testwait.CheckFor(t, time.Second, 2*time.Millisecond, func() error {
			r, ok := table.Load().Lookup(nums[1].PhoneNumber)
			if !ok || (agent == "") != (r.Agent == nil) {
				return fmt.Errorf("route %+v %v, want agent %q", r, ok, agent)
			}
			return nil
		})
	}
	if n, o := y.FullBuilds.Load(), table.Load().Overlay(); n != 2 || o != 1 {
		t.Fatalf("one number changed 4 times: %d full builds, overlay %d; want 2 and 1", n, o)
	}
	// More distinct numbers changed than CompactAfter: a full build.
	for _, n := range nums[2:] {
		if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: n.PhoneNumber, AgentID: "bot"}, ""); err != nil {
			t.Fatal(err)
		}
		testwait.CheckFor(t, time.Second, 2*time.Millisecond, routes(n.PhoneNumber, "bot"))
	}
	if n := y.FullBuilds.Load(); n < 3 || table.Load().Overlay() > 4 || table.Load().Len() != 6 {
		t.Fatalf("5 more numbers with CompactAfter 4: %d full builds, overlay %d, %d numbers; want a compaction and 6 numbers",
			n, table.Load().Overlay(), table.Load().Len())
	}
}

func TestRoutingSyncFollowsWrites(t *testing.T) {
	s, _ := newService(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	table := &routing.Table{}
	y := &provisioning.Syncer{Table: table}
	st := s.Store()
	go y.Run(ctx, st.Numbers, st.Agents, st.Forwarding, st.Integrations)
	<-y.Ready()
	p := newWorkspace(t, s, "sync", 1000)
	num := search(t, s, p, "228", 1)[0]
	if _, err := s.CreateAgent(ctx, p, provisioning.AgentInput{ID: "bot", Name: "Bot", Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:bot@127.0.0.1:5090"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: num.PhoneNumber, AgentID: "bot"}, ""); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		r, ok := table.Load().Lookup(num.PhoneNumber)
		if !ok || r.Agent == nil || r.Agent.ID != "bot" || r.Number.Status != routing.StatusActive {
			return fmt.Errorf("route %+v %v", r, ok)
		}
		return nil
	})
	if _, err := s.CreateForwarding(ctx, p, "+12025550123", num.PhoneNumber); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateForwarding(ctx, p, "+12025550123", num.PhoneNumber); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("duplicate business line: %v", err)
	}
	testwait.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		f, ok := table.Load().ForwardFrom("+12025550123")
		if !ok || f.GatewayNumber != num.PhoneNumber || f.Workspace != "sync" {
			return fmt.Errorf("forward %+v %v", f, ok)
		}
		return nil
	})
	if err := s.Release(ctx, p, num.PhoneNumber); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, time.Second, 5*time.Millisecond, func() error {
		if _, ok := table.Load().Lookup(num.PhoneNumber); ok {
			return errors.New("released number still routed")
		}
		if _, ok := table.Load().ForwardFrom("+12025550123"); ok {
			return errors.New("forwarding to a released number still routed")
		}
		return nil
	})
}

// TestRecoverInterruptedPurchase: a node died after claiming and charging
// but before committing. Recovery refunds the charge and frees the number.
func TestRecoverInterruptedPurchase(t *testing.T) {
	s, clk := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "crash", 1000)
	num := search(t, s, p, "228", 1)[0]
	// Reproduce the saga's first two steps as a crashed node left them.
	provisioning.ClaimAndChargeForTest(t, s, p, num.PhoneNumber, num.MonthlyCost)
	if got := search(t, s, p, "228", 1)[0].PhoneNumber; got == num.PhoneNumber {
		t.Fatal("claimed number listed")
	}
	if n, err := s.RecoverStaleClaims(ctx); err != nil || n != 0 {
		t.Fatalf("fresh claim recovered: %d %v", n, err)
	}
	clk.Set(clk.Now().Add(provisioning.StaleClaimAge + time.Minute))
	if n, err := s.RecoverStaleClaims(ctx); err != nil || n != 1 {
		t.Fatalf("recover: %d %v", n, err)
	}
	if bal, _ := ledgerOK(t, s, p.Workspace); bal != 1000 {
		t.Fatalf("balance %d after recovery, want 1000", bal)
	}
	if got := search(t, s, p, "228", 1)[0].PhoneNumber; got != num.PhoneNumber {
		t.Fatal("recovered number not back in inventory")
	}
}
