package transport

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/miekg/dns"

	"github.com/callgate/callgate/gateway/sip/transport/dnstest"
)

// locTransport is a Transport whose resolver asks d (no listeners: Locate
// and LocateThen only).
func locTransport(t *testing.T, d *dnstest.Server) (*Transport, *fakeClock) {
	t.Helper()
	r, clk := testResolver(t, d)
	return &Transport{dns: r, m: testMetrics(), sem: make(chan struct{}, MaxAsync)}, clk
}

func uri(t *testing.T, s string) *sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return &u
}

// locate looks u up (as LocateThen does) and returns what the cache then
// gives, as "PROTO addr" strings.
func locate(t *testing.T, tp *Transport, u *sip.Uri) []string {
	t.Helper()
	done := make(chan error, 1)
	if !tp.LocateThen(u, func(err error) { done <- err }) {
		t.Fatal("LocateThen: busy")
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("locate %s: %v", u, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("locate %s: no answer", u)
	}
	return cachedTargets(t, tp, u)
}

func cachedTargets(t *testing.T, tp *Transport, u *sip.Uri) []string {
	t.Helper()
	ps, err := tp.Locate(u, ResolveCached)
	if err != nil {
		t.Fatalf("Locate(%s) from the cache: %v", u, err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.Proto.String()+" "+p.Addr.String())
	}
	return out
}

// TestLocateSRVPriority: SRV targets are tried lowest priority first,
// each target's addresses in turn; the TLS server name stays the URI's
// host; nothing is asked on the cached path.
func TestLocateSRVPriority(t *testing.T) {
	d := dnstest.Run(t)
	d.Records("_sip._udp.agent.test", dns.TypeSRV,
		"_sip._udp.agent.test. 60 IN SRV 20 100 5080 b.agent.test.",
		"_sip._udp.agent.test. 60 IN SRV 10 100 5070 a.agent.test.")
	d.Records("a.agent.test", dns.TypeA, "a.agent.test. 60 IN A 127.0.0.1", "a.agent.test. 60 IN A 127.0.0.3")
	d.Set("b.agent.test", "127.0.0.2", 60)
	d.Set("agent.test", "127.0.0.9", 60) // used only without SRV
	tp, _ := locTransport(t, d)
	u := uri(t, "sip:bot@agent.test")
	if _, err := tp.Locate(u, ResolveCached); err != ErrNeedLookup {
		t.Fatalf("cached Locate before any lookup: %v, want ErrNeedLookup", err)
	}
	want := "UDP 127.0.0.1:5070,UDP 127.0.0.3:5070,UDP 127.0.0.2:5080"
	if got := strings.Join(locate(t, tp, u), ","); got != want {
		t.Fatalf("targets = %s, want %s", got, want)
	}
	queries := d.Count("_sip._udp.agent.test", dns.TypeSRV)
	for i := 0; i < 50; i++ {
		if got := strings.Join(cachedTargets(t, tp, u), ","); got != want {
			t.Fatalf("lookup %d: targets = %s, want %s", i, got, want)
		}
	}
	if n := d.Count("_sip._udp.agent.test", dns.TypeSRV); n != queries || n != 1 {
		t.Fatalf("%d SRV queries, want 1 (the rest from the cache)", n)
	}
	p, err := tp.URIPeerCached(u)
	if err != nil || p.Addr.String() != "127.0.0.1:5070" || p.Host != "agent.test" {
		t.Fatalf("URIPeerCached = %+v, %v; want the first target, server name agent.test", p, err)
	}
	if n := d.Count("agent.test", dns.TypeA); n != 0 {
		t.Fatalf("%d A queries for the SRV domain itself, want 0", n)
	}
}

// TestLocateSRVWeights: within one priority, a target comes first in
// proportion to its weight (RFC 2782); a weight-0 target rarely does.
func TestLocateSRVWeights(t *testing.T) {
	d := dnstest.Run(t)
	d.Records("_sip._udp.w.test", dns.TypeSRV,
		"_sip._udp.w.test. 60 IN SRV 10 80 5060 heavy.w.test.",
		"_sip._udp.w.test. 60 IN SRV 10 20 5060 light.w.test.",
		"_sip._udp.w.test. 60 IN SRV 10 0 5060 zero.w.test.",
		"_sip._udp.w.test. 60 IN SRV 30 50 5060 backup.w.test.")
	d.Set("heavy.w.test", "127.0.0.1", 60)
	d.Set("light.w.test", "127.0.0.2", 60)
	d.Set("zero.w.test", "127.0.0.3", 60)
	d.Set("backup.w.test", "127.0.0.4", 60)
	tp, _ := locTransport(t, d)
	u := uri(t, "sip:w.test")
	locate(t, tp, u)
	first := map[string]int{}
	const n = 4000
	for i := 0; i < n; i++ {
		ts := cachedTargets(t, tp, u)
		if len(ts) != 4 || ts[3] != "UDP 127.0.0.4:5060" {
			t.Fatalf("targets %v: want 4, the priority-30 one last", ts)
		}
		first[ts[0]]++
	}
	heavy, light, zero := first["UDP 127.0.0.1:5060"], first["UDP 127.0.0.2:5060"], first["UDP 127.0.0.3:5060"]
	t.Logf("first of %d: heavy %d, light %d, zero %d", n, heavy, light, zero)
	// expected 80/101, 20/101, 1/101 of n (3168, 792, 40)
	if heavy < n*70/100 || heavy > n*87/100 {
		t.Errorf("weight 80 came first %d times of %d, want ~79%%", heavy, n)
	}
	if light < n*13/100 || light > n*27/100 {
		t.Errorf("weight 20 came first %d times of %d, want ~20%%", light, n)
	}
	if zero > n*4/100 {
		t.Errorf("weight 0 came first %d times of %d, want ~1%%", zero, n)
	}
}

// TestLocateNAPTR: NAPTR records pick the transports (order, then
// preference; services we cannot use and non-terminal records skipped);
// a sips: URI takes only SIPS+D2T; without NAPTR a sips: URI asks
// _sips._tcp only.
func TestLocateNAPTR(t *testing.T) {
	d := dnstest.Run(t)
	d.Records("carrier.test", dns.TypeNAPTR,
		`carrier.test. 60 IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.carrier.test.`,
		`carrier.test. 60 IN NAPTR 10 20 "s" "SIP+D2T" "" _sip._tcp.carrier.test.`,
		`carrier.test. 60 IN NAPTR 10 10 "s" "SIPS+D2T" "" _sips._tcp.carrier.test.`,
		`carrier.test. 60 IN NAPTR 5 10 "s" "SIP+D2S" "" _sip._sctp.carrier.test.`,
		`carrier.test. 60 IN NAPTR 5 10 "u" "E2U+sip" "!^.*$!sip:x@y!" .`)
	d.Records("_sips._tcp.carrier.test", dns.TypeSRV, "_sips._tcp.carrier.test. 60 IN SRV 0 0 5061 tls.carrier.test.")
	d.Records("_sip._tcp.carrier.test", dns.TypeSRV, "_sip._tcp.carrier.test. 60 IN SRV 0 0 5062 tcp.carrier.test.")
	d.Records("_sip._udp.carrier.test", dns.TypeSRV, "_sip._udp.carrier.test. 60 IN SRV 0 0 5063 udp.carrier.test.")
	d.Set("tls.carrier.test", "127.0.0.1", 60)
	d.Set("tcp.carrier.test", "127.0.0.2", 60)
	d.Set("udp.carrier.test", "127.0.0.3", 60)
	tp, _ := locTransport(t, d)

	want := "TLS 127.0.0.1:5061,TCP 127.0.0.2:5062,UDP 127.0.0.3:5063"
	if got := strings.Join(locate(t, tp, uri(t, "sip:+15550001@carrier.test")), ","); got != want {
		t.Errorf("sip: targets = %s, want %s", got, want)
	}
	if n := d.Count("_sip._sctp.carrier.test", dns.TypeSRV); n != 0 {
		t.Errorf("SCTP SRV asked %d times: not a transport we support", n)
	}
	if got := strings.Join(locate(t, tp, uri(t, "sips:+15550001@carrier.test")), ","); got != "TLS 127.0.0.1:5061" {
		t.Errorf("sips: targets = %s, want only SIPS+D2T", got)
	}

	// no NAPTR, sips: only _sips._tcp is asked
	d.Records("secure.test", dns.TypeA, "secure.test. 60 IN A 127.0.0.9")
	d.Records("_sips._tcp.secure.test", dns.TypeSRV, "_sips._tcp.secure.test. 60 IN SRV 0 0 6061 tls.carrier.test.")
	d.Records("_sip._udp.secure.test", dns.TypeSRV, "_sip._udp.secure.test. 60 IN SRV 0 0 6060 udp.carrier.test.")
	if got := strings.Join(locate(t, tp, uri(t, "sips:secure.test")), ","); got != "TLS 127.0.0.1:6061" {
		t.Errorf("sips:secure.test targets = %s, want TLS from _sips._tcp", got)
	}
	if n := d.Count("_sip._udp.secure.test", dns.TypeSRV); n != 0 {
		t.Errorf("_sip._udp asked %d times for a sips: URI", n)
	}
	// without NAPTR a sip: URI takes UDP, TCP and TLS SRV records in that order
	if got := strings.Join(locate(t, tp, uri(t, "sip:secure.test")), ","); got != "UDP 127.0.0.3:6060,TLS 127.0.0.1:6061" {
		t.Errorf("sip:secure.test targets = %s", got)
	}
}

// TestLocateExplicitPortAndTransport: a port means A/AAAA only (no NAPTR,
// no SRV); ;transport= skips NAPTR and asks that transport's SRV name; a
// name without any SRV falls back to its own address on 5060/5061.
func TestLocateExplicitPortAndTransport(t *testing.T) {
	d := dnstest.Run(t)
	d.Set("pbx.test", "127.0.0.5", 60)
	d.Records("pbx.test", dns.TypeNAPTR, `pbx.test. 60 IN NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.pbx.test.`)
	d.Records("_sip._udp.pbx.test", dns.TypeSRV, "_sip._udp.pbx.test. 60 IN SRV 0 0 7000 pbx.test.")
	d.Records("_sip._tcp.pbx.test", dns.TypeSRV, "_sip._tcp.pbx.test. 60 IN SRV 0 0 7001 pbx.test.")
	d.Set("plain.test", "127.0.0.6", 60)
	tp, _ := locTransport(t, d)

	if got := strings.Join(locate(t, tp, uri(t, "sip:pbx.test:5099")), ","); got != "UDP 127.0.0.5:5099" {
		t.Errorf("explicit port: %s", got)
	}
	if n, m := d.Count("pbx.test", dns.TypeNAPTR), d.Count("_sip._udp.pbx.test", dns.TypeSRV); n+m != 0 {
		t.Errorf("explicit port: %d NAPTR and %d SRV queries, want none", n, m)
	}
	if got := strings.Join(locate(t, tp, uri(t, "sip:pbx.test;transport=tcp")), ","); got != "TCP 127.0.0.5:7001" {
		t.Errorf(";transport=tcp: %s", got)
	}
	if n := d.Count("pbx.test", dns.TypeNAPTR); n != 0 {
		t.Errorf(";transport=tcp: %d NAPTR queries, want none", n)
	}
	if got := strings.Join(locate(t, tp, uri(t, "sip:pbx.test")), ","); got != "UDP 127.0.0.5:7000" {
		t.Errorf("NAPTR → SRV: %s", got)
	}
	if got := strings.Join(locate(t, tp, uri(t, "sip:plain.test")), ","); got != "UDP 127.0.0.6:5060" {
		t.Errorf("no SRV: %s", got)
	}
	if got := strings.Join(locate(t, tp, uri(t, "sip:plain.test;transport=tls")), ","); got != "TLS 127.0.0.6:5061" {
		t.Errorf("no SRV, TLS: %s", got)
	}
	if got := strings.Join(locate(t, tp, uri(t, "sip:[::1]")), ","); got != "UDP [::1]:5060" {
		t.Errorf("IPv6 literal: %s", got)
	}
	u := uri(t, "sip:missing.test")
	done := make(chan error, 1)
	tp.LocateThen(u, func(err error) { done <- err })
	if err := <-done; !IsResolveErr(err) {
		t.Errorf("a name with no records: %v, want a resolve error", err)
	}
}

// TestLocateTTL: SRV records are served from the cache for their TTL,
// then asked again; the new records are used.
func TestLocateTTL(t *testing.T) {
	d := dnstest.Run(t)
	d.Records("ttl.test", dns.TypeNAPTR, `ttl.test. 300 IN NAPTR 10 10 "s" "SIP+D2U" "" _sip._udp.ttl.test.`)
	d.Records("_sip._udp.ttl.test", dns.TypeSRV, "_sip._udp.ttl.test. 30 IN SRV 0 0 5070 a.ttl.test.")
	d.Set("a.ttl.test", "127.0.0.1", 300)
	d.Set("b.ttl.test", "127.0.0.2", 300)
	tp, clk := locTransport(t, d)
	u := uri(t, "sip:ttl.test")
	if got := strings.Join(locate(t, tp, u), ","); got != "UDP 127.0.0.1:5070" {
		t.Fatalf("targets = %s", got)
	}
	d.Records("_sip._udp.ttl.test", dns.TypeSRV, "_sip._udp.ttl.test. 30 IN SRV 0 0 5080 b.ttl.test.")
	clk.Add(25 * time.Second)
	if got := strings.Join(cachedTargets(t, tp, u), ","); got != "UDP 127.0.0.1:5070" {
		t.Fatalf("within the TTL: %s, want the cached target", got)
	}
	if n := d.Count("_sip._udp.ttl.test", dns.TypeSRV); n != 1 {
		t.Fatalf("%d SRV queries within the TTL, want 1", n)
	}
	clk.Add(6 * time.Second)
	if _, err := tp.Locate(u, ResolveCached); err != ErrNeedLookup {
		t.Fatalf("after the TTL: %v, want ErrNeedLookup", err)
	}
	if got := strings.Join(locate(t, tp, u), ","); got != "UDP 127.0.0.2:5080" {
		t.Fatalf("after the TTL: %s, want the new record's target", got)
	}
	if n := d.Count("_sip._udp.ttl.test", dns.TypeSRV); n != 2 {
		t.Fatalf("%d SRV queries, want 2", n)
	}
	// the expired answer still names the target for source matching
	var addrs []string
	for _, a := range tp.LastAddrs(u) {
		addrs = append(addrs, a.String())
	}
	if !strings.Contains(fmt.Sprint(addrs), "127.0.0.2") {
		t.Fatalf("LastAddrs = %v, want the SRV target's address", addrs)
	}
	if a := netip.MustParseAddr("127.0.0.2"); tp.dns.gen.Load() == 0 {
		t.Fatalf("generation not moved by a changed SRV set (%v)", a)
	}
}

// TestLocateSilentServer: when the DNS server does not answer the NAPTR
// query, the URI fails after that one lookup timeout with a resolve error
// (the call moves on) instead of asking every SRV name and the address in
// turn, each waiting out its own timeout.
func TestLocateSilentServer(t *testing.T) {
	d := dnstest.Run(t)
	d.Set("slow.test", "127.0.0.1", 60)
	release := d.Hold("slow.test")
	defer release()
	r, err := newResolver(DNSConfig{Server: d.Addr, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r.hosts.path = ""
	t.Cleanup(r.close)
	tp := &Transport{dns: r, m: testMetrics(), sem: make(chan struct{}, MaxAsync)}
	done := make(chan error, 1)
	tp.LocateThen(uri(t, "sip:bot@slow.test"), func(err error) { done <- err })
	select {
	case err := <-done:
		if !IsResolveErr(err) || !isTimeout(err) {
			t.Fatalf("locate with a silent server: %v, want a resolve error (timeout)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no outcome")
	}
	for _, n := range []string{"_sip._udp.slow.test", "_sip._tcp.slow.test", "_sips._tcp.slow.test"} {
		if c := d.Count(n, dns.TypeSRV); c != 0 {
			t.Errorf("%s asked %d times after NAPTR timed out", n, c)
		}
	}
	if c := d.Count("slow.test", dns.TypeA); c != 0 {
		t.Errorf("A asked %d times after NAPTR timed out", c)
	}
}

// BenchmarkLocateCached: the per-call cost of an SRV endpoint's targets
// from the cache (no NAPTR, three SRV names, two targets).
func BenchmarkLocateCached(b *testing.B) {
	d := dnstest.Run(b)
	d.Records("_sip._udp.bench.test", dns.TypeSRV,
		"_sip._udp.bench.test. 3600 IN SRV 10 60 5060 a.bench.test.",
		"_sip._udp.bench.test. 3600 IN SRV 10 40 5060 b.bench.test.")
	d.Set("a.bench.test", "127.0.0.1", 3600)
	d.Set("b.bench.test", "127.0.0.2", 3600)
	r, err := newResolver(DNSConfig{Server: d.Addr})
	if err != nil {
		b.Fatal(err)
	}
	r.hosts.path = ""
	b.Cleanup(r.close)
	tp := &Transport{dns: r}
	var u sip.Uri
	_ = sip.ParseUri("sip:bot@bench.test", &u)
	if _, err := tp.Locate(&u, ResolveLookup); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if ps, err := tp.Locate(&u, ResolveCached); err != nil || len(ps) != 2 {
			b.Fatal(ps, err)
		}
	}
}
