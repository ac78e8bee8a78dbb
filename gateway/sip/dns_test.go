package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/sip/transport"
	"github.com/callgate/callgate/gateway/sip/transport/dnstest"
	"github.com/callgate/callgate/routing"
)

// dnsTable routes numPurchased to agent a1 (eps1) and numImported to a2 (eps2).
func dnsTable(eps1, eps2 []routing.Endpoint) *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Name: "one", Endpoints: eps1})
	b.AddAgent(routing.Agent{ID: "a2", Workspace: "w", Name: "two", Endpoints: eps2})
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	b.AddNumber(routing.Number{E164: numImported, Workspace: "w", Carrier: "telnyx", Origin: routing.OriginImported,
		Status: routing.StatusActive, AgentID: "a2"})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

func withDNS(d *dnstest.Server, more func(*Config)) func(*Config) {
	return func(c *Config) {
		c.DNS.Server = d.Addr
		if more != nil {
			more(c)
		}
	}
}

// listenUDPAt binds host on the given port (another loopback address
// than the port was picked on), or fails the test.
func listenUDPAt(t testing.TB, host string, port int) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host), Port: port})
	if err != nil {
		t.Skipf("cannot bind %s:%d: %v", host, port, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readInvite reads from c until an INVITE with callID arrives or d passes.
func readInvite(c *net.UDPConn, callID string, d time.Duration) bool {
	buf := make([]byte, 65535)
	deadline := time.Now().Add(d)
	for {
		_ = c.SetReadDeadline(deadline)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		m := string(buf[:n])
		if strings.HasPrefix(m, "INVITE ") && strings.Contains(m, "Call-ID: "+callID+"\r\n") {
			return true
		}
	}
}

// TestCallFollowsDNSTTL: a call to an endpoint named by a host name goes
// where its record points; within the TTL no new query is made, and once
// the TTL has passed the changed record is asked for (one query) and used.
func TestCallFollowsDNSTTL(t *testing.T) {
	d := dnstest.Run(t)
	agentA, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer agentA.Close()
	port := agentA.LocalAddr().(*net.UDPAddr).Port
	agentB := listenUDPAt(t, "127.0.0.2", port)
	const ttl = 2
	d.Set("agent.test", "127.0.0.1", ttl)
	e := runEdge(t, dnsTable([]routing.Endpoint{{Region: "eu", URI: fmt.Sprintf("sip:bot@agent.test:%d", port)}}, nil),
		withDNS(d, nil), nil)
	carrier := newRaw(t, "127.0.0.1", net_(e))

	carrier.send(carrier.invite(e, numPurchased, "ttl-1", ""))
	if !readInvite(agentA, "ttl-1", 5*time.Second) {
		t.Fatal("first call: no INVITE at 127.0.0.1")
	}
	answered := time.Now()
	if n := d.Count("agent.test", dns.TypeA); n != 1 {
		t.Fatalf("%d queries after the first call, want 1", n)
	}
	carrier.send(carrier.invite(e, numPurchased, "ttl-2", ""))
	if !readInvite(agentA, "ttl-2", 5*time.Second) {
		t.Fatal("second call within the TTL: no INVITE at 127.0.0.1")
	}
	if time.Since(answered) < ttl*time.Second*3/4 { // (a stalled machine may have let the TTL pass)
		if n := d.Count("agent.test", dns.TypeA); n != 1 {
			t.Fatalf("%d queries for two calls within the TTL, want 1", n)
		}
	}

	d.Set("agent.test", "127.0.0.2", ttl)
	deadline := time.Now().Add(15 * time.Second)
	for i := 3; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no call reached the new address 127.0.0.2 (%d queries)", d.Count("agent.test", dns.TypeA))
		}
		id := fmt.Sprintf("ttl-%d", i)
		carrier.send(carrier.invite(e, numPurchased, id, ""))
		if readInvite(agentB, id, 300*time.Millisecond) {
			if since := time.Since(answered); since < ttl*time.Second {
				t.Fatalf("new address used %v after the first answer, before its TTL (%ds)", since, ttl)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := d.Count("agent.test", dns.TypeA); n != 2 {
		t.Fatalf("%d queries, want 2 (one more after the TTL)", n)
	}
}

// TestReadLoopServesDuringLookup: with one UDP read loop, a call whose
// endpoint's name takes long to resolve does not hold up another call
// to an IP endpoint; once the name resolves the first call goes on.
func TestReadLoopServesDuringLookup(t *testing.T) {
	d := dnstest.Run(t)
	slowAgent := newUA(t, "127.0.0.1")
	fastAgent := newUA(t, "127.0.0.1")
	d.Set("slow.test", "127.0.0.1", 60)
	release := d.Hold("slow.test")
	defer release()
	e := runEdge(t, dnsTable(
		[]routing.Endpoint{{Region: "eu", URI: fmt.Sprintf("sip:bot@slow.test:%d", slowAgent.port)}},
		[]routing.Endpoint{fastAgent.endpoint("eu")},
	), withDNS(d, func(c *Config) {
		c.Workers = 1
		c.DNS.Timeout = 20 * time.Second
		c.InviteTimeout = 20 * time.Second
	}), nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	slowDone := make(chan error, 1)
	go func() {
		ds, _, err := carrier.call(ctx, e, numPurchased)
		if err == nil {
			_ = ds.Ack(ctx)
		}
		slowDone <- err
	}()
	checkFor(t, 5*time.Second, func() error {
		if d.Held("slow.test") == 0 {
			return fmt.Errorf("no lookup of slow.test held yet")
		}
		return nil
	})
	ds, _, err := carrier.call(ctx, e, numImported)
	if err != nil {
		t.Fatalf("call to the IP endpoint while a lookup hangs: %v", err)
	}
	_ = ds.Ack(ctx)
	recv(t, fastAgent.invites, "INVITE at the IP endpoint")
	select {
	case err := <-slowDone:
		t.Fatalf("the slow call ended before its name resolved: %v", err)
	default:
	}
	release()
	if err := <-slowDone; err != nil {
		t.Fatalf("call to the slow name after it resolved: %v", err)
	}
	recv(t, slowAgent.invites, "INVITE at the slow endpoint")
}

// TestUnresolvableEndpointFailsOver: an endpoint whose name does not
// resolve (no such name; no answer within the lookup timeout) fails over
// to the next endpoint at once, like a dial failure, not after the
// INVITE timeout.
func TestUnresolvableEndpointFailsOver(t *testing.T) {
	for _, tc := range []struct {
		name string
		hold bool
	}{{"nxdomain.test", false}, {"silent.test", true}} {
		t.Run(tc.name, func(t *testing.T) {
			d := dnstest.Run(t)
			if tc.hold {
				d.Set(tc.name, "127.0.0.1", 60)
				defer d.Hold(tc.name)()
			}
			live := newUA(t, "127.0.0.1")
			e := runEdge(t, dnsTable([]routing.Endpoint{
				{Region: "ap", URI: "sip:bot@" + tc.name + ":5060"},
				live.endpoint("us"),
			}, nil), withDNS(d, func(c *Config) {
				c.DNS.Timeout = 300 * time.Millisecond
				c.InviteTimeout = 10 * time.Second
			}), nil)
			carrier := newUA(t, "127.0.0.1")
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			start := time.Now()
			ds, _, err := carrier.call(ctx, e, numPurchased)
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			took := time.Since(start)
			_ = ds.Ack(ctx)
			inv := recv(t, live.invites, "INVITE at the next endpoint")
			if header(inv, "X-Callgate-Region") != "us" {
				t.Errorf("region %q", header(inv, "X-Callgate-Region"))
			}
			if took > 5*time.Second {
				t.Errorf("failover took %v: waited for the INVITE timeout", took)
			}
			if n := testutil.ToFloat64(e.metrics.Failovers.WithLabelValues("ap")); n != 1 {
				t.Errorf("failovers{ap} = %v, want 1", n)
			}
			if n := testutil.ToFloat64(e.metrics.SendErrors.WithLabelValues("udp", "resolve")); n != 1 {
				t.Errorf("send_errors{udp,resolve} = %v, want 1", n)
			}
		})
	}
}

// TestConcurrentCallsOneQuery: calls arriving together for an endpoint
// whose name is not cached make one DNS query, and all reach it (more of
// them than lookups and dials may run at once: they wait for one lookup).
func TestConcurrentCallsOneQuery(t *testing.T) {
	d := dnstest.Run(t)
	agent := newUA(t, "127.0.0.1")
	d.Set("shared.test", "127.0.0.1", 60)
	release := d.Hold("shared.test")
	defer release()
	e := runEdge(t, dnsTable([]routing.Endpoint{{Region: "eu", URI: fmt.Sprintf("sip:bot@shared.test:%d", agent.port)}}, nil),
		withDNS(d, func(c *Config) {
			c.InviteTimeout = 10 * time.Second
			c.DNS.Timeout = 20 * time.Second
		}), nil)
	const n = transport.MaxAsync + 16
	carrier := newRaw(t, "127.0.0.1", net_(e))
	for i := 0; i < n; i++ {
		carrier.send(carrier.invite(e, numPurchased, fmt.Sprintf("same-%d", i), ""))
	}
	checkFor(t, 5*time.Second, func() error {
		if e.ActiveCalls() != n || d.Held("shared.test") == 0 {
			return fmt.Errorf("%d calls waiting, %d queries held", e.ActiveCalls(), d.Held("shared.test"))
		}
		return nil
	})
	release()
	seen := map[string]bool{}
	for len(seen) < n {
		inv := recv(t, agent.invites, "INVITE at the agent")
		seen[inv.CallID().Value()] = true
	}
	if q := d.Count("shared.test", dns.TypeA); q != 1 {
		t.Fatalf("%d DNS queries for %d concurrent calls, want 1", q, n)
	}
}

// TestNamedAgentSourceAccepted: an agent endpoint named by a host name,
// at an address no trunk lists, is let through the source filter once
// its name has resolved, even when the filter's agent addresses were
// built for this snapshot before (its answers would otherwise be refused
// and the call time out).
func TestNamedAgentSourceAccepted(t *testing.T) {
	d := dnstest.Run(t)
	agent := newUA(t, "127.0.0.2")
	d.Set("agent2.test", "127.0.0.2", 60)
	e := runEdge(t, dnsTable([]routing.Endpoint{{Region: "eu", URI: fmt.Sprintf("sip:bot@agent2.test:%d", agent.port)}}, nil),
		withDNS(d, func(c *Config) {
			c.Trunks[0].CIDRs = []string{"127.0.0.1/32"}
			c.InviteTimeout = 3 * time.Second
		}), nil)
	if e.isAgentAddr(netip.MustParseAddr("127.0.0.2")) {
		t.Fatal("127.0.0.2 is an agent address before its name resolved: the case tests nothing")
	}
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, codes, err := carrier.call(ctx, e, numPurchased)
	if err != nil {
		t.Fatalf("call to a named agent outside the trunks: %v (codes %v)", err, codes)
	}
	_ = ds.Ack(ctx)
	recv(t, agent.invites, "INVITE at the agent")
	if n := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("unknown_source")); n != 0 {
		t.Errorf("rejected_total{unknown_source} = %v: the agent's answers were refused", n)
	}
}

// TestProbeRoundNotHeldByLookup: while one endpoint's name takes long to
// resolve, the other endpoints are still probed every round; once the
// name resolves, that endpoint is probed too.
func TestProbeRoundNotHeldByLookup(t *testing.T) {
	d := dnstest.Run(t)
	fast := newUA(t, "127.0.0.1")
	slow := newUA(t, "127.0.0.1")
	d.Set("slowprobe.test", "127.0.0.1", 60)
	release := d.Hold("slowprobe.test")
	defer release()
	slowEP := routing.Endpoint{Region: "ap", URI: fmt.Sprintf("sip:bot@slowprobe.test:%d", slow.port)}
	e := runEdge(t, dnsTable([]routing.Endpoint{slowEP}, []routing.Endpoint{fast.endpoint("eu")}),
		withDNS(d, func(c *Config) {
			c.Probe = ProbeConfig{Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond, DownAfter: 100, UpAfter: 1, Alpha: 0.5}
			c.DNS.Timeout = 20 * time.Second
		}), nil)
	checkFor(t, 10*time.Second, func() error {
		if _, _, known := e.Prober().Endpoint(fast.endpoint("eu").URI); !known {
			return fmt.Errorf("the IP endpoint has no probe verdict yet")
		}
		if d.Held("slowprobe.test") == 0 {
			return fmt.Errorf("no lookup of slowprobe.test held")
		}
		return nil
	})
	if _, _, known := e.Prober().Endpoint(slowEP.URI); known {
		t.Fatal("the endpoint whose name is not resolved has a verdict")
	}
	release()
	checkFor(t, 10*time.Second, func() error {
		if _, up, known := e.Prober().Endpoint(slowEP.URI); !known || !up {
			return fmt.Errorf("the named endpoint is not probed up after its name resolved")
		}
		return nil
	})
}

// TestByeToNamedContactOverCarrierConnection: the agent's BYE toward a
// TCP carrier whose Contact is a host name (looked up off the read loop)
// at which nothing listens goes over the carrier's own connection, and
// the dialog ends normally: the lookup's goroutine hands the dial's
// outcome on instead of counting the pending dial as a failure.
func TestByeToNamedContactOverCarrierConnection(t *testing.T) {
	d := dnstest.Run(t)
	d.Set("carrier.test", "127.0.0.1", 60)
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), withDNS(d, nil), nil)
	car := dialCarrier(t, e, false)
	const callID = "named-contact"
	car.answeredCall(e, false, callID, fmt.Sprintf("sip:carrier@carrier.test:%d;transport=tcp", deadPort(t)))
	recv(t, agent.acks, "ACK at the agent")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	byeDone := make(chan error, 1)
	go func() { byeDone <- agent.session(callID).Bye(ctx) }()
	bye := car.next("BYE from the agent", func(m sip.Message) bool {
		r, ok := m.(*sip.Request)
		return ok && r.Method == sip.BYE
	}).(*sip.Request)
	car.write(sip.NewResponseFromRequest(bye, 200, "OK", nil).String())
	if err := <-byeDone; err != nil {
		t.Errorf("agent's BYE: %v", err)
	}
	if en := e.events.waitEvent(t, calls.Ended, callID); en.Reason != "bye_agent" {
		t.Errorf("ended reason %q, want bye_agent", en.Reason)
	}
	if n := d.Count("carrier.test", dns.TypeA); n != 1 {
		t.Errorf("%d queries for the carrier's Contact, want 1", n)
	}
}
