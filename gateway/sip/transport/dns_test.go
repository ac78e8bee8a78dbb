package transport

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/callgate/callgate/gateway/sip/transport/dnstest"
	"github.com/callgate/callgate/internal/testwait"
)

// testResolver is a resolver on d with a clock the test moves.
func testResolver(t testing.TB, d *dnstest.Server) (*resolver, *fakeClock) {
	t.Helper()
	r, err := newResolver(DNSConfig{Server: d.Addr, Timeout: 2 * time.Second})
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
	d := dnstest.Run(t)
	d.Set("agent.test", "127.0.0.1", 30)
	r, clk := testResolver(t, d)
	for i := 0; i < 3; i++ {
		a, err := r.lookup("agent.test")
		if err != nil || a != netip.MustParseAddr("127.0.0.1") {
			t.Fatalf("lookup %d = %v, %v", i, a, err)
		}
	}
	if n := d.Count("agent.test", dns.TypeA); n != 1 {
		t.Fatalf("%d queries for 3 lookups within the TTL, want 1", n)
	}
	d.Set("agent.test", "127.0.0.2", 30)
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
	if n := d.Count("agent.test", dns.TypeA); n != 2 {
		t.Fatalf("%d queries, want 2", n)
	}
}

// TestResolverNegativeAndIPv6: NXDOMAIN is cached briefly; a name with
// only an AAAA record resolves to it.
func TestResolverNegativeAndIPv6(t *testing.T) {
	d := dnstest.Run(t)
	d.Set("v6.test", "::1", 60)
	r, clk := testResolver(t, d)
	for i := 0; i < 2; i++ {
		if _, err := r.lookup("missing.test"); err == nil || !strings.Contains(err.Error(), "no such host") {
			t.Fatalf("lookup of a missing name: %v", err)
		}
	}
	if n := d.Count("missing.test", dns.TypeA); n != 1 {
		t.Fatalf("%d queries for a missing name looked up twice, want 1 (negative cache)", n)
	}
	clk.Add(dnsNegativeTTL + time.Second)
	_, _ = r.lookup("missing.test")
	if n := d.Count("missing.test", dns.TypeA); n != 2 {
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
	d := dnstest.Run(t)
	d.Set("busy.test", "127.0.0.1", 60)
	release := d.Hold("busy.test")
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
	testwait.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if d.Held("busy.test") == 0 {
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
	if n := d.Count("busy.test", dns.TypeA); n != 1 {
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

// TestResolverHostsAndSearch: /etc/hosts answers first (IPv4 preferred,
// re-read when it changes); short names get resolv.conf's search domains.
func TestResolverHostsAndSearch(t *testing.T) {
	d := dnstest.Run(t)
	d.Set("agent.corp.test", "127.0.0.3", 60)
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
	if n := d.Count("pbx.local", dns.TypeA); n != 0 {
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
