package e2e

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/store/storetest"
)

// TestCallHistoryAcrossNodes: two gateways share one NATS JetStream. Calls
// placed through each (a sipgo carrier UA to a sipgo agent UA) are listed,
// complete, by either node's API; another workspace sees none of them.
func TestCallHistoryAcrossNodes(t *testing.T) {
	js := storetest.RunJetStreamServer(t)
	start := func(region string) *node.Node {
		cfg := testConfig(t)
		cfg.Region = region
		cfg.NATS.URL = js.ClientURL()
		cfg.SecretKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
		n, _ := startNode(t, cfg)
		return n
	}
	a, b := start("us-east"), start("eu-west")
	ca := apiClient{t: t, base: a.HTTPAddr(), key: a.APIKey()}
	cb := apiClient{t: t, base: b.HTTPAddr(), key: a.APIKey()} // one workspace: a created it
	agent, carrierUA := newUA(t), newUA(t)
	num := routeNumber(t, ca, "228", "bot", "us-east", agent.uri())
	routedWithin(t, time.Now(), 10*time.Second, num, "bot", a, b)
	// Each node probes the agent before routing to it.
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for i, n := range []*node.Node{a, b} {
			if !n.Ready() {
				return fmt.Errorf("node %d not ready", i)
			}
		}
		return nil
	})
	const perNode = 3
	callAll(t, carrierUA, []*node.Node{a, b, a, b, a, b}, num)

	// Listed from either node: 6 answered calls, complete (started,
	// answered, ended), newest first.
	for i, c := range []apiClient{ca, cb} {
		var got []any
		testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
			m := c.must(200, "GET", "/v1/calls?outcome=answered&number="+url.QueryEscape(num), "")
			got = m["calls"].([]any)
			if len(got) != 2*perNode {
				return fmt.Errorf("node %d lists %d answered calls, want %d", i, len(got), 2*perNode)
			}
			// events are stored asynchronously: a call's ended event may
			// still be on its way when its BYE has been answered
			for _, x := range got {
				if x.(map[string]any)["ended_at"] == nil {
					return fmt.Errorf("node %d lists a call not ended yet: %v", i, x)
				}
			}
			return nil
		})
		var starts []string
		for _, x := range got {
			call := x.(map[string]any)
			if call["agent"] != "bot" || call["number"] != num || call["direction"] != "inbound" || call["answered_at"] == nil ||
				call["ended_at"] == nil || call["setup_ms"] == nil || call["sip_status"] != float64(200) || call["region"] != "us-east" {
				t.Errorf("node %d lists %v", i, call)
			}
			if r, _ := call["end_reason"].(string); !strings.HasPrefix(r, "bye_") {
				t.Errorf("node %d: end reason %q", i, r)
			}
			starts = append(starts, call["started_at"].(string))
		}
		if !sort.SliceIsSorted(starts, func(i, j int) bool { return starts[i] > starts[j] }) {
			t.Errorf("node %d: not newest first: %v", i, starts)
		}
		// One call by id, through the other node.
		id := got[0].(map[string]any)["id"].(string)
		other := []apiClient{cb, ca}[i]
		if m := other.must(200, "GET", "/v1/calls/"+url.PathEscape(id), ""); m["id"] != id {
			t.Errorf("show %s: %v", id, m)
		}
	}

	// Another workspace: nothing, and the ids are 404.
	adm := apiClient{t: t, base: a.HTTPAddr(), key: a.AdminKey()}
	m := adm.must(201, "POST", "/v1/workspaces", `{"id":"other","name":"Other"}`)
	other := apiClient{t: t, base: b.HTTPAddr(), key: m["api_key"].(string)}
	if m := other.must(200, "GET", "/v1/calls", ""); len(m["calls"].([]any)) != 0 {
		t.Errorf("another workspace lists %v", m["calls"])
	}
	first := ca.must(200, "GET", "/v1/calls?limit=1", "")["calls"].([]any)[0].(map[string]any)["id"].(string)
	other.must(404, "GET", "/v1/calls/"+url.PathEscape(first), "")
}
