package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// RFC 3263 server location: the ordered targets (transport, address,
// port) a request for a URI may go to, tried in turn on 503, timeout or
// an unreachable address before the next endpoint:
//
//   - an IP literal: itself (port from the URI, else 5060/5061);
//   - a name with a port: its A (else AAAA) addresses, at that port;
//   - a name without a port: NAPTR (SIP+D2U, SIP+D2T, SIPS+D2T; only
//     SIPS+D2T for sips:; skipped when ;transport= is given), by order and
//     preference, each to its SRV name; else SRV _sip._udp, _sip._tcp,
//     _sips._tcp (sips: or ;transport=tls: _sips._tcp only; ;transport=
//     udp/tcp: that one); SRV records by priority, then weighted random
//     (RFC 2782); each target's addresses; no SRV at all: the name's
//     addresses at 5060 (5061 for TLS).
//
// Every record comes from the resolver's cache (kept for its TTL); in
// ResolveCached mode a record not cached is ErrNeedLookup, and LocateThen
// asks for everything a URI needs in one goroutine off the read loops.

// maxTargets bounds the targets of one URI (each may cost invite_timeout).
const maxTargets = 8

// Locate returns the targets for u in the order to try them; mode as for
// ResolveOpt. The TLS server name (Peer.Host) is the URI's host name
// (RFC 5922 4.1), not an SRV target's.
func (t *Transport) Locate(u *sip.Uri, mode ResolveMode) ([]Peer, error) {
	pr, err := URIProto(u)
	if err != nil {
		return nil, err
	}
	if u.Port < 0 || u.Port > 65535 {
		return nil, fmt.Errorf("sip: bad port %d", u.Port)
	}
	h := trimBrackets(u.Host)
	if h == "" {
		return nil, errors.New("sip: empty host")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return []Peer{{Proto: pr, Addr: netip.AddrPortFrom(a.Unmap(), portOr(u.Port, pr))}}, nil
	}
	if u.Port != 0 {
		return t.hostTargets(nil, h, pr, uint16(u.Port), h, mode)
	}
	var out []Peer
	var need error // a record to look up (cached mode)
	start := time.Now()
	srvs, err := t.srvNames(u, h, pr, mode)
	if err != nil {
		return nil, err
	}
	if mode == ResolveLookup {
		t.prefetchSRV(srvs)
	}
	for _, sn := range srvs {
		if mode == ResolveLookup && time.Since(start) > t.dns.timeout {
			// one lookup timeout for the whole URI: stop asking; what was
			// found is tried (the rest is asked when a call needs it)
			if len(out) == 0 {
				return nil, &dnsError{host: h, err: context.DeadlineExceeded}
			}
			break
		}
		e, err := t.dns.get(kindSRV, sn.name, mode)
		if err == ErrNeedLookup && mode == ResolveCached {
			need = err
			continue
		}
		if err != nil {
			continue
		}
		recs := e.srv
		if mode != ResolveLast {
			recs = orderSRV(recs)
		}
		for _, rec := range recs {
			if mode == ResolveLookup && time.Since(start) > t.dns.timeout && len(out) > 0 {
				break
			}
			var terr error
			out, terr = t.hostTargets(out, rec.target, sn.proto, rec.port, h, mode)
			if terr == ErrNeedLookup && mode == ResolveCached {
				need = terr
			}
			if len(out) >= maxTargets {
				return out[:maxTargets], nil
			}
		}
	}
	if need != nil {
		return nil, need
	}
	if len(out) > 0 {
		return out, nil
	}
	// no SRV: the name's own addresses
	return t.hostTargets(nil, h, pr, portOr(0, pr), h, mode)
}

// prefetchSRV asks for the first few SRV names at once (a lookup of a
// name without NAPTR asks three), so that Locate waits for one round trip
// rather than one per name.
func (t *Transport) prefetchSRV(srvs []srvName) {
	n := min(len(srvs), 3)
	if n < 2 {
		return
	}
	var wg sync.WaitGroup
	for _, sn := range srvs[:n] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = t.dns.get(kindSRV, sn.name, ResolveLookup)
		}()
	}
	wg.Wait()
}

// LastAddrs are every address u's targets had at their last lookup,
// expired or not (matching sources and dialog peers; never looks up).
func (t *Transport) LastAddrs(u *sip.Uri) []netip.Addr {
	var out []netip.Addr
	ps, _ := t.Locate(u, ResolveLast)
	for _, p := range ps {
		out = append(out, p.Addr.Addr())
	}
	if h := trimBrackets(u.Host); h != "" {
		if a, ok := t.dns.last(h); ok {
			out = append(out, a)
		}
	}
	return out
}

type srvName struct {
	name  string
	proto Proto
}

// srvNames are the SRV names to ask for u, in order: from its NAPTR
// records, else the default names for its scheme and transport.
func (t *Transport) srvNames(u *sip.Uri, h string, pr Proto, mode ResolveMode) ([]srvName, error) {
	sips := strings.EqualFold(u.Scheme, "sips")
	tp := ""
	if u.UriParams != nil {
		tp, _ = u.UriParams.Get("transport")
	}
	if tp != "" {
		return defaultSRV(h, pr, sips, true), nil
	}
	e, err := t.dns.get(kindNAPTR, h, mode)
	if err == ErrNeedLookup && mode == ResolveCached || isTimeout(err) {
		// a server that does not answer for NAPTR will not for the rest:
		// fail now rather than after one timeout per name
		return nil, resolveErr(h, err)
	}
	var out []srvName
	for _, n := range e.naptr {
		if sips && n.proto != TLS {
			continue
		}
		out = append(out, srvName{name: n.srvName, proto: n.proto})
	}
	if len(out) == 0 {
		out = defaultSRV(h, pr, sips, false)
	}
	return out, nil
}

func defaultSRV(h string, pr Proto, sips, explicit bool) []srvName {
	switch {
	case sips || pr == TLS:
		return []srvName{{"_sips._tcp." + h, TLS}}
	case explicit && pr == TCP:
		return []srvName{{"_sip._tcp." + h, TCP}}
	case explicit:
		return []srvName{{"_sip._udp." + h, UDP}}
	}
	return []srvName{{"_sip._udp." + h, UDP}, {"_sip._tcp." + h, TCP}, {"_sips._tcp." + h, TLS}}
}

// hostTargets appends name's addresses (A, else AAAA) at port to out.
// A name that does not resolve adds nothing: its error is returned when
// out is still empty (ErrNeedLookup always).
func (t *Transport) hostTargets(out []Peer, name string, pr Proto, port uint16, host string, mode ResolveMode) ([]Peer, error) {
	if maybeIP(name) { // an SRV target may be a literal
		if a, err := netip.ParseAddr(trimBrackets(name)); err == nil {
			return append(out, Peer{Proto: pr, Addr: netip.AddrPortFrom(a.Unmap(), port), Host: host}), nil
		}
	}
	e, err := t.dns.get(kindAddr, name, mode)
	if err != nil {
		if err == ErrNeedLookup || len(out) == 0 {
			return out, resolveErr(name, err)
		}
		return out, nil
	}
	addrs := e.addrs
	if len(addrs) == 0 && e.addr.IsValid() {
		addrs = []netip.Addr{e.addr} // /etc/hosts
	}
	for _, a := range addrs {
		if len(out) >= maxTargets {
			break
		}
		out = append(out, Peer{Proto: pr, Addr: netip.AddrPortFrom(a, port), Host: host})
	}
	return out, nil
}

// maybeIP: name could be an IP literal (a DNS name ends in a letter:
// parsing every SRV target as an address would cost an error each).
func maybeIP(name string) bool {
	if name == "" {
		return false
	}
	c := name[len(name)-1]
	return c >= '0' && c <= '9' || c == ']' || strings.IndexByte(name, ':') >= 0
}

func isTimeout(err error) bool {
	if err == nil || err == ErrNeedLookup || errors.Is(err, errNoRecords) || errors.Is(err, errNoSuchHost) ||
		errors.Is(err, errNoAddress) {
		return false
	}
	var ne net.Error
	return err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout())
}

func portOr(port int, pr Proto) uint16 {
	if port != 0 {
		return uint16(port)
	}
	if pr == TLS {
		return 5061
	}
	return 5060
}

// locateKey names the lookups Locate needs for u (LocateThen shares one
// goroutine among the callers waiting for the same ones).
func locateKey(u *sip.Uri) string {
	tp := ""
	if u.UriParams != nil {
		tp, _ = u.UriParams.Get("transport")
	}
	return "loc|" + strings.ToLower(u.Scheme) + "|" + strings.ToLower(tp) + "|" + strconv.FormatBool(u.Port != 0) +
		"|" + dnsKey(trimBrackets(u.Host))
}
