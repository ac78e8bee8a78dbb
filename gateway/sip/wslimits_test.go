package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/limits"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store/storetest"
)

// limitedTable is buildTable's routing with workspace w's limits set.
func limitedTable(ep routing.Endpoint, l routing.Limits) *routing.Table {
	t := buildTable(ep)
	t.Store(t.Load().WithWorkspaces([]routing.Workspace{{ID: "w", Limits: l}}))
	return t
}

// limitedEdge starts an edge whose workspace limits are counted by a
// real counter on an embedded NATS server.
func limitedEdge(t *testing.T, table *routing.Table, now func() time.Time) (*testEdge, *limits.Counter) {
	t.Helper()
	srv := storetest.RunServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	lim, err := limits.New(nc, limits.Options{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lim.Close)
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Region = "test"
	cfg.Probe.Disabled = true
	return startEdge(t, cfg, Deps{Table: table, Limits: lim}), lim
}

// header value of a raw message ("" when absent).
func rawHeader(m, name string) string {
	head, _, _ := strings.Cut(m, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n")[1:] {
		n, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestWorkspaceConcurrentLimitRefusesWith503(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e, lim := limitedEdge(t, limitedTable(agent.endpoint("test"), routing.Limits{MaxConcurrentCalls: 1}), nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e) // the one call the workspace may have

	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "over-limit-1", ""))
	m := raw.readFinal(10 * time.Second)
	if statusLine(m) != "SIP/2.0 503 Workspace concurrent call limit" {
		t.Fatalf("second call: %q, want 503 Workspace concurrent call limit", statusLine(m))
	}
	if ra := rawHeader(m, "Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("503 without a Retry-After: %q", m)
	}
	ev := e.events.waitEvent(t, calls.Ended, "over-limit-1")
	if ev.Reason != "limit_concurrent" || ev.Status != 503 || ev.Workspace != "w" {
		t.Fatalf("ended event: reason %q status %d workspace %q", ev.Reason, ev.Status, ev.Workspace)
	}
	if got := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("limit_concurrent")); got != 1 {
		t.Fatalf("callgate_sip_rejected_total{reason=limit_concurrent} = %v, want 1", got)
	}
	if n, _ := lim.Totals("w"); n != 1 {
		t.Fatalf("counted %d calls in progress, want 1 (a refused call is not counted)", n)
	}

	// the call ends: its place is free again
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	checkFor(t, 10*time.Second, func() error {
		if n, _ := lim.Totals("w"); n != 0 {
			return errorf("%d calls still counted after the BYE", n)
		}
		return nil
	})
	ds2 := carrier.answered(ctx, t, e)
	_ = ds2.Bye(ctx)
}

func TestWorkspaceRateLimitRefusesWith503(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	frozen := time.Now()
	e, _ := limitedEdge(t, limitedTable(agent.endpoint("test"), routing.Limits{MaxCallsPerSecond: 1}),
		func() time.Time { return frozen }) // the one-second window never moves
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e)
	_ = ds.Bye(ctx)

	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "over-rate-1", ""))
	m := raw.readFinal(10 * time.Second)
	if statusLine(m) != "SIP/2.0 503 Workspace call rate limit" {
		t.Fatalf("second call in the second: %q", statusLine(m))
	}
	if rawHeader(m, "Retry-After") != "1" {
		t.Fatalf("Retry-After %q, want 1", rawHeader(m, "Retry-After"))
	}
	if ev := e.events.waitEvent(t, calls.Ended, "over-rate-1"); ev.Reason != "limit_rate" {
		t.Fatalf("ended event reason %q, want limit_rate", ev.Reason)
	}
}

func TestLimitRefusalsArePreCreated(t *testing.T) {
	for _, rule := range limits.Rules {
		rf := limitRefusal(rule, 0)
		if rf.status != 503 || !strings.HasPrefix(rf.phrase, "Workspace ") {
			t.Errorf("%s: %d %q", rule, rf.status, rf.phrase)
		}
		if !strings.Contains(strings.Join(rejectReasons, " "), rf.reason) {
			t.Errorf("%s: label %q not pre-created", rule, rf.reason)
		}
		if rawRA := rf.headers[0].Value(); rawRA != "1" {
			t.Errorf("%s: Retry-After %q for a zero delay, want 1", rule, rawRA)
		}
	}
}
