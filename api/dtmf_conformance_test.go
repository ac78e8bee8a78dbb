package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"testing"
	"time"

	"github.com/callgate/callgate/devua"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
)

// conformanceDTMF drives POST /v1/calls/{id}/dtmf against a real call:
// the dev caller (as a carrier) calls a number of a dev agent with media
// relayed through the node, and digits are sent to it while it is up.
func conformanceDTMF(t *testing.T, x *conformance, n *node.Node, ws string) {
	t.Helper()
	a, err := devua.StartAgent(devua.AgentConfig{Listen: "127.0.0.1:0", ToneHz: 440, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	x.call(ws, "POST", "/v1/agents", `{"id":"dtmf","name":"DTMF","endpoints":[{"region":"us-east","uri":"`+a.URI()+`"}],"media":"relay"}`, want(201))
	_, page := x.call(ws, "GET", "/v1/marketplace/numbers?carrier=sandbox&country=US&area_code=229&limit=1", "", want(200))
	num := page["numbers"].([]any)[0].(map[string]any)["phone_number"].(string)
	x.call(ws, "POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox","agent_id":"dtmf"}`, want(201))
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if r, ok := n.Table().Load().Lookup(num); !ok || r.Agent == nil || r.Agent.ID != "dtmf" {
			return fmt.Errorf("%s not routed yet", num)
		}
		return nil
	})
	x.call(ws, "POST", "/v1/calls/nothing@127.0.0.1/dtmf", `{"digits":"1"}`, want(404))
	x.call(ws, "POST", "/v1/calls/nothing@127.0.0.1/dtmf", `{"digits":"1x"}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "POST", "/v1/calls/nothing@127.0.0.1/dtmf", `digits=1`, want(415), contentType("application/x-www-form-urlencoded"), badRequest())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { // calls until one is answered (the agent's endpoint may not be probed up yet)
		defer close(done)
		for ctx.Err() == nil {
			res, err := devua.Call(ctx, devua.CallConfig{Gateway: n.SIP().UDPAddr().String(), To: num, ToneHz: 440, Duration: 20 * time.Second})
			if err == nil && res.Status == 200 {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	defer func() { cancel(); <-done }()
	var id string
	testwait.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		_, m := x.call(ws, "GET", "/v1/calls?number="+url.QueryEscape(num), "", want(200))
		for _, c := range m["calls"].([]any) {
			c := c.(map[string]any)
			if c["answered_at"] != nil && c["ended_at"] == nil {
				id = c["id"].(string)
				return nil
			}
		}
		return errors.New("no answered call in progress yet")
	})
	x.call(ws, "POST", "/v1/calls/"+url.PathEscape(id)+"/dtmf", `{"digits":"12w34#"}`, want(202))
}
