package provisioning

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/callgate/callgate/store"
)

// ClaimAndChargeForTest leaves a number claimed (pending) and charged, as
// a node that died mid-purchase would.
func ClaimAndChargeForTest(t *testing.T, s *Service, p Principal, e164 string, cost int64) {
	t.Helper()
	ctx := context.Background()
	rec := numberRecord{Number: Number{PhoneNumber: e164, Carrier: "sandbox", Origin: "purchased", Status: StatusPending, MonthlyCost: cost}, WorkspaceID: p.Workspace, ClaimedAt: s.now().UTC()}
	b, _ := json.Marshal(rec)
	if _, err := s.indexAdd(ctx, indexNumbers, p.Workspace, numberKey(e164)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.st.Numbers.Create(ctx, numberKey(e164), b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.post(ctx, p.Workspace, LedgerEntry{Kind: KindPurchase, Amount: -cost, Number: e164, Reason: "test"}, ""); err != nil {
		t.Fatal(err)
	}
}

// DrawUsernamesForTest makes s draw SIP credential usernames from f.
func DrawUsernamesForTest(s *Service, f func() string) { s.drawUsername = f }

// CrashAtForTest makes the service's sagas stop at step (as a node dying
// there would: nothing after it runs, nothing is undone); "" turns it off.
func CrashAtForTest(s *Service, step string) {
	if step == "" {
		s.crash = nil
		return
	}
	s.crash = func(at string) bool { return at == step }
}

// ApplyWorkspacePatchForTest applies a PATCH /v1/workspace body to a
// workspace with the given current settings, as UpdateWorkspaceSettings
// does before writing.
func ApplyWorkspacePatchForTest(cur WorkspaceSettings, p WorkspacePatch) (WorkspaceSettings, error) {
	rec := workspaceRecord{Workspace: Workspace{ID: cur.ID, Name: cur.Name}, RoutingHook: cur.RoutingHook, Limits: cur.Limits, Outbound: cur.Outbound}
	v := &ValidationError{}
	p.apply(v, &rec)
	if err := v.Err(); err != nil {
		return WorkspaceSettings{}, err
	}
	return rec.settings(), nil
}

// ScaleStoreForBench is the store of the scale benchmarks: scaleN
// numbers of other workspaces and 20 of workspace "target" (not created
// as a workspace), filled once per test binary.
func ScaleStoreForBench(b *testing.B) (*store.Store, int) { return scaleStore(b) }
