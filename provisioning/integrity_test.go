package provisioning_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/store/storetest"
)

func testAgent(t *testing.T, s *provisioning.Service, p provisioning.Principal, id string) {
	t.Helper()
	in := provisioning.AgentInput{ID: id, Name: id, Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:" + id + "@127.0.0.1:5090;transport=udp"}}}
	if _, err := s.CreateAgent(context.Background(), p, in); err != nil {
		t.Fatal(err)
	}
}

// integrations resolves every integration id to one carrier adapter.
type integrations struct{ c carrier.Carrier }

func (i integrations) Carrier(context.Context, string, string) (carrier.Carrier, error) {
	return i.c, nil
}

// newTwilioService is a service whose "tw" integration is a Twilio
// adapter talking to a fake Twilio on 127.0.0.1.
func newTwilioService(t *testing.T, inventory []twiliofake.Number) (*provisioning.Service, *twiliofake.Server, *clock) {
	t.Helper()
	fk := twiliofake.MustNew(t, twiliofake.Options{Inventory: inventory})
	c, err := twilio.New(twilio.Config{AccountSID: fk.AccountSID(), AuthToken: fk.AuthToken(), APIBase: fk.URL()})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 1, 31, 10, 0, 0, 0, time.UTC)}
	s := provisioning.New(storetest.OpenEmbedded(t), provisioning.Options{Sandbox: true, Now: clk.Now, Integrations: integrations{c}})
	return s, fk, clk
}

// A release racing assignments of the same number: whatever wins, a
// number released at the carrier is never left active in callgate, and
// every loser hears a clear 4xx.
func TestReleaseRacingAssign(t *testing.T) {
	const rounds = 19
	inv := twiliofake.GenerateInventory("415", twiliofake.TypeLocal, rounds)
	s, fk, _ := newTwilioService(t, inv)
	ctx := context.Background()
	p := newWorkspace(t, s, "race", 1_000_000)
	testAgent(t, s, p, "a1")
	testAgent(t, s, p, "a2")
	for _, n := range inv {
		if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: n.PhoneNumber, Carrier: "twilio", IntegrationID: "tw"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	// A carrier takes its time to release (as a real one does).
	fk.FailNext(twiliofake.Failure{Method: "DELETE", Delay: 50 * time.Millisecond, Times: 10 * rounds})
	var wg sync.WaitGroup
	start := make(chan struct{})
	released := make([]bool, len(inv))
	for i, n := range inv {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := s.Release(ctx, p, n.PhoneNumber)
			switch {
			case err == nil:
				released[i] = true
			case errors.Is(err, provisioning.ErrConflict):
			default:
				t.Errorf("release %s: %v", n.PhoneNumber, err)
			}
		}()
		for j := 0; j < 4; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				agent := fmt.Sprintf("a%d", j%2+1)
				for k := 0; k < 5; k++ {
					_, err := s.UpdateNumber(ctx, p, n.PhoneNumber, provisioning.NumberPatch{AgentID: &agent})
					if err != nil && !errors.Is(err, provisioning.ErrConflict) && !errors.Is(err, provisioning.ErrNotFound) {
						t.Errorf("assign %s: %v", n.PhoneNumber, err)
					}
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	inCallgate, err := s.ListNumbers(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, n := range inCallgate {
		if _, ok := fk.OwnedNumber(n.PhoneNumber); !ok {
			bad++
			t.Errorf("%s is %s in callgate (agent %q) but released at the carrier", n.PhoneNumber, n.Status, n.AgentID)
		}
	}
	for i, n := range inv {
		if _, ok := fk.OwnedNumber(n.PhoneNumber); released[i] && ok {
			t.Errorf("%s: release answered OK but the carrier still holds it", n.PhoneNumber)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d numbers active in callgate but released at the carrier", bad, len(inv))
	}
	// Assignments cannot starve a release: every release went through.
	for i, n := range inv {
		if !released[i] {
			t.Errorf("%s: release refused", n.PhoneNumber)
		}
	}
}

// Deleting an agent while its number is being assigned to it: after the
// delete, no number is assigned to the deleted agent, and an assignment
// that lost the race fails with a clear 4xx.
func TestDeleteAgentRacingAssign(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "agrace", 1_000_000)
	nums := search(t, s, p, "415", 3)
	for _, n := range nums {
		if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: n.PhoneNumber, Carrier: "sandbox"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	const rounds = 30
	fresh := search(t, s, p, "650", rounds)
	leaked := 0
	for r := 0; r < rounds; r++ {
		id := fmt.Sprintf("bot%d", r)
		testAgent(t, s, p, id)
		var wg sync.WaitGroup
		start := make(chan struct{})
		// A purchase naming the agent races the delete too.
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: fresh[r].PhoneNumber, Carrier: "sandbox", AgentID: id}, "")
			if err != nil && !errors.Is(err, provisioning.ErrInvalid) && !errors.Is(err, provisioning.ErrConflict) {
				t.Errorf("round %d: purchase for the agent: %v", r, err)
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := s.DeleteAgent(ctx, p, id); err != nil && !errors.Is(err, provisioning.ErrConflict) {
				t.Errorf("round %d: delete agent: %v", r, err)
			}
		}()
		for _, n := range nums {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := s.UpdateNumber(ctx, p, n.PhoneNumber, provisioning.NumberPatch{AgentID: &id})
				if err != nil && !errors.Is(err, provisioning.ErrInvalid) && !errors.Is(err, provisioning.ErrConflict) {
					t.Errorf("round %d: assign: %v", r, err)
				}
			}()
		}
		close(start)
		wg.Wait()
		_, err := s.GetAgent(ctx, p, id)
		if err != nil && !errors.Is(err, provisioning.ErrNotFound) {
			t.Fatal(err)
		}
		deleted := errors.Is(err, provisioning.ErrNotFound)
		all, err := s.ListNumbers(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range all {
			if deleted && n.AgentID == id {
				leaked++
				t.Errorf("round %d: %s is assigned to deleted agent %s", r, n.PhoneNumber, id)
			}
		}
		// Reset for the next round.
		none := ""
		for _, n := range all {
			if _, err := s.UpdateNumber(ctx, p, n.PhoneNumber, provisioning.NumberPatch{AgentID: &none}); err != nil {
				t.Fatal(err)
			}
		}
		if !deleted {
			if err := s.DeleteAgent(ctx, p, id); err != nil {
				t.Fatalf("round %d: delete agent with no numbers: %v", r, err)
			}
		}
	}
	if leaked > 0 {
		t.Fatalf("%d numbers left assigned to deleted agents in %d rounds", leaked, rounds)
	}
}

// A purchase or top-up interrupted at any step leaves its Idempotency-Key
// pending; after recovery the key answers the operation's final result
// (it completed) or runs it afresh (it did not), never 409 for ever, and
// credits move once.
func TestIdempotencyKeyAfterCrash(t *testing.T) {
	for _, step := range []string{"purchase:claimed", "purchase:charged", "purchase:committed", "topup:begun", "topup:posted"} {
		t.Run(step, func(t *testing.T) {
			s, clk := newService(t)
			ctx := context.Background()
			p := newWorkspace(t, s, "crash", 1000)
			num := search(t, s, p, "228", 1)[0]
			req := provisioning.PurchaseRequest{PhoneNumber: num.PhoneNumber, Carrier: "sandbox"}
			topUp := strings.HasPrefix(step, "topup:")
			run := func() (string, error) {
				if topUp {
					e, err := s.TopUpIdempotent(ctx, p.Workspace, 500, "wire 42", "key-1")
					return e.ID, err
				}
				n, err := s.Purchase(ctx, p, req, "key-1")
				return n.PhoneNumber, err
			}
			provisioning.CrashAtForTest(s, step)
			if _, err := run(); err == nil {
				t.Fatal("the saga did not stop at the crash")
			}
			provisioning.CrashAtForTest(s, "")
			// The node restarts later; recovery runs.
			clk.Set(clk.Now().Add(provisioning.StaleClaimAge + time.Minute))
			if _, err := s.RecoverStaleClaims(ctx); err != nil {
				t.Fatal(err)
			}
			first, err := run()
			if err != nil {
				t.Fatalf("retry after recovery: %v", err)
			}
			again, err := run()
			if err != nil || again != first {
				t.Fatalf("replay: %q %v, want %q", again, err, first)
			}
			bal, entries := ledgerOK(t, s, p.Workspace)
			want := 1000 - num.MonthlyCost
			if topUp {
				want = 1500
			}
			if bal != want {
				t.Fatalf("balance %d, want %d (entries %+v)", bal, want, entries)
			}
			if !topUp {
				got, err := s.GetNumber(ctx, p, num.PhoneNumber)
				if err != nil || got.Status != "active" {
					t.Fatalf("number after recovery: %+v %v", got, err)
				}
			}
			// Nothing is left for a later pass.
			clk.Set(clk.Now().Add(provisioning.StaleClaimAge + time.Minute))
			if n, err := s.RecoverStaleClaims(ctx); err != nil || n != 0 {
				t.Fatalf("second recovery pass: %d %v", n, err)
			}
		})
	}
}

// Top-ups take an Idempotency-Key: concurrent and repeated requests with
// the same key and body credit once and answer the same entry; the same
// key with another body is refused.
func TestIdempotentTopUp(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "topup", 0)
	var wg sync.WaitGroup
	ids := make([]string, 10)
	errs := make([]error, 10)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := s.TopUpIdempotent(ctx, p.Workspace, 700, "invoice 7", "inv-7")
			ids[i], errs[i] = e.ID, err
		}()
	}
	wg.Wait()
	first, err := s.TopUpIdempotent(ctx, p.Workspace, 700, "invoice 7", "inv-7")
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	for i, err := range errs {
		// Twins answer the first top-up, or (on a very slow machine)
		// that it is still in progress.
		if err != nil && !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("top-up %d: %v", i, err)
		}
		if err == nil && ids[i] != first.ID {
			t.Fatalf("top-up %d answered entry %s, the first %s", i, ids[i], first.ID)
		}
	}
	if bal, entries := ledgerOK(t, s, p.Workspace); bal != 700 || len(entries) != 1 {
		t.Fatalf("balance %d in %d entries, want 700 in 1", bal, len(entries))
	}
	for _, tc := range []struct {
		amount int64
		reason string
	}{{701, "invoice 7"}, {700, "invoice 8"}} {
		if _, err := s.TopUpIdempotent(ctx, p.Workspace, tc.amount, tc.reason, "inv-7"); !errors.Is(err, provisioning.ErrConflict) {
			t.Fatalf("same key, other body %+v: %v, want conflict", tc, err)
		}
	}
	// Another key is another top-up; no key is never deduplicated.
	if _, err := s.TopUpIdempotent(ctx, p.Workspace, 700, "invoice 7", "inv-7b"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := s.TopUp(ctx, p.Workspace, 1, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if bal, _ := ledgerOK(t, s, p.Workspace); bal != 1402 {
		t.Fatalf("balance %d, want 1402", bal)
	}
	if _, err := s.TopUpIdempotent(ctx, p.Workspace, 1, "x", strings.Repeat("k", 256)); !errors.Is(err, provisioning.ErrInvalid) {
		t.Fatalf("256-character key: %v", err)
	}
}

// A release interrupted after it marked the number, or after the carrier
// released it, is never left active: the number refuses changes, and
// recovery finishes the release at the carrier and in callgate.
func TestReleaseResumedAfterCrash(t *testing.T) {
	for _, step := range []string{"release:marked", "release:carrier"} {
		t.Run(step, func(t *testing.T) {
			inv := twiliofake.GenerateInventory("415", twiliofake.TypeLocal, 1)
			s, fk, clk := newTwilioService(t, inv)
			ctx := context.Background()
			p := newWorkspace(t, s, "rel", 1000)
			testAgent(t, s, p, "a1")
			e164 := inv[0].PhoneNumber
			if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: e164, Carrier: "twilio", IntegrationID: "tw"}, ""); err != nil {
				t.Fatal(err)
			}
			provisioning.CrashAtForTest(s, step)
			if err := s.Release(ctx, p, e164); err == nil {
				t.Fatal("the saga did not stop at the crash")
			}
			provisioning.CrashAtForTest(s, "")
			n, err := s.GetNumber(ctx, p, e164)
			if err != nil || n.Status != provisioning.StatusReleasing {
				t.Fatalf("after the crash: %+v %v, want status releasing", n, err)
			}
			agent := "a1"
			if _, err := s.UpdateNumber(ctx, p, e164, provisioning.NumberPatch{AgentID: &agent}); !errors.Is(err, provisioning.ErrConflict) {
				t.Fatalf("assign while releasing: %v, want conflict", err)
			}
			clk.Set(clk.Now().Add(provisioning.StaleClaimAge + time.Minute))
			if n, err := s.RecoverStaleClaims(ctx); err != nil || n != 1 {
				t.Fatalf("recovery: %d %v", n, err)
			}
			if _, err := s.GetNumber(ctx, p, e164); !errors.Is(err, provisioning.ErrNotFound) {
				t.Fatalf("number still in callgate after recovery: %v", err)
			}
			if _, ok := fk.OwnedNumber(e164); ok {
				t.Fatal("number still held at the carrier after recovery")
			}
		})
	}
}

// An agent deletion interrupted after it marked the agent is finished by
// recovery (deleted when no number is assigned, unmarked otherwise);
// meanwhile assignments to it are refused.
func TestAgentDeleteResumedAfterCrash(t *testing.T) {
	s, clk := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "agcrash", 1000)
	nums := search(t, s, p, "228", 2)
	for _, n := range nums {
		if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: n.PhoneNumber, Carrier: "sandbox"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	testAgent(t, s, p, "idle")
	testAgent(t, s, p, "busy")
	busy := "busy"
	if _, err := s.UpdateNumber(ctx, p, nums[1].PhoneNumber, provisioning.NumberPatch{AgentID: &busy}); err != nil {
		t.Fatal(err)
	}
	provisioning.CrashAtForTest(s, "agent:marked")
	for _, id := range []string{"idle", "busy"} {
		if err := s.DeleteAgent(ctx, p, id); err == nil {
			t.Fatal("the saga did not stop at the crash")
		}
	}
	provisioning.CrashAtForTest(s, "")
	idle := "idle"
	if _, err := s.UpdateNumber(ctx, p, nums[0].PhoneNumber, provisioning.NumberPatch{AgentID: &idle}); !errors.Is(err, provisioning.ErrConflict) {
		t.Fatalf("assign to an agent being deleted: %v, want conflict", err)
	}
	clk.Set(clk.Now().Add(provisioning.StaleClaimAge + time.Minute))
	if n, err := s.RecoverStaleClaims(ctx); err != nil || n != 2 {
		t.Fatalf("recovery: %d %v", n, err)
	}
	if _, err := s.GetAgent(ctx, p, "idle"); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("idle agent after recovery: %v, want deleted", err)
	}
	a, err := s.GetAgent(ctx, p, "busy")
	if err != nil || a.DeletingAt != nil {
		t.Fatalf("busy agent after recovery: %+v %v, want kept and unmarked", a, err)
	}
	if _, err := s.UpdateNumber(ctx, p, nums[0].PhoneNumber, provisioning.NumberPatch{AgentID: &busy}); err != nil {
		t.Fatalf("assign to the kept agent: %v", err)
	}
}

// A release the carrier refuses leaves the number as it was (active,
// changeable); one that fails in transit (the carrier may have done it)
// leaves it releasing, and a retried release finishes it.
func TestReleaseCarrierFailure(t *testing.T) {
	inv := twiliofake.GenerateInventory("415", twiliofake.TypeLocal, 1)
	s, fk, _ := newTwilioService(t, inv)
	ctx := context.Background()
	p := newWorkspace(t, s, "relfail", 1000)
	testAgent(t, s, p, "a1")
	e164 := inv[0].PhoneNumber
	if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: e164, Carrier: "twilio", IntegrationID: "tw"}, ""); err != nil {
		t.Fatal(err)
	}
	fk.FailNext(twiliofake.Failure{Method: "DELETE", Status: 403, Code: 20003, Message: "Permission denied"})
	if err := s.Release(ctx, p, e164); !errors.Is(err, carrier.ErrCredentialsRejected) {
		t.Fatalf("refused release: %v", err)
	}
	agent := "a1"
	if n, err := s.UpdateNumber(ctx, p, e164, provisioning.NumberPatch{AgentID: &agent}); err != nil || n.Status != "active" {
		t.Fatalf("after a refused release: %+v %v, want active and changeable", n, err)
	}
	fk.FailNext(twiliofake.Failure{Method: "DELETE", Status: 503})
	if err := s.Release(ctx, p, e164); !errors.Is(err, carrier.ErrUnavailable) {
		t.Fatalf("release in a carrier outage: %v", err)
	}
	if n, err := s.GetNumber(ctx, p, e164); err != nil || n.Status != provisioning.StatusReleasing {
		t.Fatalf("after a failed release: %+v %v, want releasing", n, err)
	}
	if err := s.Release(ctx, p, e164); err != nil {
		t.Fatalf("retried release: %v", err)
	}
	if _, err := s.GetNumber(ctx, p, e164); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("after the retried release: %v", err)
	}
	if _, ok := fk.OwnedNumber(e164); ok {
		t.Fatal("carrier still holds the number")
	}
}

// Importing a number for an agent that is being deleted: as with
// assignments, no imported number is left assigned to a deleted agent.
func TestDeleteAgentRacingImport(t *testing.T) {
	const rounds = 30
	owned := twiliofake.GenerateInventory("628", twiliofake.TypeLocal, rounds)
	fk := twiliofake.MustNew(t, twiliofake.Options{Owned: owned})
	box, err := secrets.NewBox(secrets.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	s := provisioning.New(storetest.OpenEmbedded(t), provisioning.Options{Box: box, Carriers: provisioning.CarrierSettings{TwilioAPIBase: fk.URL()}})
	ctx := context.Background()
	p := newWorkspace(t, s, "imprace", 0)
	it, err := s.CreateIntegration(ctx, p, provisioning.IntegrationInput{Name: "tw", Carrier: "twilio", Credentials: map[string]string{"account_sid": fk.AccountSID(), "auth_token": fk.AuthToken()}})
	if err != nil {
		t.Fatal(err)
	}
	leaked := 0
	for r := 0; r < rounds; r++ {
		id := fmt.Sprintf("bot%d", r)
		testAgent(t, s, p, id)
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			if err := s.DeleteAgent(ctx, p, id); err != nil && !errors.Is(err, provisioning.ErrConflict) {
				t.Errorf("round %d: delete agent: %v", r, err)
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			_, err := s.Import(ctx, p, it.ID, provisioning.ImportRequest{PhoneNumbers: []string{owned[r].PhoneNumber}, AgentID: id})
			if err != nil && !errors.Is(err, provisioning.ErrInvalid) {
				t.Errorf("round %d: import: %v", r, err)
			}
		}()
		close(start)
		wg.Wait()
		if _, err := s.GetAgent(ctx, p, id); !errors.Is(err, provisioning.ErrNotFound) {
			continue // kept: nothing to check
		}
		if n, err := s.GetNumber(ctx, p, owned[r].PhoneNumber); err == nil && n.AgentID == id {
			leaked++
			t.Errorf("round %d: imported %s is assigned to deleted agent %s", r, n.PhoneNumber, id)
		}
	}
	if leaked > 0 {
		t.Fatalf("%d imported numbers left assigned to deleted agents in %d rounds", leaked, rounds)
	}
}
