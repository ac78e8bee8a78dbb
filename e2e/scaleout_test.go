package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/store"
)

// clusterNode starts a gateway in region on the NATS cluster with KV
// replicas 3 and the cluster-wide secret key.
func clusterNode(t *testing.T, nc *natsCluster, region string) (*node.Node, *logBuffer) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Region = region
	cfg.NATS.URL = nc.URL()
	cfg.NATS.Replicas = 3
	cfg.SecretKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	return startNode(t, cfg)
}

// buy buys a sandbox number in area through c and assigns it to agent.
func buy(t *testing.T, c apiClient, area, agent string) (num string, cost float64) {
	t.Helper()
	num = searchNumber(t, c, area)
	m := c.must(201, "POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox"}`)
	cost, _ = m["monthly_cost"].(float64)
	c.must(200, "PATCH", "/v1/numbers/"+strings.TrimPrefix(num, "+"), `{"agent_id":"`+agent+`"}`)
	return num, cost
}

// routedWithin waits until every node routes num to agent and returns how
// long that took from start.
func routedWithin(t *testing.T, start time.Time, limit time.Duration, num, agent string, nodes ...*node.Node) time.Duration {
	t.Helper()
	testwait.CheckFor(t, limit, 20*time.Millisecond, func() error {
		for i, n := range nodes {
			r, ok := n.Table().Load().Lookup(num)
			if !ok || r.Agent == nil || r.Agent.ID != agent {
				return fmt.Errorf("node %d does not route %s to %s yet", i, num, agent)
			}
		}
		return nil
	})
	return time.Since(start)
}

// callAll places a call to each number through each node and wants 200.
func callAll(t *testing.T, carrierUA *ua, nodes []*node.Node, nums ...string) {
	t.Helper()
	for i, n := range nodes {
		for _, num := range nums {
			if code := carrierUA.call(t, n.SIP().UDPAddr(), num); code != 200 {
				t.Fatalf("call to %s through node %d: %d, want 200", num, i, code)
			}
		}
	}
}

// watchRestarts is callgate_routing_watch_restarts_total summed over nodes.
func watchRestarts(t *testing.T, nodes []*node.Node) float64 {
	t.Helper()
	sum := 0.0
	for _, n := range nodes {
		mfs, err := n.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "callgate_routing_watch_restarts_total" {
				for _, m := range mf.GetMetric() {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// routingResumeLimit bounds how long a node takes to route a change made
// after the NATS server it was connected to went away. nats.go's ordered
// consumers behind the KV watchers notice a lost consumer only after two
// missed 5 s heartbeats; provisioning.Syncer compares each watcher with its
// bucket every second and restarts it after two checks behind, so this is
// about 2 s (a new connection and a JetStream leader election included).
const routingResumeLimit = 3 * time.Second

// outageResumeLimit is the same after every NATS server was down: the
// streams elect leaders and the watchers are recreated on a reconnected
// client first (1.2-4 s seen on a busy 2-core machine).
const outageResumeLimit = 10 * time.Second

// TestScaleOutOnNATSCluster: two gateways in two regions share a 3-node
// NATS JetStream cluster. A number bought through one is routed by the
// other within a second; losing one NATS node changes nothing; losing all
// of them leaves calls routed from the snapshots and provisioning answering
// 503; when NATS returns, provisioning resumes and nothing is lost.
func TestScaleOutOnNATSCluster(t *testing.T) {
	cluster := startNATSCluster(t, 3)
	a, _ := clusterNode(t, cluster, "us-east")
	b, _ := clusterNode(t, cluster, "eu-west")
	nodes := []*node.Node{a, b}
	// One workspace for the whole cluster: node a created it, b found it.
	ca := apiClient{t: t, base: a.HTTPAddr(), key: a.APIKey()}
	cb := apiClient{t: t, base: b.HTTPAddr(), key: a.APIKey()}
	if b.APIKey() != "" {
		t.Logf("node b wrote its own api-key: %s", b.APIKey())
	}

	// KV buckets and the ledger have 3 replicas.
	checkReplicas(t, cluster)

	agent, carrierUA := newUA(t), newUA(t)
	ca.must(201, "POST", "/v1/agents", `{"id":"bot","name":"bot","endpoints":[{"region":"us-east","uri":"`+agent.uri()+`"}]}`)
	var nums []string
	var spent float64

	// Bought and assigned through a: routed by b within a second.
	num, cost := buy(t, ca, "228", "bot")
	took := routedWithin(t, time.Now(), time.Second, num, "bot", b)
	t.Logf("bought through a, routed by b after %v", took)
	// a follows its own write through the same KV watch, not at once
	routedWithin(t, time.Now(), time.Second, num, "bot", a)
	nums, spent = append(nums, num), spent+cost
	callAll(t, carrierUA, nodes, num)

	// One NATS node down (the one a is connected to).
	down := cluster.index(a.Store().NC.ConnectedServerName())
	t.Logf("stopping %s", cluster.nodes[down].name)
	restarts := watchRestarts(t, nodes)
	cluster.stop(down)
	stopped := time.Now()
	for i, c := range []apiClient{ca, cb} {
		start := time.Now()
		// The cluster may need a moment to elect new leaders: retry 503s.
		var n string
		testwait.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
			code, m, _ := c.try("GET", "/v1/marketplace/numbers?carrier=sandbox&country=US&area_code=601&limit=1", "")
			if code != 200 {
				return fmt.Errorf("search: %d %v", code, m)
			}
			n = m["numbers"].([]any)[0].(map[string]any)["phone_number"].(string)
			code, m, _ = c.try("POST", "/v1/numbers", `{"phone_number":"`+n+`","carrier":"sandbox"}`, "Idempotency-Key", "one-down-"+n)
			if code != 201 {
				return fmt.Errorf("buy: %d %v", code, m)
			}
			spent += m["monthly_cost"].(float64)
			return nil
		})
		c.must(200, "PATCH", "/v1/numbers/"+strings.TrimPrefix(n, "+"), `{"agent_id":"bot"}`)
		t.Logf("one NATS node down: bought and assigned through node %d in %v (%v after the stop)", i, time.Since(start), time.Since(stopped))
		// Routing resumes within routingResumeLimit when the machine keeps
		// pace. On a loaded machine the stall checks and the new watch take
		// longer; what must hold then is that the watchers were restarted
		// (the stall check did it, not nats.go's heartbeats, 10 s after the
		// stop), and routing resumed within outageResumeLimit.
		took := routedWithin(t, time.Now(), outageResumeLimit, n, "bot", a, b)
		t.Logf("one NATS node down: routed by both nodes after %v (watch restarts %v)", took, watchRestarts(t, nodes)-restarts)
		if took > routingResumeLimit && watchRestarts(t, nodes) == restarts {
			t.Errorf("one NATS node down: routed after %v (over %v) and no KV watcher was restarted", took, routingResumeLimit)
		}
		nums = append(nums, n)
	}
	callAll(t, carrierUA, nodes, nums...)

	// All NATS nodes down.
	cluster.stopAll()
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		for i, n := range nodes {
			if n.Store().Connected() {
				return fmt.Errorf("node %d still connected", i)
			}
		}
		return nil
	})
	for i, n := range nodes {
		if !strings.Contains(scrape(t, n.HTTPAddr()), "callgate_nats_connected 0") {
			t.Errorf("node %d: callgate_nats_connected is not 0 without NATS", i)
		}
	}
	// Calls are routed from the snapshots.
	callAll(t, carrierUA, nodes, nums...)
	// Provisioning answers 503 with a clear message, promptly.
	for i, c := range []apiClient{ca, cb} {
		for _, r := range []struct{ method, path, body string }{
			{"GET", "/v1/numbers", ""},
			{"POST", "/v1/numbers", `{"phone_number":"+12282009999","carrier":"sandbox"}`},
		} {
			start := time.Now()
			code, m, h := c.try(r.method, r.path, r.body)
			took := time.Since(start)
			detail, _ := m["detail"].(string)
			if code != 503 || !strings.Contains(detail, "NATS") || h.Get("Retry-After") == "" {
				t.Errorf("node %d %s %s without NATS: %d %v (Retry-After %q), want 503 naming NATS", i, r.method, r.path, code, m, h.Get("Retry-After"))
			}
			if took > 5*time.Second {
				t.Errorf("node %d %s %s without NATS took %v to answer", i, r.method, r.path, took)
			}
			t.Logf("no NATS: node %d %s %s -> %d in %v: %s", i, r.method, r.path, code, took.Round(time.Millisecond), detail)
		}
		// Still ready: it routes calls.
		if code, m, _ := c.try("GET", "/readyz", ""); code != 200 {
			t.Errorf("node %d /readyz without NATS: %d %v", i, code, m)
		}
	}

	// NATS returns: provisioning resumes, nothing is lost.
	back := time.Now()
	for i := range cluster.nodes {
		cluster.start(i)
	}
	cluster.waitJetStream()
	testwait.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		for i, n := range nodes {
			if !n.Store().Connected() {
				return fmt.Errorf("node %d not reconnected", i)
			}
		}
		return nil
	})
	// The cluster needs a few seconds to elect its leaders again: retry.
	var n4 string
	testwait.CheckFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		if n4 == "" {
			code, m, _ := cb.try("GET", "/v1/marketplace/numbers?carrier=sandbox&country=US&area_code=415&limit=1", "")
			if code != 200 {
				return fmt.Errorf("search: %d %v", code, m)
			}
			n := m["numbers"].([]any)[0].(map[string]any)["phone_number"].(string)
			code, m, _ = cb.try("POST", "/v1/numbers", `{"phone_number":"`+n+`","carrier":"sandbox"}`, "Idempotency-Key", "back-"+n)
			if code != 201 {
				return fmt.Errorf("buy: %d %v", code, m)
			}
			spent += m["monthly_cost"].(float64)
			n4 = n
		}
		code, m, _ := cb.try("PATCH", "/v1/numbers/"+strings.TrimPrefix(n4, "+"), `{"agent_id":"bot"}`)
		if code != 200 {
			return fmt.Errorf("assign: %d %v", code, m)
		}
		return nil
	})
	assigned := time.Now()
	t.Logf("NATS back: bought and assigned through b %v after the restart", assigned.Sub(back))
	t.Logf("after the outage: routed by both nodes %v after the assignment", routedWithin(t, assigned, outageResumeLimit, n4, "bot", a, b))
	nums = append(nums, n4)
	callAll(t, carrierUA, nodes, nums...)

	// Nothing lost: every number, the agent, the ledger. (The cluster may
	// still be electing some stream leaders: 503s are retried.)
	for i, c := range []apiClient{ca, cb} {
		eventually := func(path string) map[string]any {
			var m map[string]any
			testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
				var code int
				code, m, _ = c.try("GET", path, "")
				if code != 200 {
					return fmt.Errorf("node %d GET %s: %d %v", i, path, code, m)
				}
				return nil
			})
			return m
		}
		// Right after the restart a listing can come back short (KV direct
		// gets are served by replicas still catching up): it must converge.
		testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
			code, m, _ := c.try("GET", "/v1/numbers", "")
			if code != 200 {
				return fmt.Errorf("node %d GET /v1/numbers: %d %v", i, code, m)
			}
			if got := len(m["numbers"].([]any)); got != len(nums) {
				t.Logf("node %d lists %d numbers, want %d (retrying)", i, got, len(nums))
				return fmt.Errorf("node %d lists %d numbers, want %d", i, got, len(nums))
			}
			return nil
		})
		eventually("/v1/agents/bot")
		cr := eventually("/v1/credits")
		if cr["balance"].(float64) != 1000-spent {
			t.Errorf("node %d: balance %v, want %v", i, cr["balance"], 1000-spent)
		}
		sum := 0.0
		for _, e := range cr["entries"].([]any) {
			sum += e.(map[string]any)["amount"].(float64)
		}
		if sum != cr["balance"].(float64) {
			t.Errorf("node %d: ledger sums to %v, balance is %v", i, sum, cr["balance"])
		}
	}
	for i, n := range nodes {
		if got := n.Table().Load().Len(); got != len(nums) {
			t.Errorf("node %d routes %d numbers, want %d", i, got, len(nums))
		}
	}
}

// checkReplicas asserts the callgate KV buckets and ledger stream have 3 replicas.
func checkReplicas(t *testing.T, cluster *natsCluster) {
	t.Helper()
	nc, err := nats.Connect(cluster.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, b := range []string{store.BucketNumbers, store.BucketAgents, store.BucketWorkspaces, store.BucketAPIKeys, store.BucketForwarding, store.BucketIntegrations} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatalf("bucket %s: %v", b, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; r != 3 {
			t.Errorf("bucket %s has %d replicas, want 3", b, r)
		}
	}
	s, err := js.Stream(ctx, store.StreamLedger)
	if err != nil {
		t.Fatal(err)
	}
	if r := s.CachedInfo().Config.Replicas; r != 3 {
		t.Errorf("ledger stream has %d replicas, want 3", r)
	}
}
