package provisioning

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/callgate/callgate/store/storetest"
)

// BenchmarkListNumbers10k lists one workspace's 1,000 numbers out of
// 10,000 in the bucket (ten workspaces): the API's GET /v1/numbers reads
// the workspace's index and its 1,000 records.
func BenchmarkListNumbers10k(b *testing.B) {
	st := storetest.OpenEmbedded(b)
	s := New(st, Options{Sandbox: true, Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	for i := 0; i < 10_000; i++ {
		e164 := fmt.Sprintf("+1228%07d", 2000000+i)
		rec := numberRecord{Number: Number{PhoneNumber: e164, Carrier: "sandbox", Origin: "purchased", Status: "active", MonthlyCost: 100},
			WorkspaceID: fmt.Sprintf("ws%d", i%10)}
		v, _ := json.Marshal(rec)
		if _, err := s.indexAdd(ctx, indexNumbers, rec.WorkspaceID, numberKey(e164)); err != nil {
			b.Fatal(err)
		}
		if _, err := st.Numbers.Put(ctx, numberKey(e164), v); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := s.ListNumbers(ctx, Principal{Workspace: "ws3"})
		if err != nil || len(out) != 1000 {
			b.Fatalf("%d numbers, %v", len(out), err)
		}
	}
}
