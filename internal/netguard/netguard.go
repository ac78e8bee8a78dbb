// Package netguard keeps requests to user-supplied URLs (messaging
// deliveries, routing hooks) away from internal addresses: every
// connection is judged by the IP actually dialled, after DNS resolution
// and on every redirect hop, and refused when it is loopback, private,
// link-local, multicast, CGNAT or otherwise non-public, unless it is
// inside an allow list. Environment proxies are never used.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Prefixes that netip's predicates do not classify but that must never be
// the destination of a request to a user-supplied URL.
var internalPrefixes = []struct {
	p      netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0.0.0.0/8)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "CGNAT shared (100.64.0.0/10)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
}

// InternalReason says why addr is an internal (non-public) destination,
// or "" when it is not. IPv4-mapped IPv6 addresses are judged as the IPv4
// address they carry.
func InternalReason(addr netip.Addr) string {
	a := addr.Unmap().WithZone("")
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsPrivate():
		return "private (RFC 1918 / unique-local)"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast():
		return "multicast"
	}
	for _, ip := range internalPrefixes {
		if ip.p.Contains(a) {
			return ip.reason
		}
	}
	return ""
}

// RefusedError is the dial error for a destination that is internal and
// not inside the guard's allow list.
type RefusedError struct {
	Addr   netip.Addr
	Reason string
	What   string // what was being reached, e.g. "messaging URL"
	Key    string // the config key that allows it
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s resolves to %s, an internal address (%s); allow it with %s",
		e.What, e.Addr, e.Reason, e.Key)
}

// Guard refuses connections to internal addresses outside Allow.
type Guard struct {
	Allow []netip.Prefix
	What  string // names the destination in errors ("messaging URL", "routing hook URL")
	Key   string // config key that extends Allow, for errors
}

// Check judges the IP actually being connected to ("ip:port").
func (g Guard) Check(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%s: unexpected dial address %q: %w", g.What, address, err)
	}
	addr := ap.Addr().WithZone("")
	for _, p := range g.Allow {
		if p.Contains(addr) || p.Contains(addr.Unmap()) {
			return nil
		}
	}
	if reason := InternalReason(addr); reason != "" {
		return &RefusedError{Addr: addr.Unmap(), Reason: reason, What: g.What, Key: g.Key}
	}
	return nil
}

func (g Guard) control(_, address string, _ syscall.RawConn) error {
	return g.Check(address)
}

// ErrTransport is returned by Client for a base transport it cannot guard.
var ErrTransport = errors.New("netguard: the client's Transport must be nil or an *http.Transport (connections dial through the internal-address check)")

// Client returns a client whose every connection goes through g. base
// (may be nil) supplies the redirect policy, client timeout and TLS
// settings (nil: no redirects); its Transport must be nil or an
// *http.Transport (which is cloned, never modified). Environment proxies
// are never used: a proxy would connect on our behalf, past the check.
func Client(base *http.Client, g Guard) (*http.Client, error) {
	var tr *http.Transport
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if base != nil {
		c.CheckRedirect, c.Timeout, c.Jar = base.CheckRedirect, base.Timeout, base.Jar
		if base.Transport != nil {
			t, ok := base.Transport.(*http.Transport)
			if !ok {
				return nil, fmt.Errorf("%w: got %T", ErrTransport, base.Transport)
			}
			tr = t.Clone()
		}
	}
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: g.control}
	tr.Proxy = nil
	tr.DialContext = d.DialContext
	tr.DialTLSContext = nil
	tr.Dial, tr.DialTLS = nil, nil //nolint:staticcheck // deprecated hooks would bypass DialContext
	c.Transport = tr
	return c, nil
}

// IsRefused reports whether err comes from the internal-address check.
func IsRefused(err error) (*RefusedError, bool) {
	var re *RefusedError
	ok := errors.As(err, &re)
	return re, ok
}
