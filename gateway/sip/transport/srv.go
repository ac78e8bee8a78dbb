package transport

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// NAPTR and SRV records (RFC 3403, RFC 2782) for RFC 3263 server location
// (locate.go): asked, cached and ordered here, in the resolver's one
// cache (keys "naptr|name", "srv|name", beside the plain names of A/AAAA
// answers), for their TTL, through the same singleflight.

// naptrRec is one NAPTR record of a supported SIP service.
type naptrRec struct {
	order, pref uint16
	proto       Proto
	srvName     string // replacement: the SRV name to ask (lower case, no trailing dot)
}

// srvRec is one SRV record.
type srvRec struct {
	prio, weight, port uint16
	target             string // lower case, no trailing dot
}

// rrKind is what a cache entry holds.
type rrKind uint8

const (
	kindAddr rrKind = iota
	kindNAPTR
	kindSRV
)

func rrKey(kind rrKind, name string) string {
	switch kind {
	case kindNAPTR:
		return "naptr|" + dnsKey(name)
	case kindSRV:
		return "srv|" + dnsKey(name)
	}
	return dnsKey(name)
}

// naptrServices are the NAPTR services callgate can use (RFC 3263 4.1:
// UDP, TCP, TLS over TCP), by their service field.
var naptrServices = map[string]Proto{"SIP+D2U": UDP, "SIP+D2T": TCP, "SIPS+D2T": TLS}

// get returns the entry of kind for name. ResolveCached: unexpired, else
// ErrNeedLookup; ResolveLast: the last answer, expired or not, else
// ErrNeedLookup; ResolveLookup: asked when needed (blocks: never on a read
// loop or under a call's lock). A negative answer comes as its error
// (unwrapped: see resolveErr).
func (r *resolver) get(kind rrKind, name string, mode ResolveMode) (dnsEntry, error) {
	k := rrKey(kind, name)
	if k == "" || strings.HasSuffix(k, "|") {
		return dnsEntry{}, errors.New("sip: empty host")
	}
	r.mu.RLock()
	e, found := r.cache[k]
	r.mu.RUnlock()
	switch {
	case found && r.now().Before(e.expires):
	case mode == ResolveLast && found:
	case mode != ResolveLookup:
		return dnsEntry{}, ErrNeedLookup
	case kind == kindAddr:
		if _, err := r.lookup(name); err != nil {
			return dnsEntry{}, err
		}
		r.mu.RLock()
		e = r.cache[k]
		r.mu.RUnlock()
	default:
		v, _, _ := r.sf.Do(k, func() (any, error) {
			r.mu.RLock()
			e, found := r.cache[k]
			r.mu.RUnlock()
			if found && r.now().Before(e.expires) {
				return e, nil
			}
			e = r.fetchRR(kind, name)
			r.store(k, e)
			return e, nil
		})
		e = v.(dnsEntry)
	}
	if e.err != nil {
		if mode == ResolveLast && (len(e.srv) > 0 || len(e.naptr) > 0 || e.addr.IsValid()) {
			return e, nil
		}
		return e, e.err // unwrapped (no allocation): resolveErr wraps what is returned
	}
	return e, nil
}

// resolveErr is err of a lookup of host as returned to callers (a
// *dnsError, for IsResolveErr), ErrNeedLookup as it is.
func resolveErr(host string, err error) error {
	var de *dnsError
	if err == nil || err == ErrNeedLookup || errors.As(err, &de) {
		return err
	}
	return &dnsError{host: host, err: err}
}

// fetchRR asks the DNS servers for name's NAPTR or SRV records (no
// search list: RFC 3263 names are fully qualified).
func (r *resolver) fetchRR(kind rrKind, name string) dnsEntry {
	ctx, cancel := context.WithTimeout(r.ctx, r.timeout)
	defer cancel()
	qt := dns.TypeSRV
	if kind == kindNAPTR {
		qt = dns.TypeNAPTR
	}
	in, now, err := r.exchange(ctx, dns.Fqdn(name), qt)
	if in == nil {
		return dnsEntry{err: err, expires: r.now().Add(dnsFailTTL)}
	}
	if in.Rcode == dns.RcodeNameError {
		return dnsEntry{err: errNoSuchHost, expires: now.Add(negativeTTL(in))}
	}
	e := dnsEntry{}
	ttl := dnsMaxTTL
	for _, rr := range in.Answer {
		switch v := rr.(type) {
		case *dns.NAPTR:
			p, ok := naptrServices[strings.ToUpper(v.Service)]
			if !ok || !strings.EqualFold(v.Flags, "s") || v.Replacement == "." || v.Replacement == "" {
				continue // another service, or not a terminal SRV step
			}
			e.naptr = append(e.naptr, naptrRec{order: v.Order, pref: v.Preference, proto: p,
				srvName: dnsKey(v.Replacement)})
		case *dns.SRV:
			if v.Target == "." || v.Target == "" || v.Port == 0 {
				continue // "service not available here" (RFC 2782)
			}
			e.srv = append(e.srv, srvRec{prio: v.Priority, weight: v.Weight, port: v.Port, target: dnsKey(v.Target)})
		case *dns.CNAME:
		default:
			continue
		}
		if d := time.Duration(rr.Header().Ttl) * time.Second; d < ttl {
			ttl = d
		}
	}
	if len(e.naptr) == 0 && len(e.srv) == 0 {
		return dnsEntry{err: errNoRecords, expires: now.Add(negativeTTL(in))}
	}
	slices.SortFunc(e.srv, func(a, b srvRec) int { // canonical: a reshuffled answer is no change
		if a.prio != b.prio {
			return int(a.prio) - int(b.prio)
		}
		if c := strings.Compare(a.target, b.target); c != 0 {
			return c
		}
		return int(a.port) - int(b.port)
	})
	slices.SortStableFunc(e.naptr, func(a, b naptrRec) int {
		if a.order != b.order {
			return int(a.order) - int(b.order)
		}
		return int(a.pref) - int(b.pref)
	})
	// keep the most preferred (lowest priority, lowest order)
	e.srv = e.srv[:min(len(e.srv), maxSRV)]
	e.naptr = e.naptr[:min(len(e.naptr), maxSRV)]
	e.expires = now.Add(max(ttl, dnsMinTTL))
	return e
}

// maxSRV bounds the NAPTR and SRV records kept per name.
const maxSRV = 16

var errNoRecords = errors.New("no records of that type")

// sameRecords reports whether a and b hold the same NAPTR and SRV records
// (a change moves the agent address set, like a changed address).
func sameRecords(a, b dnsEntry) bool {
	if !slices.Equal(a.naptr, b.naptr) || !slices.Equal(a.srv, b.srv) || len(a.addrs) != len(b.addrs) {
		return false
	}
	// the same addresses in another order (DNS round robin) are no change
	x, y := slices.Clone(a.addrs), slices.Clone(b.addrs)
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}

// orderSRV returns recs in the order to try them (RFC 2782): by priority,
// lowest first, and within one priority a weighted random order (a
// record's chance to come next is its weight over the sum of the weights
// left; weight 0 records get a small chance, after the others mostly).
func orderSRV(recs []srvRec) []srvRec {
	if len(recs) < 2 {
		return recs // nothing to order (recs is the cache's: never changed)
	}
	out := slices.Clone(recs)
	slices.SortStableFunc(out, func(a, b srvRec) int { return int(a.prio) - int(b.prio) })
	for start := 0; start < len(out); {
		end := start
		for end < len(out) && out[end].prio == out[start].prio {
			end++
		}
		group := out[start:end]
		// RFC 2782: zero-weight records first, then pick by running sums
		slices.SortStableFunc(group, func(a, b srvRec) int {
			return min(int(a.weight), 1) - min(int(b.weight), 1)
		})
		for i := range group {
			sum := 0
			for _, x := range group[i:] {
				sum += int(x.weight)
			}
			n := 0
			if sum > 0 {
				n = rand.IntN(sum + 1)
			}
			run := 0
			for j := i; j < len(group); j++ {
				run += int(group[j].weight)
				if run >= n {
					group[i], group[j] = group[j], group[i]
					// keep the rest in their order (zero weights first)
					slices.SortStableFunc(group[i+1:], func(a, b srvRec) int {
						return min(int(a.weight), 1) - min(int(b.weight), 1)
					})
					break
				}
			}
		}
		start = end
	}
	return out
}
