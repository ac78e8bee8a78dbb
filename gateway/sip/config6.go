package sip

import "net/netip"

// validate6 checks the dual-stack keys (addr6, tls_addr6, advertise_host6,
// agents.addr6, agents.tls_addr6): each IPv6 address needs its IPv4
// partner, and an unspecified one needs advertise_host6.
func (c Config) validate6(bad func(key, format string, a ...any)) {
	v6 := func(key, val, partnerKey, partner string) (netip.AddrPort, bool) {
		ap, err := netip.ParseAddrPort(val)
		switch {
		case err != nil:
			bad(key, "%q is not [ipv6]:port", val)
		case !ap.Addr().Is6() || ap.Addr().Is4In6():
			bad(key, "%q is not an IPv6 address (put IPv4 in %s)", val, partnerKey)
		case ap.Addr().Zone() != "":
			bad(key, "%q: zones are not supported", val)
		default:
			if pa, err := netip.ParseAddrPort(partner); err == nil && !pa.Addr().Unmap().Is4() {
				bad(partnerKey, "%q must be IPv4 when %s is set (%s)", partner, key, val)
			}
			return ap, true
		}
		return ap, false
	}
	if c.Addr6 != "" {
		if ap, ok := v6("addr6", c.Addr6, "addr", c.Addr); ok && ap.Addr().IsUnspecified() && c.AdvertiseHost6 == "" {
			bad("advertise_host6", "required when addr6 listens on all addresses (%s)", c.Addr6)
		}
	}
	if c.TLSAddr6 != "" {
		if c.Addr6 == "" || c.TLSCert == "" || c.TLSKey == "" {
			bad("tls_addr6", "needs addr6, tls_cert and tls_key")
		} else {
			v6("tls_addr6", c.TLSAddr6, "tls_addr", c.TLSAddr)
		}
	}
	if a := c.Agents; a.Addr6 != "" {
		if a.Addr == "" {
			bad("agents.addr6", "needs agents.addr (the IPv4 agent listener)")
		} else if ap, ok := v6("agents.addr6", a.Addr6, "agents.addr", a.Addr); ok {
			if ap.Addr().IsUnspecified() && c.AdvertiseHost6 == "" {
				bad("advertise_host6", "required when agents.addr6 listens on all addresses (%s)", a.Addr6)
			} else if a.Addr6 == c.Addr6 && ap.Port() != 0 {
				bad("agents.addr6", "must differ from sip.addr6 (%s)", c.Addr6)
			}
		}
	}
	if a := c.Agents; a.TLSAddr6 != "" {
		if a.Addr6 == "" || c.TLSCert == "" {
			bad("agents.tls_addr6", "needs agents.addr6 and sip.tls_cert/tls_key")
		} else {
			v6("agents.tls_addr6", a.TLSAddr6, "agents.tls_addr", a.TLSAddr)
		}
	}
	if c.AdvertiseHost6 != "" && c.Addr6 == "" && c.Agents.Addr6 == "" {
		bad("advertise_host6", "needs addr6 or agents.addr6")
	}
	if h := c.AdvertiseHost6; h != "" {
		if a, err := netip.ParseAddr(h); err == nil && !a.Is6() {
			bad("advertise_host6", "%q is an IPv4 address", h)
		}
	}
}
