package transport

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

// MaxAsync bounds goroutines doing DNS lookups and TCP/TLS dials.
const MaxAsync = 64

// async runs f on its own goroutine unless MaxAsync are already running.
func (t *Transport) async(f func()) bool {
	if !t.acquire() {
		return false
	}
	t.run(f)
	return true
}

// acquire takes one of the MaxAsync slots (false: none free, counted).
func (t *Transport) acquire() bool {
	select {
	case t.sem <- struct{}{}:
		return true
	default:
		t.m.Dropped.WithLabelValues("busy").Inc()
		return false
	}
}

// run runs f on its own goroutine in a slot taken by acquire.
func (t *Transport) run(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.sem }()
		f()
	}()
}

// LookupThen resolves host in another goroutine and then calls then with
// the outcome (nil: the name is in the cache now), with no lock held.
// Every caller waiting for one name shares one goroutine (and one query),
// so a burst of calls to one endpoint takes one slot. false when the name
// needs a goroutine and MaxAsync are already running.
func (t *Transport) LookupThen(host string, then func(error)) bool {
	return t.lookupThen(dnsKey(trimBrackets(host)), func() error {
		_, err := t.resolve(host)
		return err
	}, then)
}

func (t *Transport) lookupThen(k string, look func() error, then func(error)) bool {
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
		err := look()
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

// ResolveMode says how far ResolveOpt may go for a host name.
type ResolveMode uint8

const (
	// ResolveCached: an unexpired cache entry, else ErrNeedLookup (read
	// loops, call locks).
	ResolveCached ResolveMode = iota
	// ResolveLast: the name's last known address even if expired, else
	// ErrNeedLookup (matching sources and peers, never a send).
	ResolveLast
	// ResolveLookup: a DNS lookup when needed (blocks up to the lookup
	// timeout: only in a goroutine of its own).
	ResolveLookup
)

// URIPeer resolves where a request for u goes: the first of its RFC 3263
// targets (locate.go). It may block on DNS lookups: never on a read loop
// or under a call's lock.
func (t *Transport) URIPeer(u *sip.Uri) (Peer, error) { return t.URIPeerOpt(u, ResolveLookup) }

// URIPeerCached is URIPeer without DNS: ErrNeedLookup for a record not in
// the cache (or expired there), the cached error for a name that failed.
func (t *Transport) URIPeerCached(u *sip.Uri) (Peer, error) { return t.URIPeerOpt(u, ResolveCached) }

func (t *Transport) URIPeerOpt(u *sip.Uri, mode ResolveMode) (Peer, error) {
	if a, err := netip.ParseAddr(trimBrackets(u.Host)); err == nil && u.Port >= 0 && u.Port <= 65535 {
		// an IP literal (most in-dialog targets): no DNS, no allocation
		pr, err := URIProto(u)
		return Peer{Proto: pr, Addr: netip.AddrPortFrom(a.Unmap(), portOr(u.Port, pr))}, err
	}
	ps, err := t.Locate(u, mode)
	if err != nil || len(ps) == 0 {
		pr, _ := URIProto(u)
		if err == nil {
			err = &dnsError{host: u.Host, err: errNoAddress}
		}
		return Peer{Proto: pr}, err
	}
	return ps[0], nil
}

// LocateThen looks up every record Locate needs for u in another
// goroutine and then calls then with the outcome (nil: Locate(u,
// ResolveCached) answers from the cache now), with no lock held. Callers
// waiting for the same lookups share one goroutine; false when it needs
// one and MaxAsync are already running.
func (t *Transport) LocateThen(u *sip.Uri, then func(error)) bool {
	uc := *u
	return t.lookupThen(locateKey(&uc), func() error {
		_, err := t.Locate(&uc, ResolveLookup)
		return err
	}, then)
}

func (t *Transport) resolve(host string) (netip.Addr, error) {
	return t.ResolveOpt(host, ResolveLookup)
}

func (t *Transport) ResolveOpt(host string, mode ResolveMode) (netip.Addr, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), nil
	}
	if h == "" {
		return netip.Addr{}, errors.New("sip: empty host")
	}
	switch mode {
	case ResolveLast:
		if a, ok := t.dns.last(h); ok {
			return a, nil
		}
		return netip.Addr{}, ErrNeedLookup
	case ResolveCached:
		if a, ok, err := t.dns.cached(h); ok {
			return a, err
		}
		return netip.Addr{}, ErrNeedLookup
	}
	return t.dns.lookup(h)
}

// IsResolveErr reports whether err is a host name that did not resolve.
func IsResolveErr(err error) bool {
	var de *dnsError
	return errors.As(err, &de)
}

// URIProto is the transport a request for u uses.
func URIProto(u *sip.Uri) (Proto, error) {
	tp := ""
	if u.UriParams != nil {
		tp, _ = u.UriParams.Get("transport")
	}
	if !strings.EqualFold(u.Scheme, "sip") && !strings.EqualFold(u.Scheme, "sips") {
		return UDP, fmt.Errorf("sip: cannot route to a %q URI", u.Scheme)
	}
	switch {
	case strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(tp, "tls"):
		return TLS, nil
	case strings.EqualFold(tp, "tcp"):
		return TCP, nil
	case tp == "" || strings.EqualFold(tp, "udp"):
		return UDP, nil
	}
	return UDP, fmt.Errorf("sip: unsupported transport %q", tp)
}

// ViaPeer is where a response goes by its (next) Via: received/rport
// when present (RFC 3261 18.2.2, RFC 3581), else sent-by.
func (t *Transport) ViaPeer(v *sip.ViaHeader) (Peer, error) { return t.ViaPeerOpt(v, ResolveLookup) }

func (t *Transport) ViaPeerOpt(v *sip.ViaHeader, mode ResolveMode) (Peer, error) {
	var p Peer
	switch strings.ToUpper(v.Transport) {
	case "TCP":
		p.Proto = TCP
	case "TLS":
		p.Proto = TLS
	case "UDP", "":
		p.Proto = UDP
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
	a, err := t.ResolveOpt(host, mode)
	if err != nil {
		return p, err
	}
	if port == 0 {
		port = 5060
		if p.Proto == TLS {
			port = 5061
		}
	}
	p.Addr = netip.AddrPortFrom(a.Unmap(), uint16(port))
	if p.Proto != UDP {
		t.mu.Lock()
		p.Conn = t.streams[streamKey{p.Proto, p.Addr}]
		t.mu.Unlock()
	}
	return p, nil
}
