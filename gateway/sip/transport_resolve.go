package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// The transport layer's addressing: where a request for a URI, or a
// response by its Via, goes; host names through the resolver's cache
// (dns.go), with lookups run off the read loops in a bounded number of
// goroutines shared by every caller waiting for one name.

// maxAsync bounds goroutines doing DNS lookups and TCP/TLS dials.
const maxAsync = 64

// async runs f on its own goroutine unless maxAsync are already running.
func (t *transport) async(f func()) bool {
	if !t.acquire() {
		return false
	}
	t.run(f)
	return true
}

// acquire takes one of the maxAsync slots (false: none free, counted).
func (t *transport) acquire() bool {
	select {
	case t.sem <- struct{}{}:
		return true
	default:
		t.m.Dropped.WithLabelValues("busy").Inc()
		return false
	}
}

// run runs f on its own goroutine in a slot taken by acquire.
func (t *transport) run(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.sem }()
		f()
	}()
}

// lookupThen resolves host in another goroutine and then calls then with
// the outcome (nil: the name is in the cache now), with no lock held.
// Every caller waiting for one name shares one goroutine (and one query),
// so a burst of calls to one endpoint takes one slot. false when the name
// needs a goroutine and maxAsync are already running.
func (t *transport) lookupThen(host string, then func(error)) bool {
	k := dnsKey(trimBrackets(host))
	t.lmu.Lock()
	if w, ok := t.lookups[k]; ok {
		t.lookups[k] = append(w, then)
		t.lmu.Unlock()
		return true
	}
	if !t.acquire() {
		t.lmu.Unlock()
		return false
	}
	if t.lookups == nil {
		t.lookups = map[string][]func(error){}
	}
	t.lookups[k] = []func(error){then}
	t.lmu.Unlock()
	t.run(func() {
		_, err := t.resolve(host)
		t.lmu.Lock()
		waiting := t.lookups[k]
		delete(t.lookups, k)
		t.lmu.Unlock()
		for _, f := range waiting {
			f(err)
		}
	})
	return true
}

// resolveMode says how far resolveOpt may go for a host name.
type resolveMode uint8

const (
	// resolveCached: an unexpired cache entry, else errNeedLookup (read
	// loops, call locks).
	resolveCached resolveMode = iota
	// resolveLast: the name's last known address even if expired, else
	// errNeedLookup (matching sources and peers, never a send).
	resolveLast
	// resolveLookup: a DNS lookup when needed (blocks up to the lookup
	// timeout: only in a goroutine of its own).
	resolveLookup
)

// uriPeer resolves where a request for u goes (RFC 3263 without DNS
// SRV/NAPTR: IP literals, or a host name resolved through the cache).
// It may block on a DNS lookup: never on a read loop or under a call's lock.
func (t *transport) uriPeer(u *sip.Uri) (peer, error) { return t.uriPeerOpt(u, resolveLookup) }

// uriPeerCached is uriPeer without DNS: errNeedLookup for a name not in
// the cache (or expired there), the cached error for a name that failed.
func (t *transport) uriPeerCached(u *sip.Uri) (peer, error) { return t.uriPeerOpt(u, resolveCached) }

func (t *transport) uriPeerOpt(u *sip.Uri, mode resolveMode) (peer, error) {
	var p peer
	pr, err := uriProto(u)
	if err != nil {
		return p, err
	}
	p.proto = pr
	a, err := t.resolveOpt(u.Host, mode)
	if err != nil {
		return p, err
	}
	if h := trimBrackets(u.Host); h != a.String() {
		if _, err := netip.ParseAddr(h); err != nil {
			p.host = h // a name: the TLS server name
		}
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if p.proto == protoTLS {
			port = 5061
		}
	}
	if port < 0 || port > 65535 {
		return p, fmt.Errorf("sip: bad port %d", port)
	}
	p.addr = netip.AddrPortFrom(a, uint16(port))
	return p, nil
}

func (t *transport) resolve(host string) (netip.Addr, error) {
	return t.resolveOpt(host, resolveLookup)
}

func (t *transport) resolveOpt(host string, mode resolveMode) (netip.Addr, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), nil
	}
	if h == "" {
		return netip.Addr{}, errors.New("sip: empty host")
	}
	switch mode {
	case resolveLast:
		if a, ok := t.dns.last(h); ok {
			return a, nil
		}
		return netip.Addr{}, errNeedLookup
	case resolveCached:
		if a, ok, err := t.dns.cached(h); ok {
			return a, err
		}
		return netip.Addr{}, errNeedLookup
	}
	return t.dns.lookup(h)
}

// isResolveErr reports whether err is a host name that did not resolve.
func isResolveErr(err error) bool {
	var de *dnsError
	return errors.As(err, &de)
}

// uriProto is the transport a request for u uses.
func uriProto(u *sip.Uri) (proto, error) {
	tp := ""
	if u.UriParams != nil {
		tp, _ = u.UriParams.Get("transport")
	}
	if !strings.EqualFold(u.Scheme, "sip") && !strings.EqualFold(u.Scheme, "sips") {
		return protoUDP, fmt.Errorf("sip: cannot route to a %q URI", u.Scheme)
	}
	switch {
	case strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(tp, "tls"):
		return protoTLS, nil
	case strings.EqualFold(tp, "tcp"):
		return protoTCP, nil
	case tp == "" || strings.EqualFold(tp, "udp"):
		return protoUDP, nil
	}
	return protoUDP, fmt.Errorf("sip: unsupported transport %q", tp)
}

// viaPeer is where a response goes by its (next) Via: received/rport
// when present (RFC 3261 18.2.2, RFC 3581), else sent-by.
func (t *transport) viaPeer(v *sip.ViaHeader) (peer, error) { return t.viaPeerOpt(v, resolveLookup) }

func (t *transport) viaPeerOpt(v *sip.ViaHeader, mode resolveMode) (peer, error) {
	var p peer
	switch strings.ToUpper(v.Transport) {
	case "TCP":
		p.proto = protoTCP
	case "TLS":
		p.proto = protoTLS
	case "UDP", "":
		p.proto = protoUDP
	default:
		return p, fmt.Errorf("sip: unsupported Via transport %q", v.Transport)
	}
	host := v.Host
	port := v.Port
	if v.Params != nil {
		if r, ok := v.Params.Get("received"); ok && r != "" {
			host = r
		}
		if r, ok := v.Params.Get("rport"); ok && r != "" {
			n := 0
			for i := 0; i < len(r) && n < 70000; i++ {
				if r[i] < '0' || r[i] > '9' {
					n = -1
					break
				}
				n = n*10 + int(r[i]-'0')
			}
			if n > 0 && n < 65536 {
				port = n
			}
		}
	}
	a, err := t.resolveOpt(host, mode)
	if err != nil {
		return p, err
	}
	if port == 0 {
		port = 5060
		if p.proto == protoTLS {
			port = 5061
		}
	}
	p.addr = netip.AddrPortFrom(a.Unmap(), uint16(port))
	if p.proto != protoUDP {
		t.mu.Lock()
		p.conn = t.streams[streamKey{p.proto, p.addr}]
		t.mu.Unlock()
	}
	return p, nil
}
