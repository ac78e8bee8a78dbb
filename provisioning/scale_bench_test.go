package provisioning

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

// scaleN is how many numbers of other workspaces the scale benchmarks
// store (CALLGATE_BENCH_NUMBERS overrides: a quick run can use fewer).
func scaleN(b *testing.B) int {
	if v := os.Getenv("CALLGATE_BENCH_NUMBERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1000 {
			b.Fatalf("CALLGATE_BENCH_NUMBERS=%q: want a count of at least 1000", v)
		}
		return n
	}
	return 1_000_000
}

// fillNumbers stores n active numbers (+1228... counting up from
// 2000000) directly in the numbers bucket, with asynchronous publishes
// (a KV put is a publish on $KV.<bucket>.<key>), spread over workspaces
// of 100 numbers each; every n/20th number belongs to workspace "target"
// instead, so its 20 numbers lie scattered through the stream as
// purchases over time would be. It returns after every publish is acked.
func fillNumbers(b *testing.B, st *store.Store, n int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	every := n / 20
	var last jetstream.PubAckFuture
	for i := 0; i < n; i++ {
		e164 := "+1" + strconv.Itoa(2282000000+i)
		ws := "ws" + strconv.Itoa(i/100)
		if i%every == every/2 {
			ws = "target"
		}
		rec := numberRecord{Number: Number{PhoneNumber: e164, Country: "US", Type: "local", Carrier: "sandbox", Origin: "purchased",
			Status: "active", MonthlyCost: 100, PurchasedAt: start}, WorkspaceID: ws, ClaimedAt: start}
		v, _ := json.Marshal(rec)
		f, err := st.JS.PublishAsync("$KV."+store.BucketNumbers+"."+numberKey(e164), v)
		if err != nil {
			b.Fatal(err)
		}
		last = f
		if i%2000 == 1999 {
			waitAcks(ctx, b, st, last)
		}
	}
	waitAcks(ctx, b, st, last)
	b.Logf("stored %d numbers in %s", n, time.Since(start).Round(time.Millisecond))
}

func waitAcks(ctx context.Context, b *testing.B, st *store.Store, last jetstream.PubAckFuture) {
	b.Helper()
	select {
	case <-st.JS.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("publishes not acked")
	}
	select {
	case err := <-last.Err():
		b.Fatal(err)
	default:
	}
}

// BenchmarkListNumbersScale lists the 20 numbers of one workspace while
// the bucket holds scaleN (1,000,000) numbers of other workspaces: the
// API's GET /v1/numbers.
func BenchmarkListNumbersScale(b *testing.B) {
	st := storetest.OpenEmbedded(b)
	s := New(st, Options{Sandbox: true, Log: slog.New(slog.DiscardHandler)})
	n := scaleN(b)
	fillNumbers(b, st, n)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := s.ListNumbers(ctx, Principal{Workspace: "target"})
		if err != nil || len(out) != 20 {
			b.Fatalf("%d numbers, %v", len(out), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/list")
	b.ReportMetric(float64(n), "stored")
	_ = fmt.Sprint
}
