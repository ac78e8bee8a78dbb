package callhistory_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/store"
)

// BenchmarkListAmongOthers lists 50 calls of one workspace stored among
// 1,000,000 calls of 1,000 other workspaces (one ended event each; 1,001 streams) on the
// embedded server. Storing them takes about a minute: run it once, e.g.
//
//	go test ./callhistory -run '^$' -bench ListAmongOthers -benchtime=3x
func BenchmarkListAmongOthers(b *testing.B) {
	const others, mine = 1_000_000, 50
	// JetStream reserves each workspace's max_bytes: 1,001 × 8 MiB.
	st, err := store.Open(context.Background(), store.Config{History: store.HistoryConfig{MaxBytes: 8 << 20}}, b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	var js jetstream.JetStream
	js, err = jetstream.New(st.NC, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	ev := calls.Event{Kind: calls.Ended, Number: "+12025550100", Agent: "agent-1", Region: "eu-west", Carrier: "twilio",
		Origin: "purchased", Source: "sip", Status: 200, Reason: "bye_caller", SetupMillis: 812.5, Duration: 93 * time.Second,
		From: "+447700900123", To: "+12025550100", Direction: calls.Inbound}
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		if err := st.EnsureHistory(ctx, fmt.Sprintf("ws-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.EnsureHistory(ctx, "mine"); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now().Add(-24 * time.Hour)
	every := others / mine
	publish := func(ws, id string, at time.Time) {
		e := ev
		e.Workspace, e.CallID, e.Time = ws, id, at
		data, _ := json.Marshal(e)
		if _, err := js.PublishAsync(callhistory.Subject(ws, id), data, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	for i := 0; i < others; i++ {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		publish(fmt.Sprintf("ws-%d", i%1000), fmt.Sprintf("%d@carrier.example", i), at)
		if i%every == every/2 {
			publish("mine", fmt.Sprintf("mine-%d@carrier.example", i), at)
		}
		if i%50_000 == 0 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("publish acknowledgements did not arrive within a minute")
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish acknowledgements did not arrive within a minute")
	}
	b.Logf("stored %d events in %v", others+mine, time.Since(start).Round(time.Second))
	r := callhistory.NewReader(st, nil)
	b.Run("list50", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			p, err := r.List(context.Background(), callhistory.Query{Workspace: "mine", Limit: 50})
			if err != nil {
				b.Fatal(err)
			}
			if len(p.Calls) != mine || p.EventsRead != mine {
				b.Fatalf("listed %d calls reading %d events", len(p.Calls), p.EventsRead)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/list")
	})
}
