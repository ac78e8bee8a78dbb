package provisioning

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store"
)

// scaleN is how many numbers of other workspaces the scale benchmarks
// store (CALLGATE_BENCH_NUMBERS overrides: a quick run can use fewer).
func scaleN(b testing.TB) int {
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
// 2000000) directly in the numbers bucket with their index entries, as
// asynchronous publishes (a KV put is a publish on $KV.<bucket>.<key>),
// spread over workspaces of 100 numbers each; every n/20th number
// belongs to workspace "target" instead, so that its 20 numbers lie
// scattered through the stream as purchases over time would. It returns
// once every publish is acked.
func fillNumbers(b testing.TB, st *store.Store, n int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	every := n / 20
	stamp := strconv.FormatInt(start.UnixNano(), 36) + ".00000000"
	docs := map[string]indexDoc{}
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
		shard := indexShard(indexNumbers, ws, numberKey(e164))
		if docs[shard] == nil {
			docs[shard] = indexDoc{}
		}
		docs[shard][numberKey(e164)] = stamp
		f, err := st.JS.PublishAsync("$KV."+store.BucketNumbers+"."+numberKey(e164), v)
		if err != nil {
			b.Fatal(err)
		}
		last = f
		if i%1000 == 999 {
			waitAcks(ctx, b, st, last)
		}
	}
	waitAcks(ctx, b, st, last)
	i := 0
	for shard, d := range docs {
		v, _ := json.Marshal(d)
		f, err := st.JS.PublishAsync("$KV."+store.BucketIndex+"."+shard, v)
		if err != nil {
			b.Fatal(err)
		}
		last = f
		if i++; i%1000 == 0 {
			waitAcks(ctx, b, st, last)
		}
	}
	waitAcks(ctx, b, st, last)
	b.Logf("stored %d numbers and their index entries in %s", n, time.Since(start).Round(time.Millisecond))
}

// scaleFixture is one store holding scaleN numbers, filled once per test
// binary and shared by the scale benchmarks (filling takes a minute);
// TestMain closes it and removes its directory (closeScaleFixture).
var scaleFixture struct {
	once sync.Once
	st   *store.Store
	dir  string
	n    int
}

func scaleStore(b *testing.B) (*store.Store, int) {
	b.Helper()
	scaleFixture.once.Do(func() {
		dir, err := os.MkdirTemp("", "callgate-scale-")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := store.Open(ctx, store.Config{}, dir, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		scaleFixture.st, scaleFixture.dir, scaleFixture.n = st, dir, scaleN(b)
		fillNumbers(b, st, scaleFixture.n)
	})
	if scaleFixture.st == nil {
		b.Fatal("scale fixture failed")
	}
	return scaleFixture.st, scaleFixture.n
}

// closeScaleFixture stops the shared store and removes its directory.
func closeScaleFixture() {
	if scaleFixture.st != nil {
		scaleFixture.st.Close()
		os.RemoveAll(scaleFixture.dir)
	}
}

func waitAcks(ctx context.Context, b testing.TB, st *store.Store, last jetstream.PubAckFuture) {
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
// the store holds scaleN (1,000,000) numbers of other workspaces: what
// GET /v1/numbers reads (BenchmarkListNumbersScaleAPI is the same over
// HTTP). The target is under 5 ms.
func BenchmarkListNumbersScale(b *testing.B) {
	st, n := scaleStore(b)
	s := New(st, Options{Sandbox: true, Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	// The first listing after the fill loads the stream blocks holding
	// the workspace's records (nats-server keeps loaded blocks cached a
	// few seconds): reported apart as the cold figure.
	first := time.Now()
	if out, err := s.ListNumbers(ctx, Principal{Workspace: "target"}); err != nil || len(out) != 20 {
		b.Fatalf("%d numbers, %v", len(out), err)
	}
	cold := time.Since(first)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := s.ListNumbers(ctx, Principal{Workspace: "target"})
		if err != nil || len(out) != 20 {
			b.Fatalf("%d numbers, %v", len(out), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/list")
	b.ReportMetric(float64(n), "stored")
	b.ReportMetric(float64(cold.Microseconds())/1000, "ms/cold-list")
}

// BenchmarkSyncerSnapshotScale loads a node's routing snapshot from the
// scaleN-number store, as a node does on start: every number once (the
// index is not routed), and how long the first snapshot took. The heap a
// 1,000,000-number snapshot holds is measured apart from NATS by
// routing's TestSnapshotMemory1M (here the embedded server's block caches
// share the heap).
func BenchmarkSyncerSnapshotScale(b *testing.B) {
	st, n := scaleStore(b)
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		table := &routing.Table{}
		y := &Syncer{Table: table}
		start := time.Now()
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = y.Run(ctx, st.Numbers, st.Agents, st.Forwarding, st.Integrations)
		}()
		<-y.Ready()
		took := time.Since(start)
		if got := table.Load().Len(); got != n {
			b.Fatalf("snapshot holds %d numbers, want %d (each once)", got, n)
		}
		cancel()
		<-done
		b.ReportMetric(took.Seconds(), "s/load")
	}
}
