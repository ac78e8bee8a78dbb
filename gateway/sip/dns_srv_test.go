package sip

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/sip/transport/dnstest"
	"github.com/callgate/callgate/routing"
)

// srvTo points _sip._udp.<domain> at the given targets (priority 10, 20,
// ... in order), each a name <i>.<domain> resolving to 127.0.0.1.
func srvTo(d *dnstest.Server, domain string, ttl uint32, ports ...int) {
	var rrs []string
	for i, p := range ports {
		name := fmt.Sprintf("t%d.%s", i, domain)
		d.Set(name, "127.0.0.1", ttl)
		rrs = append(rrs, fmt.Sprintf("_sip._udp.%s. %d IN SRV %d 0 %d %s.", domain, ttl, 10*(i+1), p, name))
	}
	d.Records("_sip._udp."+domain, dns.TypeSRV, rrs...)
}

// silentUDP is a UDP socket on 127.0.0.1 that reads and never answers
// (a target that times out); got receives the first line of each message.
func silentUDP(t *testing.T) (port int, got chan string) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	got = make(chan string, 256)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
			select {
			case got <- line:
			default:
			}
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).Port, got
}

// TestSRVFailoverWithinEndpoint: an agent endpoint named by a domain with
// SRV records (sip:bot@agent.test, no port) is tried target by target: on
// 503 or no answer the next SRV target of the same endpoint gets the
// INVITE (and the call completes there) before the agent's next endpoint
// does; on another 5xx the next endpoint gets it at once.
func TestSRVFailoverWithinEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name     string
		first    int // the first target's answer (0: silent)
		nextSame bool
	}{{"503", 503, true}, {"timeout", 0, true}, {"500", 500, false}} {
		t.Run(tc.name, func(t *testing.T) {
			d := dnstest.Run(t)
			second := newUA(t, "127.0.0.1")
			backup := newUA(t, "127.0.0.1")
			var firstPort int
			var firstGot <-chan string
			if tc.first != 0 {
				first := newUA(t, "127.0.0.1", reject(tc.first))
				firstPort = first.port
				got := make(chan string, 4)
				go func() {
					select {
					case r := <-first.invites:
						got <- r.StartLine()
					case <-time.After(10 * time.Second):
					}
				}()
				firstGot = got
			} else {
				firstPort, firstGot = silentUDP(t)
			}
			srvTo(d, "agent.test", 60, firstPort, second.port)
			e := runEdge(t, dnsTable([]routing.Endpoint{
				{Region: "ap", URI: "sip:bot@agent.test"},
				backup.endpoint("us"),
			}, nil), withDNS(d, func(c *Config) { c.InviteTimeout = 2 * time.Second }), nil)
			carrier := newUA(t, "127.0.0.1")
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			ds, codes, err := carrier.call(ctx, e, numPurchased)
			if err != nil {
				t.Fatalf("call: %v (responses %v)", err, codes)
			}
			_ = ds.Ack(ctx)
			select {
			case line := <-firstGot:
				if !strings.HasPrefix(line, "INVITE sip:bot@agent.test ") {
					t.Errorf("first target got %q: the Request-URI must keep the domain", line)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the priority-10 SRV target got no INVITE")
			}
			winner, loser := second, backup
			if !tc.nextSame {
				winner, loser = backup, second
			}
			inv := recv(t, winner.invites, "INVITE at the target that answers")
			if got := header(inv, "X-Callgate-Region"); tc.nextSame && got != "ap" {
				t.Errorf("answered in region %q, want ap (the SRV endpoint)", got)
			}
			select {
			case r := <-loser.invites:
				t.Fatalf("an INVITE reached the wrong party: %s (Region %s)", r.StartLine(), header(r, "X-Callgate-Region"))
			default:
			}
			if err := ds.Bye(ctx); err != nil {
				t.Fatalf("BYE: %v", err)
			}
			recv(t, winner.byes, "BYE at the target that answered")
			if n := testutil.ToFloat64(e.metrics.Failovers.WithLabelValues("ap")); n != 1 {
				t.Errorf("failovers{ap} = %v, want 1", n)
			}
			if n := d.Count("agent.test", dns.TypeNAPTR); n != 1 {
				t.Errorf("%d NAPTR queries, want 1", n)
			}
		})
	}
}

// TestOutboundEgressSRV: a Twilio termination URI without a port
// (mytrunk.pstn.twilio.com, localized to the ashburn edge) is located by
// SRV; the first target answers 503, the call completes through the
// second, and the Request-URI keeps the termination's domain.
func TestOutboundEgressSRV(t *testing.T) {
	d := dnstest.Run(t)
	busy := newUA(t, "127.0.0.1", reject(503))
	term := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	srvTo(d, "mytrunk.pstn.ashburn.twilio.com", 60, busy.port, term.port)
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local"),
		twilioTerm: []string{"sip:mytrunk.pstn.twilio.com"}}.build(), "", withDNS(d, nil), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := agent.dial(ctx, e, numTwilioOut, destUS, agentPass)
	if err != nil {
		t.Fatalf("outbound call: %v", err)
	}
	_ = ds.Ack(ctx)
	recv(t, busy.invites, "INVITE at the first SRV target")
	inv := recv(t, term.invites, "INVITE at the second SRV target")
	if inv.Recipient.Host != "mytrunk.pstn.ashburn.twilio.com" || inv.Recipient.User != destUS || inv.Recipient.Port != 0 {
		t.Errorf("Request-URI %s, want %s@mytrunk.pstn.ashburn.twilio.com", inv.Recipient.String(), destUS)
	}
	recv(t, term.acks, "ACK at the termination")
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	recv(t, term.byes, "BYE at the termination")
}

// TestProbeSRVTargets: the prober probes a named endpoint's SRV targets:
// the first, and after a miss the next; the endpoint stays up while one
// answers and goes down when none does (its records changed to a dead
// target once their TTL passed).
func TestProbeSRVTargets(t *testing.T) {
	d := dnstest.Run(t)
	deadPort, deadGot := silentUDP(t)
	live := newUA(t, "127.0.0.1")
	srvTo(d, "probe.test", 1, deadPort, live.port)
	ep := routing.Endpoint{Region: "eu", URI: "sip:bot@probe.test"}
	e := runEdge(t, dnsTable([]routing.Endpoint{ep}, nil), withDNS(d, func(c *Config) {
		c.Probe = ProbeConfig{Interval: 250 * time.Millisecond, Timeout: 200 * time.Millisecond, DownAfter: 4, UpAfter: 1, Alpha: 0.5}
	}), nil)
	checkFor(t, 10*time.Second, func() error {
		if _, up, known := e.Prober().Endpoint(ep.URI); !known || !up {
			return fmt.Errorf("endpoint known=%v up=%v: the second SRV target answers", known, up)
		}
		return nil
	})
	select {
	case line := <-deadGot:
		if !strings.HasPrefix(line, "OPTIONS sip:bot@probe.test ") {
			t.Errorf("the first target got %q", line)
		}
	default:
		t.Error("the priority-10 target was never probed")
	}
	// several more rounds: the dead first target does not take it down
	rounds := 0
	deadline := time.Now().Add(20 * time.Second)
	for rounds < 5 && time.Now().Before(deadline) {
		select {
		case <-deadGot:
			rounds++
		case <-time.After(50 * time.Millisecond):
		}
		if _, up, _ := e.Prober().Endpoint(ep.URI); !up {
			t.Fatalf("down after %d probes of the dead target while the second target answers", rounds)
		}
	}
	if rounds < 5 {
		t.Fatalf("only %d probes reached the first target", rounds)
	}
	srvTo(d, "probe.test", 1, deadPort, deadPort)
	checkFor(t, 15*time.Second, func() error {
		if _, up, _ := e.Prober().Endpoint(ep.URI); up {
			return fmt.Errorf("still up with no target answering")
		}
		return nil
	})
}

// TestInDialogTargetBySRV: an in-dialog request toward a party whose
// Contact is a domain without a port (sip:caller@carrier-srv.test) goes
// where the domain's SRV record points: the agent's BYE reaches the
// carrier at the SRV target's port.
func TestInDialogTargetBySRV(t *testing.T) {
	d := dnstest.Run(t)
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), withDNS(d, nil), nil)
	carrier := newRaw(t, "127.0.0.1", net_(e))
	srvTo(d, "carrier-srv.test", 60, carrier.port())
	const callID = "srv-contact"
	inv := carrier.invite(e, numPurchased, callID, "")
	own := fmt.Sprintf("Contact: <sip:caller@127.0.0.1:%d>", carrier.port())
	if !strings.Contains(inv, own) {
		t.Fatalf("the raw INVITE has no %q", own)
	}
	carrier.send(strings.Replace(inv, own, "Contact: <sip:caller@carrier-srv.test>", 1))
	final := carrier.readFinal(5 * time.Second)
	m, err := sip.ParseMessage([]byte(final))
	if err != nil {
		t.Fatalf("final response %q: %v", statusLine(final), err)
	}
	res, ok := m.(*sip.Response)
	if !ok || res.StatusCode != 200 || res.Contact() == nil {
		t.Fatalf("final response %q, want a 200 with a Contact", statusLine(final))
	}
	ack := sip.NewRequest(sip.ACK, res.Contact().Address)
	ack.AppendHeader(sip.NewHeader("Via", fmt.Sprintf("SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-ack-%s;rport", carrier.port(), callID)))
	rr := res.GetHeaders("Record-Route")
	for i := len(rr) - 1; i >= 0; i-- { // the route set, as the caller sees it: reversed
		ack.AppendHeader(sip.NewHeader("Route", rr[i].Value()))
	}
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	ack.AppendHeader(sip.HeaderClone(res.From()))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	ack.AppendHeader(sip.HeaderClone(res.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.ACK})
	cl := sip.ContentLengthHeader(0)
	ack.AppendHeader(&cl)
	carrier.send(ack.String())
	recv(t, agent.acks, "ACK at the agent")

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	byeDone := make(chan error, 1)
	go func() { byeDone <- agent.session(callID).Bye(ctx) }()
	var bye *sip.Request
	deadline := time.Now().Add(10 * time.Second)
	for bye == nil && time.Now().Before(deadline) {
		raw := carrier.read(time.Until(deadline))
		if !strings.HasPrefix(raw, "BYE ") {
			continue // retransmitted 200s
		}
		m, err := sip.ParseMessage([]byte(raw))
		if err != nil {
			t.Fatalf("BYE %q: %v", statusLine(raw), err)
		}
		bye = m.(*sip.Request)
	}
	if bye == nil {
		t.Fatal("no BYE at the carrier's SRV target")
	}
	if bye.Recipient.Host != "carrier-srv.test" {
		t.Errorf("BYE Request-URI %s, want the Contact's domain", bye.Recipient.String())
	}
	carrier.send(sip.NewResponseFromRequest(bye, 200, "OK", nil).String())
	if err := <-byeDone; err != nil {
		t.Errorf("agent's BYE: %v", err)
	}
	if n := d.Count("_sip._udp.carrier-srv.test", dns.TypeSRV); n != 1 {
		t.Errorf("%d SRV queries for the carrier's Contact, want 1", n)
	}
}

// TestSIPSEndpointBySRV: a sips: endpoint (sips:bot@agents.test) is
// reached over TLS at its _sips._tcp SRV target, and the certificate is
// checked against the URI's domain (RFC 5922), not the SRV target's name
// (the agent's certificate names agents.test only).
func TestSIPSEndpointBySRV(t *testing.T) {
	d := dnstest.Run(t)
	ca := newTestCA(t)
	_, _, cert := ca.issueFor("agents", []string{"agents.test"})
	agent := newTLSAgent(t, cert, nil)
	port := agent.ln.Addr().(*net.TCPAddr).Port
	d.Set("tls1.agents.test", "127.0.0.1", 60)
	d.Records("_sips._tcp.agents.test", dns.TypeSRV, fmt.Sprintf("_sips._tcp.agents.test. 60 IN SRV 0 0 %d tls1.agents.test.", port))
	d.Records("_sip._udp.agents.test", dns.TypeSRV, "_sip._udp.agents.test. 60 IN SRV 0 0 5060 tls1.agents.test.")
	e, _ := runEdgeLogged(t, buildTable(routing.Endpoint{Region: "eu", URI: "sips:bot@agents.test"}),
		withDNS(d, func(c *Config) { c.TLSCAFile = ca.file }))
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "sips-srv", ""))
	if m := raw.readFinal(10 * time.Second); !strings.HasPrefix(m, "SIP/2.0 486") {
		t.Fatalf("final response %q, want the TLS agent's 486", statusLine(m))
	}
	if got := <-agent.invites; got != "sips-srv" {
		t.Errorf("agent got INVITE %q", got)
	}
	if n := d.Count("_sip._udp.agents.test", dns.TypeSRV); n != 0 {
		t.Errorf("_sip._udp asked %d times for a sips: endpoint", n)
	}
}

// TestFailoverToNextAddress: an endpoint named with a port whose name has
// two addresses is tried at the second when the first does not answer,
// before the agent's next endpoint.
func TestFailoverToNextAddress(t *testing.T) {
	d := dnstest.Run(t)
	agent := newUA(t, "127.0.0.1")
	backup := newUA(t, "127.0.0.1")
	silent := listenUDPAt(t, "127.0.0.2", agent.port) // the first address: reads, never answers
	d.Records("two.test", dns.TypeA, "two.test. 60 IN A 127.0.0.2", "two.test. 60 IN A 127.0.0.1")
	e := runEdge(t, dnsTable([]routing.Endpoint{
		{Region: "ap", URI: fmt.Sprintf("sip:bot@two.test:%d", agent.port)},
		backup.endpoint("us"),
	}, nil), withDNS(d, func(c *Config) { c.InviteTimeout = 2 * time.Second }), nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ds, codes, err := carrier.call(ctx, e, numPurchased)
	if err != nil {
		t.Fatalf("call: %v (responses %v)", err, codes)
	}
	_ = ds.Ack(ctx)
	if !readInvite(silent, ds.InviteRequest.CallID().Value(), 5*time.Second) {
		t.Error("the first address got no INVITE")
	}
	recv(t, agent.invites, "INVITE at the second address")
	select {
	case r := <-backup.invites:
		t.Fatalf("the next endpoint got the INVITE: %s", r.StartLine())
	default:
	}
	_ = ds.Bye(ctx)
	recv(t, agent.byes, "BYE at the second address")
}
