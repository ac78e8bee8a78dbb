package sip

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/sip/transport"
)

// Dual stack (sip.addr6, sip.tls_addr6, sip.agents.addr6, ...): each side
// of the edge (carrier, agent) may have IPv6 listeners besides its IPv4
// ones (transport/dualstack.go). The family of the address a message
// arrives from or leaves to picks the listener and our names in it: Via
// sent-by and Record-Route carry the IPv6 host and ports toward an IPv6
// peer, the IPv4 ones toward an IPv4 peer. A call whose two legs are of
// different families is record-routed twice (one entry per family, the
// callee-facing one on top), as a call crossing listeners or transports
// is (proxy.go buildForward), so that each party's in-dialog requests
// come back over its own family.
//
// sideV6 is a flag on the side argument of viaHostOn, viaPortOn and rr
// (never stored in a Peer): the side's IPv6 names. fam sets it.

const sideV6 uint8 = 2

// names6 is one side's IPv6 listener set as it is named in Via and
// Record-Route.
type names6 struct {
	tp                  *transport.Transport
	viaHost             string // brackets included
	rrUDP, rrTCP, rrTLS string
}

// newNames6 names tp's IPv6 listeners with host (advertise_host6; empty:
// the bound address). nil when tp has none.
func newNames6(tp *transport.Transport, host string) *names6 {
	if !tp.HasV6() {
		return nil
	}
	if host == "" {
		host = tp.UDPAddr6().Addr().String()
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	n := &names6{tp: tp, viaHost: host}
	n.rrUDP = "<sip:" + host + ":" + strconv.Itoa(int(tp.UDPAddr6().Port())) + ";lr>"
	n.rrTCP = "<sip:" + host + ":" + strconv.Itoa(int(tp.TCPAddr6().Port())) + ";transport=tcp;lr>"
	if tp.HasTLS6() {
		n.rrTLS = "<sip:" + host + ":" + strconv.Itoa(int(tp.TLSAddr6().Port())) + ";transport=tls;lr>"
	}
	return n
}

func (n *names6) port(p proto) int {
	switch p {
	case protoTCP:
		return int(n.tp.TCPAddr6().Port())
	case protoTLS:
		if n.tp.HasTLS6() {
			return int(n.tp.TLSAddr6().Port())
		}
		return int(n.tp.TCPAddr6().Port())
	}
	return int(n.tp.UDPAddr6().Port())
}

func (n *names6) rr(p proto) string {
	switch p {
	case protoTCP:
		return n.rrTCP
	case protoTLS:
		if n.rrTLS != "" {
			return n.rrTLS
		}
		return n.rrTCP
	}
	return n.rrUDP
}

// hostIs reports whether h names the IPv6 listeners (n may be nil).
func (n *names6) hostIs(h string) bool {
	if n == nil {
		return false
	}
	h = trimBrackets(h)
	if strings.EqualFold(h, trimBrackets(n.viaHost)) {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a == n.tp.UDPAddr6().Addr()
}

func (n *names6) hasPort(port int) bool {
	if port == 0 {
		port = 5060
	}
	return port == int(n.tp.UDPAddr6().Port()) || port == int(n.tp.TCPAddr6().Port()) ||
		(n.tp.HasTLS6() && port == int(n.tp.TLSAddr6().Port()))
}

// isUs reports whether u names the IPv6 listeners (n may be nil).
func (n *names6) isUs(u *sip.Uri) bool { return u != nil && n.hostIs(u.Host) && n.hasPort(u.Port) }

// ownVia reports whether v is our IPv6 sent-by (n may be nil).
func (n *names6) ownVia(v *sip.ViaHeader) bool { return n.hostIs(v.Host) && n.hasPort(v.Port) }

// isAddr reports whether a is the IPv6 listeners' bound or advertised
// address (n may be nil).
func (n *names6) isAddr(a netip.Addr) bool {
	if n == nil {
		return false
	}
	if l := n.tp.UDPAddr6().Addr(); !l.IsUnspecified() && a == l {
		return true
	}
	adv, err := netip.ParseAddr(trimBrackets(n.viaHost))
	return err == nil && a == adv
}

// names6On is side's IPv6 names (nil: that side has no IPv6 listeners).
func (s *Server) names6On(side uint8) *names6 {
	if side&^sideV6 == sideAgent && s.ag != nil {
		return s.ag.six
	}
	return s.six
}

// fam is side with the sideV6 flag when a message to or from a leaves
// through side's IPv6 listeners.
func (s *Server) fam(side uint8, a netip.Addr) uint8 {
	if transport.IsV6(a) && s.names6On(side) != nil {
		return side | sideV6
	}
	return side
}

// famPeer is fam for a peer; a peer whose address is not resolved yet
// takes the family of its URI host when that is an address literal.
func (s *Server) famPeer(side uint8, p peer, u *sip.Uri) uint8 {
	if p.Addr.IsValid() || u == nil {
		return s.fam(side, p.Addr.Addr())
	}
	a, _ := netip.ParseAddr(trimBrackets(u.Host))
	return s.fam(side, a)
}

// on6 is the IPv6 names side (with sideV6) stands for, or nil.
func (s *Server) on6(side uint8) *names6 {
	if side&sideV6 == 0 {
		return nil
	}
	return s.names6On(side)
}

// isOurs6 reports whether u names one of the IPv6 listeners of either side.
func (s *Server) isUs6(u *sip.Uri) bool {
	return s.six.isUs(u) || (s.ag != nil && s.ag.six.isUs(u))
}

// ownVia6 reports whether v is one of our IPv6 sent-bys.
func (s *Server) ownVia6(v *sip.ViaHeader) bool {
	return s.six.ownVia(v) || (s.ag != nil && s.ag.six.ownVia(v))
}

// UDPAddr6 is the carrier-side IPv6 UDP address (zero without sip.addr6).
func (s *Server) UDPAddr6() netip.AddrPort { return s.tp.UDPAddr6() }

// TCPAddr6 is the carrier-side IPv6 TCP address (zero without sip.addr6).
func (s *Server) TCPAddr6() netip.AddrPort { return s.tp.TCPAddr6() }

// AgentUDPAddr6 is the agent listener's IPv6 UDP address (zero when off).
func (s *Server) AgentUDPAddr6() netip.AddrPort {
	if s.ag == nil {
		return netip.AddrPort{}
	}
	return s.ag.tp.UDPAddr6()
}

// AgentTCPAddr6 is the agent listener's IPv6 TCP address (zero when off).
func (s *Server) AgentTCPAddr6() netip.AddrPort {
	if s.ag == nil {
		return netip.AddrPort{}
	}
	return s.ag.tp.TCPAddr6()
}
