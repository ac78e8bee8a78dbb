package provisioning_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/api"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

var apiKey struct {
	once sync.Once
	key  string
	err  error
}

// BenchmarkListNumbersScaleAPI is GET /v1/numbers over HTTP (loopback)
// for a workspace of 20 numbers while the store holds 1,000,000 numbers
// of other workspaces (the fixture of BenchmarkListNumbersScale).
func BenchmarkListNumbersScaleAPI(b *testing.B) {
	st, _ := provisioning.ScaleStoreForBench(b)
	svc := provisioning.New(st, provisioning.Options{Sandbox: true, Log: slog.New(slog.DiscardHandler)})
	apiKey.once.Do(func() {
		_, apiKey.key, apiKey.err = svc.CreateWorkspace(context.Background(), "target", "target", 0)
	})
	if apiKey.err != nil {
		b.Fatal(apiKey.err)
	}
	srv := httptest.NewServer(api.New(api.Options{Service: svc, Log: slog.New(slog.DiscardHandler)}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/v1/numbers", nil)
	req.Header.Set("Authorization", "Bearer "+apiKey.key)
	list := func() {
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var body struct {
			Numbers []provisioning.Number `json:"numbers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || len(body.Numbers) != 20 {
			b.Fatalf("status %d, %d numbers, %v", resp.StatusCode, len(body.Numbers), err)
		}
	}
	// The first request loads the store blocks the listing reads (see
	// BenchmarkListNumbersScale): reported apart.
	first := time.Now()
	list()
	cold := time.Since(first)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		list()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/1000, "ms/list")
	b.ReportMetric(float64(cold.Microseconds())/1000, "ms/cold-list")
}

// BenchmarkPurchaseCluster3 buys distinct sandbox numbers through the
// full saga from three gateway nodes (one Service each, each on its own
// nats-server of a 3-node JetStream cluster on loopback, replicas 3),
// in parallel, into three workspaces. Any error fails it; afterwards each
// workspace's balance equals its ledger's sum and the initial credits
// less exactly the purchases made.
func BenchmarkPurchaseCluster3(b *testing.B) {
	srvs := storetest.RunJetStreamCluster(b, 3)
	ctx := context.Background()
	var svcs []*provisioning.Service
	for _, srv := range srvs {
		octx, cancel := context.WithTimeout(ctx, time.Minute)
		st, err := store.Open(octx, store.Config{URL: srv.ClientURL(), Replicas: 3}, b.TempDir(), slog.New(slog.DiscardHandler))
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(st.Close)
		svcs = append(svcs, provisioning.New(st, provisioning.Options{Sandbox: true, Log: slog.New(slog.DiscardHandler)}))
	}
	benchPurchases(b, svcs)
}

// BenchmarkPurchaseOneNode is BenchmarkPurchaseCluster3 on one node with
// its embedded server: the same parallel load and checks.
func BenchmarkPurchaseOneNode(b *testing.B) {
	st := storetest.OpenEmbedded(b)
	benchPurchases(b, []*provisioning.Service{provisioning.New(st, provisioning.Options{Sandbox: true, Log: slog.New(slog.DiscardHandler)})})
}

const benchCredits = 1_000_000_000

func benchPurchases(b *testing.B, svcs []*provisioning.Service) {
	ctx := context.Background()
	wss := []string{"bench-a", "bench-b", "bench-c"}
	for _, ws := range wss {
		if _, _, err := svcs[0].CreateWorkspace(ctx, ws, ws, benchCredits); err != nil {
			b.Fatal(err)
		}
	}
	// Distinct numbers across area codes, found before the clock starts.
	var numbers []string
	for _, area := range []string{"212", "228", "305", "415", "646", "718"} {
		q := provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: carrier.SearchQuery{Country: "US", AreaCode: area, Limit: 100}}
		for len(numbers) < b.N+64 {
			page, err := svcs[0].Search(ctx, provisioning.Principal{Workspace: wss[0]}, q)
			if err != nil {
				b.Fatal(err)
			}
			for _, n := range page.Numbers {
				numbers = append(numbers, n.PhoneNumber)
			}
			if page.NextPageToken == "" {
				break
			}
			q.PageToken = page.NextPageToken
		}
	}
	if len(numbers) < b.N {
		b.Fatalf("only %d numbers for %d purchases", len(numbers), b.N)
	}
	ch := make(chan string, len(numbers))
	for _, n := range numbers {
		ch <- n
	}
	var worker, failed atomic.Int64
	bought := make([]atomic.Int64, len(wss))
	spent := make([]atomic.Int64, len(wss))
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(worker.Add(1))
		svc := svcs[w%len(svcs)]
		wi := w % len(wss)
		p := provisioning.Principal{Workspace: wss[wi]}
		for pb.Next() {
			n, err := svc.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: <-ch, Carrier: "sandbox"}, "")
			if err != nil {
				failed.Add(1)
				b.Error(err)
				return
			}
			bought[wi].Add(1)
			spent[wi].Add(n.MonthlyCost)
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "purchases/s")
	b.ReportMetric(float64(failed.Load()), "errors")
	for i, ws := range wss {
		// Read as a client would: a read the cluster answers with
		// "unavailable, retry" (seen once in a few runs right after the
		// load, on the code before the index too) is retried.
		var (
			entries []provisioning.LedgerEntry
			bal     int64
		)
		testwait.CheckFor(b, 30*time.Second, 100*time.Millisecond, func() error {
			var err error
			if entries, err = svcs[(i+1)%len(svcs)].Ledger(ctx, ws); err != nil {
				return err
			}
			bal, err = svcs[i%len(svcs)].Balance(ctx, ws)
			return err
		})
		var sum int64
		charges := int64(0)
		for _, e := range entries {
			sum += e.Amount
			if e.Kind == provisioning.KindPurchase {
				charges++
			}
		}
		if bal != sum || charges != bought[i].Load() || bal != benchCredits-spent[i].Load() {
			b.Fatalf("%s: balance %d, ledger sum %d, %d charges for %d purchases, %d spent: %v", ws, bal, sum, charges, bought[i].Load(), spent[i].Load(), errors.New("ledger not exact"))
		}
	}
}
