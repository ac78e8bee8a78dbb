package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// The SIP edge resolves host names (agent endpoint URIs, Contacts, Vias)
// through one resolver: a cache that keeps an answer for its records'
// TTL, negative answers briefly, a bounded number of names, and one
// query at a time per name (concurrent lookups wait for the same answer).
// Nothing on a read loop or under a call's lock waits for it: those paths
// read the cache (resolveCached) and, on a miss, look up in another
// goroutine (transport.async) and carry on from there.

// DNSConfig is the resolver of the SIP edge (`sip.dns`).
type DNSConfig struct {
	// Server is the DNS server host names are resolved through (ip or
	// ip:port, port 53 by default); empty: the nameservers, search list
	// and ndots of /etc/resolv.conf. /etc/hosts is consulted first either way.
	Server string `yaml:"server" default:"(/etc/resolv.conf)" help:"DNS server (ip or ip:port) for host names in agent URIs, carrier termination URIs, Contacts and Vias (RFC 3263: NAPTR, SRV, A/AAAA); answers are cached for their TTL"`
	// Timeout bounds one lookup (every server and search name tried); a
	// call then fails over to its next endpoint.
	Timeout time.Duration `yaml:"timeout" help:"bound on one host-name lookup; a call then fails over to its next endpoint"`
}

const (
	DefaultDNSTimeout = 2 * time.Second
	dnsMaxEntries     = 10000           // names cached
	dnsMinTTL         = time.Second     // a TTL of 0 is kept this long (concurrent calls share it)
	dnsMaxTTL         = time.Hour       // longer TTLs are cut to this
	dnsNegativeTTL    = 5 * time.Second // no such name / no address (or the SOA minimum, if lower)
	dnsFailTTL        = time.Second     // no answer (timeout, SERVFAIL, REFUSED)
	hostsTTL          = 5 * time.Second // an /etc/hosts answer
	hostsRecheck      = time.Second     // /etc/hosts is re-read when it changed, at most this often
	resolvConfPath    = "/etc/resolv.conf"
	hostsPath         = "/etc/hosts"
	dnsUDPSize        = dns.DefaultMsgSize // EDNS0 buffer size advertised
	dnsMaxAddrs       = 4                  // addresses kept per name (failover tries them in turn)
)

// dnsError is a host name that could not be resolved (the "resolve"
// stage of a send).
type dnsError struct {
	host string
	err  error
}

func (e *dnsError) Error() string { return fmt.Sprintf("sip: resolve %q: %v", e.host, e.err) }
func (e *dnsError) Unwrap() error { return e.err }

var (
	errNoSuchHost = errors.New("no such host")
	errNoAddress  = errors.New("no address for the name")
)

type dnsEntry struct {
	addr    netip.Addr   // valid: a positive answer
	addrs   []netip.Addr // every address of the answer (addr first), at most dnsMaxAddrs
	naptr   []naptrRec   // a NAPTR answer (srv.go), supported services only
	srv     []srvRec     // an SRV answer (srv.go)
	err     error        // a negative answer
	expires time.Time
}

type resolver struct {
	servers []string // host:port, tried in order
	search  []string // search domains (fully qualified), resolv.conf mode only
	ndots   int
	timeout time.Duration
	client  *dns.Client
	tcp     *dns.Client // retry of a truncated answer
	hosts   hostsFile
	now     func() time.Time

	ctx    context.Context // cancelled by close: pending lookups end
	cancel context.CancelFunc

	sf    singleflight.Group
	mu    sync.RWMutex
	cache map[string]dnsEntry // lower-case name → answer

	// gen counts the times a name got a new address (the agent address
	// set is rebuilt when it moves).
	gen atomic.Uint64
}

func newResolver(cfg DNSConfig) (*resolver, error) {
	r := &resolver{timeout: cfg.Timeout, ndots: 1, now: time.Now, cache: map[string]dnsEntry{},
		hosts: hostsFile{path: hostsPath}}
	if r.timeout <= 0 {
		r.timeout = DefaultDNSTimeout
	}
	if cfg.Server != "" {
		s, err := DNSServerAddr(cfg.Server)
		if err != nil {
			return nil, err
		}
		r.servers = []string{s}
	} else if cc, err := dns.ClientConfigFromFile(resolvConfPath); err == nil && len(cc.Servers) > 0 {
		for _, s := range cc.Servers {
			r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
		}
		for _, d := range cc.Search {
			if d = strings.TrimSuffix(d, "."); d != "" {
				r.search = append(r.search, d)
			}
		}
		r.ndots = cc.Ndots
	} else {
		// like Go's resolver without a resolv.conf
		r.servers = []string{"127.0.0.1:53", "[::1]:53"}
	}
	// each server gets its share of the lookup timeout (the client's own
	// default, 2 s per exchange, would cut a longer one short)
	perServer := max(r.timeout/time.Duration(len(r.servers)), 100*time.Millisecond)
	r.client = &dns.Client{Net: "udp", UDPSize: dnsUDPSize, Timeout: perServer}
	r.tcp = &dns.Client{Net: "tcp", Timeout: perServer}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// DNSServerAddr is a sip.dns.server value as host:port.
func DNSServerAddr(s string) (string, error) {
	if a, err := netip.ParseAddr(trimBrackets(s)); err == nil {
		return netip.AddrPortFrom(a, 53).String(), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 {
		return "", fmt.Errorf("%q is not an IP address or ip:port", s)
	}
	return ap.String(), nil
}

func (r *resolver) close() { r.cancel() }

func dnsKey(host string) string { return strings.ToLower(strings.TrimSuffix(host, ".")) }

// cached is the unexpired answer for host: an address, or the error of a
// negative answer; ok is false when the name must be looked up.
func (r *resolver) cached(host string) (a netip.Addr, ok bool, err error) {
	k := dnsKey(host)
	r.mu.RLock()
	e, found := r.cache[k]
	r.mu.RUnlock()
	if !found || !r.now().Before(e.expires) {
		return netip.Addr{}, false, nil
	}
	if e.err != nil {
		return netip.Addr{}, true, &dnsError{host: host, err: e.err}
	}
	return e.addr, true, nil
}

// last is host's address from its last positive answer, expired or not
// (the matching of sources and dialog peers, which never looks up).
func (r *resolver) last(host string) (netip.Addr, bool) {
	r.mu.RLock()
	e, ok := r.cache[dnsKey(host)]
	r.mu.RUnlock()
	return e.addr, ok && e.addr.IsValid()
}

// lookup resolves host, from the cache when its answer is unexpired;
// concurrent lookups of one name share one query. It blocks up to the
// lookup timeout: never call it on a read loop or with a call's lock held.
func (r *resolver) lookup(host string) (netip.Addr, error) {
	if a, ok, err := r.cached(host); ok {
		return a, err
	}
	k := dnsKey(host)
	if k == "" {
		return netip.Addr{}, errors.New("sip: empty host")
	}
	v, _, _ := r.sf.Do(k, func() (any, error) {
		r.mu.RLock()
		e, found := r.cache[k]
		r.mu.RUnlock()
		if found && r.now().Before(e.expires) {
			return e, nil // answered while this waited for its turn
		}
		e = r.fetch(k)
		r.store(k, e)
		return e, nil
	})
	e := v.(dnsEntry)
	if e.err != nil {
		return netip.Addr{}, &dnsError{host: host, err: e.err}
	}
	return e.addr, nil
}

func (r *resolver) store(k string, e dnsEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.cache[k]
	if !had && len(r.cache) >= dnsMaxEntries {
		now := r.now()
		for n, x := range r.cache {
			if !now.Before(x.expires) {
				delete(r.cache, n)
			}
		}
		for n := range r.cache { // all unexpired: drop one at random
			if len(r.cache) < dnsMaxEntries {
				break
			}
			delete(r.cache, n)
		}
	}
	if e.err != nil && old.addr.IsValid() {
		// keep the last address for source/peer matching (last), with
		// the negative answer's expiry
		e.addr = old.addr
	}
	r.cache[k] = e
	if e.err == nil && (e.addr != old.addr || !sameRecords(e, old)) {
		r.gen.Add(1)
	}
}

// fetch asks /etc/hosts, then the DNS servers, for a name (each search
// name in turn when it has fewer than ndots dots).
func (r *resolver) fetch(name string) dnsEntry {
	now := r.now()
	if a, ok := r.hosts.lookup(name, now); ok {
		return dnsEntry{addr: a, expires: now.Add(hostsTTL)}
	}
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	var first *dnsEntry
	for _, fq := range r.names(name) {
		e := r.query(ctx, fq)
		if e.err == nil {
			return e
		}
		if first == nil || errors.Is(first.err, errNoSuchHost) && !errors.Is(e.err, errNoSuchHost) {
			first = &e // report a failure over "no such host" of a search name
		}
		if ctx.Err() != nil {
			break
		}
	}
	return *first
}

// names are the fully qualified names tried for name (resolv.conf rules).
func (r *resolver) names(name string) []string {
	if len(r.search) == 0 {
		return []string{dns.Fqdn(name)}
	}
	out := make([]string, 0, len(r.search)+1)
	if strings.Count(name, ".") >= r.ndots {
		out = append(out, dns.Fqdn(name))
	}
	for _, d := range r.search {
		out = append(out, dns.Fqdn(name+"."+d))
	}
	if strings.Count(name, ".") < r.ndots {
		out = append(out, dns.Fqdn(name))
	}
	return out
}

// query resolves one fully qualified name: A first (IPv4 is preferred,
// as before), AAAA when the name has no A record.
func (r *resolver) query(ctx context.Context, fq string) dnsEntry {
	e, empty := r.queryType(ctx, fq, dns.TypeA)
	if !empty {
		return e
	}
	e6, empty6 := r.queryType(ctx, fq, dns.TypeAAAA)
	if !empty6 || e6.err != nil && !errors.Is(e6.err, errNoAddress) {
		return e6
	}
	return e
}

// queryType asks the servers in turn for fq's records of type qt. empty
// is true when the name exists without such a record.
func (r *resolver) queryType(ctx context.Context, fq string, qt uint16) (e dnsEntry, empty bool) {
	in, now, err := r.exchange(ctx, fq, qt)
	if in == nil {
		return dnsEntry{err: err, expires: r.now().Add(dnsFailTTL)}, false
	}
	if in.Rcode == dns.RcodeNameError {
		return dnsEntry{err: errNoSuchHost, expires: now.Add(negativeTTL(in))}, false
	}
	ttl := dnsMaxTTL
	var addr netip.Addr
	var addrs []netip.Addr
	for _, rr := range in.Answer {
		var ip net.IP
		switch v := rr.(type) {
		case *dns.A:
			ip = v.A
		case *dns.AAAA:
			ip = v.AAAA
		case *dns.CNAME:
		default:
			continue
		}
		if d := time.Duration(rr.Header().Ttl) * time.Second; d < ttl {
			ttl = d
		}
		if a, ok := netip.AddrFromSlice(ip); ok && rr.Header().Rrtype == qt && len(addrs) < dnsMaxAddrs {
			if !addr.IsValid() {
				addr = a.Unmap()
			}
			addrs = append(addrs, a.Unmap())
		}
	}
	if !addr.IsValid() {
		return dnsEntry{err: errNoAddress, expires: now.Add(negativeTTL(in))}, true
	}
	if ttl < dnsMinTTL {
		ttl = dnsMinTTL
	}
	return dnsEntry{addr: addr, addrs: addrs, expires: now.Add(ttl)}, false
}

// exchange asks the servers in turn for fq's records of type qt. in is
// the first answer that is NOERROR or NXDOMAIN, with the time it came;
// nil with the last error (a transport error, or another rcode) when no
// server gave one.
func (r *resolver) exchange(ctx context.Context, fq string, qt uint16) (in *dns.Msg, at time.Time, err error) {
	m := new(dns.Msg)
	m.SetQuestion(fq, qt)
	m.SetEdns0(dnsUDPSize, false)
	for _, srv := range r.servers {
		in, _, err = r.client.ExchangeContext(ctx, m, srv)
		if err == nil && in.Truncated {
			in, _, err = r.tcp.ExchangeContext(ctx, m, srv)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if in.Rcode == dns.RcodeSuccess || in.Rcode == dns.RcodeNameError {
			return in, r.now(), nil
		}
		err = fmt.Errorf("server %s answered %s", srv, dns.RcodeToString[in.Rcode])
	}
	if err == nil {
		err = ctx.Err()
	}
	return nil, time.Time{}, err
}

// negativeTTL is how long a negative answer is kept: its SOA's minimum
// (RFC 2308), at most dnsNegativeTTL.
func negativeTTL(m *dns.Msg) time.Duration {
	ttl := dnsNegativeTTL
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			d := time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
			if d < ttl {
				ttl = d
			}
		}
	}
	if ttl < dnsMinTTL {
		ttl = dnsMinTTL
	}
	return ttl
}

// hostsFile answers names from /etc/hosts, re-read when it changes.
type hostsFile struct {
	path    string
	mu      sync.Mutex
	checked time.Time
	mod     time.Time
	size    int64
	byName  map[string]netip.Addr
}

func (h *hostsFile) lookup(name string, now time.Time) (netip.Addr, bool) {
	if h.path == "" {
		return netip.Addr{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.checked) >= hostsRecheck || h.checked.IsZero() {
		h.checked = now
		if fi, err := os.Stat(h.path); err != nil {
			h.byName = nil
		} else if !fi.ModTime().Equal(h.mod) || fi.Size() != h.size {
			h.mod, h.size = fi.ModTime(), fi.Size()
			h.byName = readHosts(h.path)
		}
	}
	a, ok := h.byName[name]
	return a, ok
}

// readHosts maps each name in a hosts file to its first IPv4 address,
// else its first address.
func readHosts(path string) map[string]netip.Addr {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	m := map[string]netip.Addr{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		fs := strings.Fields(line)
		if len(fs) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fs[0])
		if err != nil {
			continue
		}
		a = a.WithZone("").Unmap()
		for _, n := range fs[1:] {
			n = dnsKey(n)
			if old, ok := m[n]; !ok || !old.Is4() && a.Is4() {
				m[n] = a
			}
		}
	}
	return m
}
