package provisioning_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/store/storetest"
)

// BenchmarkPurchase buys distinct sandbox numbers through the full saga
// (claim, ledger charge, carrier, commit) on an embedded JetStream.
func BenchmarkPurchase(b *testing.B) {
	st := storetest.OpenEmbedded(b)
	s := provisioning.New(st, provisioning.Options{Sandbox: true, Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	if _, _, err := s.CreateWorkspace(ctx, "bench", "bench", 1e11); err != nil {
		b.Fatal(err)
	}
	p := provisioning.Principal{Workspace: "bench"}
	var numbers []string
	q := provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: carrier.SearchQuery{Country: "US", AreaCode: "212", Limit: 100}}
	for len(numbers) < b.N {
		page, err := s.Search(ctx, p, q)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range page.Numbers {
			numbers = append(numbers, n.PhoneNumber)
		}
		if page.NextPageToken == "" {
			b.Fatal("inventory exhausted")
		}
		q.PageToken = page.NextPageToken
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: numbers[i], Carrier: "sandbox"}, ""); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "purchases/s")
}

// BenchmarkPurchaseParallel buys distinct numbers from many goroutines
// into one workspace (all charges contend on one ledger subject).
func BenchmarkPurchaseParallel(b *testing.B) {
	st := storetest.OpenEmbedded(b)
	s := provisioning.New(st, provisioning.Options{Sandbox: true, Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	if _, _, err := s.CreateWorkspace(ctx, "bench", "bench", 1e11); err != nil {
		b.Fatal(err)
	}
	p := provisioning.Principal{Workspace: "bench"}
	var numbers []string
	q := provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: carrier.SearchQuery{Country: "US", AreaCode: "646", Limit: 100}}
	for len(numbers) < b.N+64 {
		page, err := s.Search(ctx, p, q)
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range page.Numbers {
			numbers = append(numbers, n.PhoneNumber)
		}
		q.PageToken = page.NextPageToken
	}
	ch := make(chan string, len(numbers))
	for _, n := range numbers {
		ch <- n
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: <-ch, Carrier: "sandbox"}, ""); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "purchases/s")
}

// BenchmarkSearch is one marketplace page of 20 numbers (ownership
// checked against the KV for each candidate).
func BenchmarkSearch(b *testing.B) {
	st := storetest.OpenEmbedded(b)
	s := provisioning.New(st, provisioning.Options{Sandbox: true, Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	p := provisioning.Principal{Workspace: "bench"}
	q := provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: carrier.SearchQuery{Country: "US", AreaCode: "228", Limit: 20}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Search(ctx, p, q); err != nil {
			b.Fatal(err)
		}
	}
}
