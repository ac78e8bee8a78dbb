package console_test

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/provisioning"
)

// startOptionsAgent is a SIP agent on a loopback UDP port that answers
// OPTIONS (the prober's probes) with 200. It returns its port.
func startOptionsAgent(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go func() { _ = srv.ServeUDP(pc) }()
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if c, err := ua.TransportLayer().GetConnection("udp", pc.LocalAddr().String()); err != nil || c == nil {
			return errors.New("agent listener not ready")
		}
		return nil
	})
	t.Cleanup(func() { ua.Close(); pc.Close() })
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// TestAgentsLiveHealth: the Agents page shows each endpoint's health and
// RTT as this node's OPTIONS prober measures them, and updates in place
// (htmx polling) without a reload: a live agent is up with an RTT, an
// endpoint where nobody answers is down.
func TestAgentsLiveHealth(t *testing.T) {
	n := nodetest.Start(t, nodetest.Config(func(c *config.Config) {
		c.SIP.Probe.Interval = 300 * time.Millisecond
		c.SIP.Probe.Timeout = 300 * time.Millisecond
		c.SIP.Probe.DownAfter = 2
		c.SIP.Probe.UpAfter = 1
	}))
	dead, err := net.ListenPacket("udp", "127.0.0.1:0") // bound, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	live := startOptionsAgent(t)
	p := provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}
	b := startBrowser(t, "http://"+n.HTTPAddr(), 1280, 900)
	login(b, n.APIKey())
	b.open("/console/agents")
	var marked bool
	b.eval(`window.__cg_stay = true`, &marked)
	if _, err := n.Service().CreateAgent(context.Background(), p, provisioning.AgentInput{ID: "bot", Name: "Bot", Endpoints: []provisioning.Endpoint{
		{Region: "us-east", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(live)},
		{Region: "eu-west", URI: "sip:bot@" + dead.LocalAddr().String()},
	}}); err != nil {
		t.Fatal(err)
	}
	b.waitFor("live health", `(function(){
		var rows = Array.from(document.querySelectorAll("#agent-bot tbody tr")).map(function(r){ return r.textContent; });
		return rows.length === 2 && /us-east[\s\S]*up[\s\S]*\d+\.\d ms/.test(rows[0]) && /eu-west[\s\S]*down/.test(rows[1]);
	})()`)
	var stayed bool
	b.eval(`window.__cg_stay === true`, &stayed)
	if !stayed {
		t.Fatal("the health table was updated by reloading the page, not in place")
	}
	if txt := b.text("#agent-bot"); !strings.Contains(txt, "media direct") {
		t.Fatalf("agent card: %q", txt)
	}
	b.noErrors("agents health")
}
