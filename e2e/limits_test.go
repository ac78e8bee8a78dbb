package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store/storetest"
)

// TestWorkspaceLimitsAcrossThreeNodes: three gateways share one NATS; a
// workspace may have 3 calls at once. One call through each node fills
// it (no node alone is near the cap), and then a 4th call is refused by
// every node with 503 naming the limit; when a call ends on one node,
// another node takes a new call.
func TestWorkspaceLimitsAcrossThreeNodes(t *testing.T) {
	srv := storetest.RunJetStreamServer(t)
	var nodes []*node.Node
	for i := 0; i < 3; i++ {
		cfg := testConfig(t)
		cfg.Region = "us-east"
		cfg.NATS.URL = srv.ClientURL()
		cfg.SecretKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
		n, _ := startNode(t, cfg)
		nodes = append(nodes, n)
	}
	c := apiClient{t: t, base: nodes[0].HTTPAddr(), key: nodes[0].APIKey()}
	agent, carrier := newUA(t), newUA(t)
	c.must(201, "POST", "/v1/agents", `{"id":"bot","name":"bot","endpoints":[{"region":"us-east","uri":"`+agent.uri()+`"}]}`)
	num, _ := buy(t, c, "228", "bot")
	routedWithin(t, time.Now(), 10*time.Second, num, "bot", nodes...)
	r, _ := nodes[0].Table().Load().Lookup(num)
	ws := r.Number.Workspace

	// The workspace's limit, set as users do (PATCH /v1/workspace on node
	// 1), reaches every node's routing table.
	c1 := apiClient{t: t, base: nodes[1].HTTPAddr(), key: nodes[0].APIKey()}
	if m := c1.must(200, "PATCH", "/v1/workspace", `{"limits":{"max_concurrent_calls":3}}`); fmt.Sprint(m["limits"]) != fmt.Sprint(map[string]any{"max_calls_per_second": 0.0, "max_concurrent_calls": 3.0}) {
		t.Fatalf("PATCH /v1/workspace answered limits %v", m["limits"])
	}
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for i, n := range nodes {
			w := n.Table().Load().Workspace(ws)
			if w == nil || w.Limits != (routing.Limits{MaxConcurrentCalls: 3}) {
				return fmt.Errorf("node %d: workspace %s settings %+v", i, ws, w)
			}
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var held []*sipgo.DialogClientSession
	for i, n := range nodes {
		ds, res, err := carrier.dial(ctx, n.SIP().UDPAddr(), num)
		if err != nil || ds == nil {
			t.Fatalf("call %d through node %d: %v %v", i+1, i, res, err)
		}
		held = append(held, ds)
	}
	seenEverywhere := func(want int64) {
		t.Helper()
		testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			for i, n := range nodes {
				if got, _ := n.Limiter().Totals(ws); got != want {
					return fmt.Errorf("node %d counts %d calls of the workspace, want %d", i, got, want)
				}
			}
			return nil
		})
	}
	seenEverywhere(3)
	for i, n := range nodes {
		ds, res, err := carrier.dial(ctx, n.SIP().UDPAddr(), num)
		if err != nil {
			t.Fatalf("4th call through node %d: %v", i, err)
		}
		if ds != nil {
			t.Fatalf("4th call through node %d answered: the cap of 3 is not counted across nodes", i)
		}
		if res.StatusCode != 503 || res.Reason != "Workspace concurrent call limit" {
			t.Fatalf("4th call through node %d: %d %s", i, res.StatusCode, res.Reason)
		}
		if h := res.GetHeader("Retry-After"); h == nil || h.Value() == "" {
			t.Fatalf("4th call through node %d: 503 without Retry-After", i)
		}
		m := scrape(t, n.HTTPAddr())
		if !regexp.MustCompile(`(?m)^callgate_limit_refused_total\{rule="max_concurrent_calls"\} 1$`).MatchString(m) {
			t.Fatalf("node %d: callgate_limit_refused_total{rule=max_concurrent_calls} is not 1:\n%s", i, grepLines(m, "callgate_limit_"))
		}
	}
	// a call ends on node 1: node 2 takes a new one
	if err := held[1].Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	seenEverywhere(2)
	ds, res, err := carrier.dial(ctx, nodes[2].SIP().UDPAddr(), num)
	if err != nil || ds == nil {
		t.Fatalf("call after a place was freed on another node: %v %v", res, err)
	}
	held = append(held, ds)
	for _, ds := range []*sipgo.DialogClientSession{held[0], held[2], held[3]} {
		_ = ds.Bye(ctx)
	}
	seenEverywhere(0)

	// An outbound call metered on node 0 (as the agent edge reports it) is
	// charged once at the default price (1 credit per started minute) and
	// listed by node 2's API with its call id.
	nodes[0].Meter().Answered("out-1", ws, "+442079460000", time.Now().Add(-90*time.Second))
	nodes[0].Meter().Ended("out-1", time.Now())
	c2 := apiClient{t: t, base: nodes[2].HTTPAddr(), key: nodes[0].APIKey()}
	testwait.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		m := c2.must(200, "GET", "/v1/credits", "")
		for _, e := range m["entries"].([]any) {
			e := e.(map[string]any)
			if e["kind"] == "usage" && e["call_id"] == "out-1" && e["amount"].(float64) == -2 {
				return nil
			}
		}
		return fmt.Errorf("no usage entry of -2 for out-1 in %v", m["entries"])
	})
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
