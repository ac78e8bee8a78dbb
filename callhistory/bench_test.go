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
	"github.com/callgate/callgate/store/storetest"
)

// BenchmarkListAmongOthers lists 50 calls of one workspace stored among
// 1,000,000 calls of 20 other workspaces (one ended event each) on the
// embedded server: the listing reads the workspace's own stream only.
// Storing the million takes minutes on a loaded machine: run it once, e.g.
//
//	go test ./callhistory -run '^$' -bench ListAmongOthers -benchtime=3x
func BenchmarkListAmongOthers(b *testing.B) {
	const others, mine, nws = 1_000_000, 50, 20
	st := storetest.OpenEmbedded(b)
	js, err := jetstream.New(st.NC, jetstream.WithPublishAsyncMaxPending(512))
	if err != nil {
		b.Fatal(err)
	}
	ev := calls.Event{Kind: calls.Ended, Number: "+12025550100", Agent: "agent-1", Region: "eu-west", Carrier: "twilio",
		Origin: "purchased", Source: "sip", Status: 200, Reason: "bye_caller", SetupMillis: 812.5, Duration: 93 * time.Second,
		From: "+447700900123", To: "+12025550100", Direction: calls.Inbound}
	ctx := context.Background()
	for i := 0; i < nws; i++ {
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
		for try := 0; ; try++ {
			_, err := js.PublishAsync(callhistory.Subject(ws, id), data, jetstream.WithStallWait(time.Minute))
			if err == nil {
				return
			}
			if try == 100 {
				b.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // a reconnect of the loaded in-process connection
		}
	}
	start := time.Now()
	for i := 0; i < others; i++ {
		at := t0.Add(time.Duration(i) * 50 * time.Millisecond)
		publish(fmt.Sprintf("ws-%d", i%nws), fmt.Sprintf("%d@carrier.example", i), at)
		if i%every == every/2 {
			publish("mine", fmt.Sprintf("mine-%d@carrier.example", i), at)
		}
		if i%10_000 == 0 {
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
