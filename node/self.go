package node

import (
	"net"
	"net/netip"
	"strconv"
)

// setSIPSelf tells provisioning this gateway's own SIP addresses, so that
// an agent endpoint pointing back at the gateway is refused: before the
// listeners are bound from the config (ports 0 are skipped), after it from
// the bound addresses.
func (n *Node) setSIPSelf() {
	sc := n.cfg.SIP
	var listen []netip.AddrPort
	if n.edges.sip != nil {
		listen = append(listen, n.edges.sip.UDPAddr(), n.edges.sip.TCPAddr(), n.edges.sip.TLSAddr())
	} else {
		for _, a := range []string{sc.Addr, sc.TLSAddr} {
			if ap, ok := configAddrPort(a); ok {
				listen = append(listen, ap)
			}
		}
	}
	n.svc.SetSIPSelf(sc.AdvertiseHost, listen...)
}

// configAddrPort parses a listen address such as ":5060" or
// "127.0.0.1:5060" (an empty host is the wildcard address).
func configAddrPort(s string) (netip.AddrPort, bool) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return netip.AddrPort{}, false
	}
	a := netip.IPv6Unspecified()
	if host != "" {
		if a, err = netip.ParseAddr(host); err != nil {
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), true
}
