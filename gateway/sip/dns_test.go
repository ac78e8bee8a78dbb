package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// testDNS is an authoritative DNS server on 127.0.0.1 (UDP, port 0) for
// the tests: A/AAAA records by name, NXDOMAIN for the rest, answers for
// held names delayed until released, and a count of queries.
type testDNS struct {
	t    testing.TB
	addr string

	mu      sync.Mutex
	recs    map[string]testRec       // fqdn → record
	holds   map[string]chan struct{} // fqdn → closed when its answers may go
	queries map[string]int           // "fqdn/A" → queries received
	waiting map[string]int           // fqdn → queries being held
	done    chan struct{}            // closed at cleanup: held answers go
	srv     *dns.Server
}

type testRec struct {
	ip  string
	ttl uint32
}

func runTestDNS(t testing.TB) *testDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &testDNS{t: t, addr: pc.LocalAddr().String(), recs: map[string]testRec{}, holds: map[string]chan struct{}{},
		queries: map[string]int{}, waiting: map[string]int{}, done: make(chan struct{})}
	started := make(chan struct{})
	d.srv = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve), NotifyStartedFunc: func() { close(started) }}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = d.srv.ActivateAndServe()
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("test DNS server did not start")
	}
	t.Cleanup(func() {
		close(d.done)
		_ = d.srv.Shutdown()
		<-served
	})
	return d
}

func (d *testDNS) set(name, ip string, ttl uint32) {
	d.mu.Lock()
	d.recs[dns.Fqdn(name)] = testRec{ip: ip, ttl: ttl}
	d.mu.Unlock()
}

// hold delays the answers for name until the returned func is called.
func (d *testDNS) hold(name string) (release func()) {
	ch := make(chan struct{})
	d.mu.Lock()
	d.holds[dns.Fqdn(name)] = ch
	d.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

func (d *testDNS) count(name string, qtype uint16) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[dns.Fqdn(name)+"/"+dns.TypeToString[qtype]]
}

func (d *testDNS) held(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting[dns.Fqdn(name)]
}

func (d *testDNS) serve(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	d.mu.Lock()
	d.queries[name+"/"+dns.TypeToString[q.Qtype]]++
	hold := d.holds[name]
	d.mu.Unlock()
	if hold != nil {
		d.mu.Lock()
		d.waiting[name]++
		d.mu.Unlock()
		select {
		case <-hold:
		case <-d.done:
		}
		d.mu.Lock()
		d.waiting[name]--
		d.mu.Unlock()
	}
	d.mu.Lock()
	rec, ok := d.recs[name]
	d.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if !ok {
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	ip := net.ParseIP(rec.ip)
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: rec.ttl}
	switch {
	case q.Qtype == dns.TypeA && ip.To4() != nil:
		hdr.Rrtype = dns.TypeA
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip.To4()})
	case q.Qtype == dns.TypeAAAA && ip.To4() == nil:
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
	}
	_ = w.WriteMsg(m)
}

// testResolver is a resolver on d with a clock the test moves.
func testResolver(t testing.TB, d *testDNS) (*resolver, *fakeClock) {
	t.Helper()
	r, err := newResolver(DNSConfig{Server: d.addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r.hosts.path = ""
	clk := &fakeClock{now: time.Now()}
	r.now = clk.Now
	t.Cleanup(r.close)
	return r, clk
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestResolverTTL: an answer is served from the cache for its TTL and
// asked again after it; a changed record is then used.
func TestResolverTTL(t *testing.T) {
	d := runTestDNS(t)
	d.set("agent.test", "127.0.0.1", 30)
	r, clk := testResolver(t, d)
	for i := 0; i < 3; i++ {
		a, err := r.lookup("agent.test")
		if err != nil || a != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("lookup %d = %v, %v", i, a, err)
		}
	}
	if n := d.count("agent.test", dns.TypeA); n != 1 {
		t.Fatalf("%d queries for 3 lookups within the TTL, want 1", n)
	}
	d.set("agent.test", "127.0.0.2", 30)
	clk.Add(29 * time.Second)
	if a, ok, err := r.cached("agent.test"); !ok || err != nil || a != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("before the TTL: cached = %v, %v, %v", a, err, ok)
	}
	clk.Add(2 * time.Second)
	if _, ok, _ := r.cached("agent.test"); ok {
		t.Fatal("answer still cached after its TTL")
	}
	if a, _ := r.last("agent.test"); a != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("last = %v, want the expired address", a)
	}
	a, err := r.lookup("AGENT.test.")
	if err != nil || a != netip.MustParseAddr("127.0.0.2") {
		t.Fatalf("after the TTL: %v, %v", a, err)
	}
	if n := d.count("agent.test", dns.TypeA); n != 2 {
		t.Fatalf("%d queries, want 2", n)
	}
}

// TestResolverNegativeAndIPv6: NXDOMAIN is cached briefly; a name with
// only an AAAA record resolves to it.
func TestResolverNegativeAndIPv6(t *testing.T) {
	d := runTestDNS(t)
	d.set("v6.test", "::1", 60)
	r, clk := testResolver(t, d)
	for i := 0; i < 2; i++ {
		if _, err := r.lookup("missing.test"); err == nil || !strings.Contains(err.Error(), "no such host") {
			t.Fatalf("lookup of a missing name: %v", err)
		}
	}
	if n := d.count("missing.test", dns.TypeA); n != 1 {
		t.Fatalf("%d queries for a missing name looked up twice, want 1 (negative cache)", n)
	}
	clk.Add(dnsNegativeTTL + time.Second)
	_, _ = r.lookup("missing.test")
	if n := d.count("missing.test", dns.TypeA); n != 2 {
		t.Fatalf("negative answer kept past %v: %d queries", dnsNegativeTTL, n)
	}
	a, err := r.lookup("v6.test")
	if err != nil || a != netip.MustParseAddr("::1") {
		t.Fatalf("v6.test = %v, %v", a, err)
	}
}

// TestResolverCoalescesAndCaps: concurrent lookups of one name make one
// query; the cache never holds more than dnsMaxEntries names.
func TestResolverCoalescesAndCaps(t *testing.T) {
	d := runTestDNS(t)
	d.set("busy.test", "127.0.0.1", 60)
	release := d.hold("busy.test")
	r, clk := testResolver(t, d)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.lookup("busy.test"); err != nil {
				errs <- err
			}
		}()
	}
	checkFor(t, 5*time.Second, func() error {
		if d.held("busy.test") == 0 {
			return fmt.Errorf("no query held yet")
		}
		return nil
	})
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := d.count("busy.test", dns.TypeA); n != 1 {
		t.Fatalf("%d queries for 20 concurrent lookups, want 1", n)
	}

	for i := 0; i < dnsMaxEntries+100; i++ {
		r.store(fmt.Sprintf("n%d.test", i), dnsEntry{addr: netip.MustParseAddr("127.0.0.1"), expires: clk.Now().Add(time.Hour)})
	}
	r.mu.RLock()
	n := len(r.cache)
	r.mu.RUnlock()
	if n > dnsMaxEntries {
		t.Fatalf("cache holds %d names, cap %d", n, dnsMaxEntries)
	}
}

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

func withDNS(d *testDNS, more func(*Config)) func(*Config) {
	return func(c *Config) {
		c.DNS.Server = d.addr
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
	d := runTestDNS(t)
	agentA, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer agentA.Close()
	port := agentA.LocalAddr().(*net.UDPAddr).Port
	agentB := listenUDPAt(t, "127.0.0.2", port)
	const ttl = 2
	d.set("agent.test", "127.0.0.1", ttl)
	e := runEdge(t, dnsTable([]routing.Endpoint{{Region: "eu", URI: fmt.Sprintf("sip:bot@agent.test:%d", port)}}, nil),
		withDNS(d, nil), nil)
	carrier := newRaw(t, "127.0.0.1", net_(e))

	carrier.send(carrier.invite(e, numPurchased, "ttl-1", ""))
	if !readInvite(agentA, "ttl-1", 5*time.Second) {
		t.Fatal("first call: no INVITE at 127.0.0.1")
	}
	answered := time.Now()
	if n := d.count("agent.test", dns.TypeA); n != 1 {
		t.Fatalf("%d queries after the first call, want 1", n)
	}
	carrier.send(carrier.invite(e, numPurchased, "ttl-2", ""))
	if !readInvite(agentA, "ttl-2", 5*time.Second) {
		t.Fatal("second call within the TTL: no INVITE at 127.0.0.1")
	}
	if time.Since(answered) < ttl*time.Second*3/4 { // (a stalled machine may have let the TTL pass)
		if n := d.count("agent.test", dns.TypeA); n != 1 {
			t.Fatalf("%d queries for two calls within the TTL, want 1", n)
		}
	}

	d.set("agent.test", "127.0.0.2", ttl)
	deadline := time.Now().Add(15 * time.Second)
	for i := 3; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no call reached the new address 127.0.0.2 (%d queries)", d.count("agent.test", dns.TypeA))
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
	if n := d.count("agent.test", dns.TypeA); n != 2 {
		t.Fatalf("%d queries, want 2 (one more after the TTL)", n)
	}
}

// TestReadLoopServesDuringLookup: with one UDP read loop, a call whose
// endpoint's name takes long to resolve does not hold up another call
// to an IP endpoint; once the name resolves the first call goes on.
func TestReadLoopServesDuringLookup(t *testing.T) {
	d := runTestDNS(t)
	slowAgent := newUA(t, "127.0.0.1")
	fastAgent := newUA(t, "127.0.0.1")
	d.set("slow.test", "127.0.0.1", 60)
	release := d.hold("slow.test")
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
		if d.held("slow.test") == 0 {
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
			d := runTestDNS(t)
			if tc.hold {
				d.set(tc.name, "127.0.0.1", 60)
				defer d.hold(tc.name)()
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
	d := runTestDNS(t)
	agent := newUA(t, "127.0.0.1")
	d.set("shared.test", "127.0.0.1", 60)
	release := d.hold("shared.test")
	defer release()
	e := runEdge(t, dnsTable([]routing.Endpoint{{Region: "eu", URI: fmt.Sprintf("sip:bot@shared.test:%d", agent.port)}}, nil),
		withDNS(d, func(c *Config) {
			c.InviteTimeout = 10 * time.Second
			c.DNS.Timeout = 20 * time.Second
		}), nil)
	const n = maxAsync + 16
	carrier := newRaw(t, "127.0.0.1", net_(e))
	for i := 0; i < n; i++ {
		carrier.send(carrier.invite(e, numPurchased, fmt.Sprintf("same-%d", i), ""))
	}
	checkFor(t, 5*time.Second, func() error {
		if e.ActiveCalls() != n || d.held("shared.test") == 0 {
			return fmt.Errorf("%d calls waiting, %d queries held", e.ActiveCalls(), d.held("shared.test"))
		}
		return nil
	})
	release()
	seen := map[string]bool{}
	for len(seen) < n {
		inv := recv(t, agent.invites, "INVITE at the agent")
		seen[inv.CallID().Value()] = true
	}
	if q := d.count("shared.test", dns.TypeA); q != 1 {
		t.Fatalf("%d DNS queries for %d concurrent calls, want 1", q, n)
	}
}

// TestNamedAgentSourceAccepted: an agent endpoint named by a host name,
// at an address no trunk lists, is let through the source filter once
// its name has resolved, even when the filter's agent addresses were
// built for this snapshot before (its answers would otherwise be refused
// and the call time out).
func TestNamedAgentSourceAccepted(t *testing.T) {
	d := runTestDNS(t)
	agent := newUA(t, "127.0.0.2")
	d.set("agent2.test", "127.0.0.2", 60)
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
	d := runTestDNS(t)
	fast := newUA(t, "127.0.0.1")
	slow := newUA(t, "127.0.0.1")
	d.set("slowprobe.test", "127.0.0.1", 60)
	release := d.hold("slowprobe.test")
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
		if d.held("slowprobe.test") == 0 {
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
	d := runTestDNS(t)
	d.set("carrier.test", "127.0.0.1", 60)
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), withDNS(d, nil), nil)
	car := dialCarrier(t, e, false)
	local := car.c.LocalAddr().String()
	const callID = "named-contact"
	car.write(fmt.Sprintf("INVITE sip:%s@127.0.0.1:%d SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP %s;branch=z9hG4bK-named\r\nMax-Forwards: 70\r\n"+
		"From: <sip:+15005550006@127.0.0.1>;tag=car\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: %s\r\n"+
		"CSeq: 1 INVITE\r\nContact: <sip:carrier@carrier.test:%d;transport=tcp>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		numPurchased, e.TCPAddr().Port(), local, numPurchased, callID, deadPort(t), len(testSDP), testSDP))
	ok := car.next("200 to the INVITE", func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == 200
	}).(*sip.Response)
	var rr []string
	for _, h := range ok.GetHeaders("Record-Route") {
		rr = append([]string{h.Value()}, rr...)
	}
	ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK-named-ack\r\nMax-Forwards: 70\r\n",
		ok.Contact().Address.String(), local)
	for _, r := range rr {
		ack += "Route: " + r + "\r\n"
	}
	ack += fmt.Sprintf("From: <sip:+15005550006@127.0.0.1>;tag=car\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		ok.To().Value(), callID)
	car.write(ack)
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
	if n := d.count("carrier.test", dns.TypeA); n != 1 {
		t.Errorf("%d queries for the carrier's Contact, want 1", n)
	}
}

// TestResolverHostsAndSearch: /etc/hosts answers first (IPv4 preferred,
// re-read when it changes); short names get resolv.conf's search domains.
func TestResolverHostsAndSearch(t *testing.T) {
	d := runTestDNS(t)
	d.set("agent.corp.test", "127.0.0.3", 60)
	r, clk := testResolver(t, d)
	hosts := t.TempDir() + "/hosts"
	if err := os.WriteFile(hosts, []byte("# comment\n::1 pbx.local\n127.0.0.9 pbx.local PBX2.local # alias\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.hosts.path = hosts
	for name, want := range map[string]string{"pbx.local": "127.0.0.9", "pbx2.local": "127.0.0.9"} {
		if a, err := r.lookup(name); err != nil || a != netip.MustParseAddr(want) {
			t.Errorf("%s = %v, %v; want %s from the hosts file", name, a, err, want)
		}
	}
	if n := d.count("pbx.local", dns.TypeA); n != 0 {
		t.Errorf("%d DNS queries for a name in the hosts file", n)
	}
	if err := os.WriteFile(hosts, []byte("127.0.0.10 pbx.local\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clk.Add(hostsTTL + time.Second)
	if a, err := r.lookup("pbx.local"); err != nil || a != netip.MustParseAddr("127.0.0.10") {
		t.Errorf("after the hosts file changed: %v, %v", a, err)
	}

	r.search, r.ndots = []string{"other.test", "corp.test"}, 1
	if got := r.names("agent"); strings.Join(got, " ") != "agent.other.test. agent.corp.test. agent." {
		t.Errorf("names(agent) = %v", got)
	}
	if got := r.names("agent.corp.test"); got[0] != "agent.corp.test." {
		t.Errorf("names(agent.corp.test) = %v: a name with ndots dots is tried as is first", got)
	}
	if a, err := r.lookup("agent"); err != nil || a != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("agent via the search list = %v, %v", a, err)
	}
}
