package webhook

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
// the destination of a delivery to a user-supplied URL.
var internalPrefixes = []struct {
	p      netip.Prefix
	reason string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "\"this network\" (0.0.0.0/8)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "CGNAT shared (100.64.0.0/10)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "broadcast"},
}

// internalReason says why addr is an internal (non-public) destination, or
// "" when it is not. IPv4-mapped IPv6 addresses are judged as the IPv4
// address they carry.
func internalReason(addr netip.Addr) string {
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

// refusedError is the dial error for a destination that is internal and
// not inside Messaging.AllowNetworks.
type refusedError struct {
	addr   netip.Addr
	reason string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("messaging URL resolves to %s, an internal address (%s); allow it with webhook.messaging.allow_networks",
		e.addr, e.reason)
}

// addressGuard refuses connections to internal addresses outside allow.
type addressGuard struct {
	allow []netip.Prefix
}

// check judges the IP actually being connected to (after DNS resolution,
// for every redirect hop).
func (g addressGuard) check(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("messaging URL: unexpected dial address %q: %w", address, err)
	}
	addr := ap.Addr().WithZone("")
	for _, p := range g.allow {
		if p.Contains(addr) || p.Contains(addr.Unmap()) {
			return nil
		}
	}
	if reason := internalReason(addr); reason != "" {
		return &refusedError{addr: addr.Unmap(), reason: reason}
	}
	return nil
}

func (g addressGuard) control(_, address string, _ syscall.RawConn) error {
	return g.check(address)
}

// guardedClient returns a client for deliveries whose every connection
// goes through g. base (may be nil) supplies the redirect policy, client
// timeout and TLS settings; its Transport must be nil or an
// *http.Transport (which is cloned, never modified). Environment proxies
// are never used: a proxy would connect on our behalf, past the check.
func guardedClient(base *http.Client, g addressGuard) (*http.Client, error) {
	var tr *http.Transport
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if base != nil {
		c.CheckRedirect, c.Timeout, c.Jar = base.CheckRedirect, base.Timeout, base.Jar
		if base.Transport != nil {
			t, ok := base.Transport.(*http.Transport)
			if !ok {
				return nil, fmt.Errorf("webhook: Deps.HTTPClient.Transport is %T; it must be nil or an *http.Transport (deliveries dial through the internal-address check)", base.Transport)
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

// isRefused reports whether err comes from the internal-address check.
func isRefused(err error) (*refusedError, bool) {
	var re *refusedError
	ok := errors.As(err, &re)
	return re, ok
}
