// Package dnstest is a DNS server for the tests of the SIP edge's
// resolver and of the calls that use it.
package dnstest

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is an authoritative DNS server on 127.0.0.1 (UDP, port 0) for
// tests: A/AAAA records by name (Set), any records in zone-file form
// (Records: NAPTR, SRV, several A, ...), NXDOMAIN for the rest, answers
// for held names delayed until released, and a count of queries.
type Server struct {
	t    testing.TB
	Addr string // ip:port

	mu      sync.Mutex
	recs    map[string]record        // fqdn → record
	rrs     map[string][]dns.RR      // "fqdn/TYPE" → records (Records)
	holds   map[string]chan struct{} // fqdn → closed when its answers may go
	queries map[string]int           // "fqdn/A" → queries received
	waiting map[string]int           // fqdn → queries being held
	done    chan struct{}            // closed at cleanup: held answers go
	srv     *dns.Server
}

type record struct {
	ip  string
	ttl uint32
}

// Run starts a Server, stopped when the test ends.
func Run(t testing.TB) *Server {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &Server{t: t, Addr: pc.LocalAddr().String(), recs: map[string]record{}, rrs: map[string][]dns.RR{}, holds: map[string]chan struct{}{},
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

// Set makes name resolve to ip (A or AAAA by its form) with ttl.
func (d *Server) Set(name, ip string, ttl uint32) {
	d.mu.Lock()
	d.recs[dns.Fqdn(name)] = record{ip: ip, ttl: ttl}
	d.mu.Unlock()
}

// Records sets the records of name and type qtype (replacing any): each
// one in zone-file form with its owner name and TTL, e.g.
// "_sip._udp.agent.test. 30 IN SRV 10 60 5060 a.agent.test.". None: the
// type is removed (the name stays if it has others).
func (d *Server) Records(name string, qtype uint16, rrs ...string) {
	d.t.Helper()
	var set []dns.RR
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			d.t.Fatalf("dnstest: record %q: %v", s, err)
		}
		set = append(set, rr)
	}
	k := strings.ToLower(dns.Fqdn(name)) + "/" + dns.TypeToString[qtype]
	d.mu.Lock()
	if len(set) == 0 {
		delete(d.rrs, k)
	} else {
		d.rrs[k] = set
	}
	d.mu.Unlock()
}

// Hold delays the answers for name until the returned func is called.
func (d *Server) Hold(name string) (release func()) {
	ch := make(chan struct{})
	d.mu.Lock()
	d.holds[dns.Fqdn(name)] = ch
	d.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// Count is the number of queries of qtype received for name.
func (d *Server) Count(name string, qtype uint16) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[dns.Fqdn(name)+"/"+dns.TypeToString[qtype]]
}

// Held is the number of queries for name being held.
func (d *Server) Held(name string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting[dns.Fqdn(name)]
}

func (d *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
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
	set := d.rrs[name+"/"+dns.TypeToString[q.Qtype]]
	if !ok {
		for k := range d.rrs {
			if strings.HasPrefix(k, name+"/") {
				ok = true // the name exists with other types
			}
		}
	}
	d.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(set) > 0 {
		for _, rr := range set {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
		_ = w.WriteMsg(m)
		return
	}
	if !ok {
		m.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	if rec.ip == "" {
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
