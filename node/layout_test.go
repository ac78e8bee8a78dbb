package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/store/storetest"
)

// TestStartMigratesAnOldStoreLayout: a data directory whose store has the
// layout of an older version (records only, no per-workspace index) comes
// up with GET /v1/numbers and /v1/forwarding listing every record.
func TestStartMigratesAnOldStoreLayout(t *testing.T) {
	dir := t.TempDir()
	var key string
	t.Run("first start", func(t *testing.T) {
		key = nodetest.Start(t, nodetest.DataDir(dir)).APIKey()
	})
	// Rewind the store to the old layout and add records as it held them.
	ctx := context.Background()
	st := storetest.OpenEmbeddedAt(t, dir)
	if err := st.Index.Purge(ctx, "layout.version"); err != nil {
		t.Fatal(err)
	}
	keys, err := st.Index.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		if err := st.Index.Purge(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).Format(time.RFC3339)
	var want []string
	for i := 0; i < 5; i++ {
		e164 := fmt.Sprintf("+1228300%04d", i)
		want = append(want, e164)
		rec := fmt.Sprintf(`{"phone_number":%q,"country":"US","region":"MS","type":"local","features":{"voice":true},"monthly_cost":100,"carrier":"sandbox","origin":"purchased","status":"active","purchased_at":%q,"workspace":"default","claimed_at":%q}`, e164, now, now)
		if _, err := st.Numbers.Create(ctx, e164[1:], []byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
	fwd := fmt.Sprintf(`{"business_number":"+12025550100","gateway_number":%q,"workspace":"default","created_at":%q}`, want[0], now)
	if _, err := st.Forwarding.Create(ctx, "12025550100", []byte(fwd)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Index.Get(ctx, "layout.version"); err != jetstream.ErrKeyNotFound {
		t.Fatalf("layout version still recorded: %v", err)
	}
	st.Close()

	n := nodetest.Start(t, nodetest.DataDir(dir))
	get := func(path string, v any) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+n.HTTPAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var nums struct {
		Numbers []struct {
			PhoneNumber string `json:"phone_number"`
		} `json:"numbers"`
	}
	get("/v1/numbers", &nums)
	if len(nums.Numbers) != len(want) {
		t.Fatalf("listed %+v, want %v", nums.Numbers, want)
	}
	for i, x := range nums.Numbers {
		if x.PhoneNumber != want[i] {
			t.Fatalf("listed %+v, want %v", nums.Numbers, want)
		}
	}
	var fw struct {
		Forwarding []struct {
			BusinessNumber string `json:"business_number"`
		} `json:"forwarding"`
	}
	get("/v1/forwarding", &fw)
	if len(fw.Forwarding) != 1 || fw.Forwarding[0].BusinessNumber != "+12025550100" {
		t.Fatalf("forwarding %+v", fw)
	}
	if e, err := n.Service().Store().Index.Get(ctx, "layout.version"); err != nil || string(e.Value()) != "2" {
		t.Fatalf("layout version after start: %v", err)
	}
}
