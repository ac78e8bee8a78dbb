package api_test

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/devua"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
)

// conformanceTransfer drives POST /v1/calls/{id}/transfer against a real
// call on the node: SIPp as the caller's carrier (honouring REFER), the
// demo agent answering number num with its media relayed. A bridge
// transfer is accepted (202) and its new leg goes to the node's sandbox
// termination, which never answers: the attempt ends no_answer and the
// call goes on, so that the blind transfer after it can run.
func conformanceTransfer(t *testing.T, x *conformance, n *node.Node, ws, num string) {
	t.Helper()
	const sipp = "/usr/bin/sipp"
	if _, err := os.Stat(sipp); err != nil {
		t.Fatalf("sipp not installed (Debian sip-tester): POST /v1/calls/{id}/transfer needs a live call")
	}
	agent, err := devua.StartAgent(devua.AgentConfig{Listen: "127.0.0.1:0", ToneHz: 440, Out: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(agent.Close)
	x.call(ws, "POST", "/v1/agents", `{"id":"xfer","name":"Transfer","media":"relay","endpoints":[{"region":"us-east","uri":"`+agent.URI()+`"}]}`, want(201))
	x.call(ws, "PATCH", "/v1/numbers/"+strings.TrimPrefix(num, "+"), `{"agent_id":"xfer"}`, want(200))
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if r, ok := n.Table().Load().Lookup(num); !ok || r.Agent == nil || r.Agent.ID != "xfer" {
			return errors.New("not routed yet")
		}
		return nil
	})
	scen, _ := filepath.Abs("../gateway/sip/testdata/sipp/uac_refer_accept.xml")
	cmd := exec.Command("timeout", "40", sipp, "-sf", scen, "-i", "127.0.0.1", "-s", num, n.SIP().UDPAddr().String(),
		"-m", "1", "-nostdin", "-trace_err")
	cmd.Dir = t.TempDir()
	cmd.WaitDelay = 5 * time.Second // sipp (under timeout) holding the output open does not hang Wait
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var id string
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		code, m := x.call(ws, "GET", "/v1/calls?number="+url.QueryEscape(num), "", want(200, 503))
		if code != 200 {
			return fmt.Errorf("GET /v1/calls: %d", code)
		}
		for _, c := range m["calls"].([]any) {
			c := c.(map[string]any)
			if c["answered_at"] != nil && c["ended_at"] == nil {
				id = c["id"].(string)
				return nil
			}
		}
		return errors.New("no answered call yet")
	})
	path := "/v1/calls/" + url.PathEscape(id) + "/transfer"
	x.call(ws, "POST", path, `{"to":"call me"}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "POST", path, `{"to":"tel:+14155550143","mode":"warm"}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "POST", path, `{"to":"tel:+19005550100"}`, want(422))
	x.call(ws, "POST", path, `{"to":"tel:+14155550143","mode":"bridge"}`, want(202))
	x.call(ws, "POST", path, `{"to":"tel:+14155550143","mode":"bridge"}`, want(409)) // the first one still runs
	testwait.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		_, c := x.call(ws, "GET", "/v1/calls/"+url.PathEscape(id), "", want(200))
		if tr, _ := c["transfer"].(map[string]any); tr == nil || tr["mode"] != "bridge" || tr["state"] != "no_answer" || c["ended_at"] != nil {
			return fmt.Errorf("call record %v: want a running call whose bridge transfer ended no_answer", c)
		}
		return nil
	})
	x.call(ws, "POST", "/v1/calls/nothing/transfer", `{"to":"tel:+14155550143"}`, want(404))
	x.call(ws, "POST", path, `{"to":"tel:+14155550143","mode":"blind"}`, want(202))
	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("sipp carrier: %v\n%s", waitErr, out.String())
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("sipp carrier still running\n%s", out.String())
	}
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		_, c := x.call(ws, "GET", "/v1/calls/"+url.PathEscape(id), "", want(200))
		if tr, _ := c["transfer"].(map[string]any); c["ended_at"] == nil || tr == nil || tr["state"] != "completed" {
			return fmt.Errorf("call record %v", c)
		}
		return nil
	})
	x.call(ws, "POST", path, `{"to":"tel:+14155550143"}`, want(409))
}
