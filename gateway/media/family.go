package media

import (
	"fmt"
	"net/netip"
)

// Dual stack: with bind_ip6 set, each leg of a session is bound in the
// address family of the party it faces (NewSessionFamilies): a call
// from an IPv4 carrier to an IPv6 agent relays between an IPv4 socket
// (SDP toward the carrier: c=IN IP4 advertise_ip) and an IPv6 one (SDP
// toward the agent: c=IN IP6 advertise_ip6). Without bind_ip6 every leg
// binds bind_ip, as before.

// family6 is the IPv6 side of a dual-stack relay.
type family6 struct {
	bind, adv netip.Addr // zero: no IPv6 side
}

func newFamily6(cfg Config) family6 {
	if cfg.BindIP6 == "" {
		return family6{}
	}
	bind := netip.MustParseAddr(cfg.BindIP6)
	adv := bind
	if cfg.AdvertiseIP6 != "" {
		adv = netip.MustParseAddr(cfg.AdvertiseIP6)
	}
	return family6{bind: bind, adv: adv}
}

// advFor is the address the SDP going out through pair p names.
func (m *Manager) advFor(p *pair) netip.Addr {
	if m.six.adv.IsValid() && p.rtpAddr.Addr().Is6() {
		return m.six.adv
	}
	return m.advIP
}

// ipFor is the address a leg facing a party of the given family binds.
func (m *Manager) ipFor(v6 bool) netip.Addr {
	if v6 && m.six.bind.IsValid() {
		return m.six.bind
	}
	return m.bindIP
}

// DualStack reports whether the relay binds IPv6 legs besides IPv4 ones.
func (m *Manager) DualStack() bool { return m.six.bind.IsValid() }

// NewSessionFamilies is NewSession with the caller-facing leg bound in
// the caller's family and the agent-facing one in the agent's (IPv6:
// bind_ip6 when set, else bind_ip).
func (m *Manager) NewSessionFamilies(callID string, callerV6, agentV6 bool, onTimeout func()) (*Session, error) {
	return m.newSessionOn(callID, m.cfg.Region, m.ipFor(callerV6), m.ipFor(agentV6), onTimeout)
}

// NewSessionFamilies calls M.NewSessionFamilies and returns the session as S.
func (a Anchor[S]) NewSessionFamilies(callID string, callerV6, agentV6 bool, onTimeout func()) (S, error) {
	var zero S
	s, err := a.M.NewSessionFamilies(callID, callerV6, agentV6, onTimeout)
	if err != nil {
		return zero, err
	}
	v, ok := any(s).(S)
	if !ok {
		s.Close()
		return zero, fmt.Errorf("media: *media.Session does not implement S")
	}
	return v, nil
}

// validate6 checks bind_ip6 and advertise_ip6.
func (c Config) validate6(bad func(key, format string, a ...any)) {
	if c.BindIP6 == "" {
		if c.AdvertiseIP6 != "" {
			bad("advertise_ip6", "needs bind_ip6")
		}
		return
	}
	bind, err := netip.ParseAddr(c.BindIP6)
	switch {
	case err != nil:
		bad("bind_ip6", "%q is not an IP address", c.BindIP6)
		return
	case !bind.Is6() || bind.Is4In6():
		bad("bind_ip6", "%q is not an IPv6 address", c.BindIP6)
		return
	case bind.Zone() != "":
		bad("bind_ip6", "%q: zones are not supported", c.BindIP6)
	}
	if b4, err := netip.ParseAddr(c.BindIP); err == nil && !b4.Unmap().Is4() {
		bad("bind_ip", "%q must be IPv4 when bind_ip6 is set", c.BindIP)
	}
	if c.AdvertiseIP6 == "" {
		if bind.IsUnspecified() {
			bad("advertise_ip6", "required when bind_ip6 is %s", c.BindIP6)
		}
		return
	}
	adv, err := netip.ParseAddr(c.AdvertiseIP6)
	switch {
	case err != nil:
		bad("advertise_ip6", "%q is not an IP address", c.AdvertiseIP6)
	case !adv.Is6() || adv.Is4In6():
		bad("advertise_ip6", "%q is not an IPv6 address", c.AdvertiseIP6)
	case adv.IsUnspecified():
		bad("advertise_ip6", "%q is unspecified; set the address peers should send media to", c.AdvertiseIP6)
	}
}
