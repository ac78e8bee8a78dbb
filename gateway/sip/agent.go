package sip

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/sip/transport"
)

// The agent side of the edge (design.md "Two sides of the SIP edge"): a
// second listener (sip.agents.addr) where agents place outbound calls,
// authenticated by digest (agentauth.go), and send their in-dialog
// requests. A call crossing from one listener to the other is
// record-routed on both (proxy.go buildForward), so that each party's
// in-dialog requests come to the listener facing it; messages of such a
// dialog leave through the other listener (crossSide).
//
// Peers carry the side they came in on (transport.Peer.Side); a message
// goes out through the transport of its peer's side (tpFor).

// Sides of the edge (transport.Peer.Side).
const (
	sideCarrier uint8 = 0 // sip.addr: carriers' trunks
	sideAgent   uint8 = 1 // sip.agents.addr: agents
)

// agentSide is the agent-facing listener and what outbound calls need.
type agentSide struct {
	tp                  *transport.Transport
	viaHost             string // as in Via and Record-Route (brackets for IPv6)
	rrUDP, rrTCP, rrTLS string
	six                 *names6 // IPv6 listeners (dualstack.go); nil: none
	realm               string
	algs                []string // digest algorithms offered, in order
	nonceKey            []byte   // HMAC key of digest nonces (from the node's dialog key)
	fails               failLimiter

	// egress remembers the addresses outbound calls were sent to (carrier
	// terminations), so that their answers pass the carrier listener's
	// source filter.
	egressMu sync.Mutex
	egress   map[netip.Addr]time.Time
}

// agentEdge is the Server as the Handler of the agent-facing transport:
// any source may try (digest decides), except one blocked for failing
// authentication too often.
type agentEdge Server

var _ transport.Handler = (*agentEdge)(nil)

func (e *agentEdge) AllowedSource(a netip.Addr) bool {
	return !(*Server)(e).ag.fails.blocked(a)
}

func (e *agentEdge) RefuseSource(data []byte, from peer) {
	s := (*Server)(e)
	s.metrics.Rejected.WithLabelValues("auth_blocked").Inc()
	if !s.refuseToken() {
		return
	}
	m, err := s.ag.tp.Parser().ParseSIP(data)
	if err != nil {
		return
	}
	req, ok := m.(*sip.Request)
	if !ok || req.IsAck() || !hasTxHeaders(req) {
		return
	}
	setReceived(req, from)
	s.replyStateless(req, from, 403, "Forbidden")
}

func (e *agentEdge) HandleDatagram(data []byte, from peer) { (*Server)(e).handleDatagram(data, from) }

func (e *agentEdge) HandleMessage(m sip.Message, from peer) { (*Server)(e).handleMessage(m, from) }

// newAgentSide binds the agent listener when cfg.Agents.Addr is set.
func (s *Server) newAgentSide(cfg Config, d Deps) error {
	s.limits, s.usage, s.sandboxTerm = d.Limits, d.Usage, d.SandboxTermination
	if cfg.Agents.Addr == "" {
		return nil
	}
	algs, err := digestAlgorithms(cfg.Agents.DigestAlgorithms)
	if err != nil {
		return err
	}
	ag := &agentSide{realm: cfg.Agents.Realm, algs: algs, egress: map[netip.Addr]time.Time{},
		nonceKey: deriveKey(d.DialogKey, "callgate sip agent nonce v1")}
	ag.fails = failLimiter{max: cfg.Agents.MaxAuthFailures, window: cfg.Agents.AuthWindow,
		block: cfg.Agents.AuthBlock, m: map[netip.Addr]*failEntry{}}
	tlsAddr := ""
	if cfg.Agents.TLSAddr != "" {
		tlsAddr = cfg.Agents.TLSAddr
	}
	tp, err := transport.New(transport.Config{
		Addr: cfg.Agents.Addr, TLSAddr: tlsAddr, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey,
		TLSCAFile: cfg.TLSCAFile, TLSClientCert: cfg.TLSClientCert, TLSClientKey: cfg.TLSClientKey,
		MessageTimeout: cfg.MessageTimeout, MaxConnections: cfg.MaxConnections,
		MaxConnectionsPerSource: cfg.MaxConnectionsPerSource, DNS: cfg.DNS, Side: sideAgent,
		Addr6: cfg.Agents.Addr6, TLSAddr6: cfg.Agents.TLSAddr6,
	}, (*agentEdge)(s), transport.Metrics{Dropped: s.metrics.Dropped, Rejected: s.metrics.Rejected,
		ConnsRefused: s.metrics.ConnsRefused, Conns: s.metrics.Conns, SendErrors: s.metrics.SendErrors}, s.log)
	if err != nil {
		return err
	}
	ag.tp = tp
	host := cfg.AdvertiseHost
	if host == "" {
		host = tp.UDPAddr().Addr().String()
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	ag.viaHost = host
	ag.rrUDP = "<sip:" + host + ":" + strconv.Itoa(int(tp.UDPAddr().Port())) + ";lr>"
	ag.rrTCP = "<sip:" + host + ":" + strconv.Itoa(int(tp.TCPAddr().Port())) + ";transport=tcp;lr>"
	if tp.HasTLS() {
		ag.rrTLS = "<sip:" + host + ":" + strconv.Itoa(int(tp.TLSAddr().Port())) + ";transport=tls;lr>"
	}
	ag.six = newNames6(tp, cfg.AdvertiseHost6)
	s.ag = ag
	return nil
}

// AgentUDPAddr is the agent listener's bound UDP address (zero when off).
func (s *Server) AgentUDPAddr() netip.AddrPort {
	if s.ag == nil {
		return netip.AddrPort{}
	}
	return s.ag.tp.UDPAddr()
}

// AgentTCPAddr is the agent listener's bound TCP address (zero when off).
func (s *Server) AgentTCPAddr() netip.AddrPort {
	if s.ag == nil {
		return netip.AddrPort{}
	}
	return s.ag.tp.TCPAddr()
}

// tpFor is the transport a message to p leaves through.
func (s *Server) tpFor(p peer) *transport.Transport { return s.tpSide(p.Side) }

func (s *Server) tpSide(side uint8) *transport.Transport {
	if side == sideAgent && s.ag != nil {
		return s.ag.tp
	}
	return s.tp
}

// crossSide is the side a message of a dialog that came in on side goes
// out through: with an agent listener every dialog crosses (carrier ↔
// agent); without one there is one side.
func (s *Server) crossSide(side uint8) uint8 {
	if s.ag == nil {
		return sideCarrier
	}
	if side == sideAgent {
		return sideCarrier
	}
	return sideAgent
}

// dialogSide is the side an in-dialog request that came in on side goes
// out through. The route set tells: the last of our Route entries it
// carried (popped, in order) is the listener facing the next hop, so a
// dialog that stays on one listener (a fallback leg to a phone number:
// carrier to carrier) stays there. Without a Route to us, the dialog
// record (c, may be nil) tells; without either, crossSide.
func (s *Server) dialogSide(side uint8, ours []sip.Uri, c *call) uint8 {
	if s.ag == nil {
		return sideCarrier
	}
	if n := len(ours); n > 0 {
		if s.ag.isUs(&ours[n-1]) {
			return sideAgent
		}
		return sideCarrier
	}
	if c != nil && !c.crosses() {
		return side
	}
	return s.crossSide(side)
}

// crosses reports whether the call's two legs are on different listeners.
func (c *call) crosses() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.downSide() != c.up.Side
}

// downSide is the side the call's INVITE goes out through: outbound
// calls and a fallback step to a phone number to the carrier side, inbound
// ones to the agent side when it is on.
func (c *call) downSide() uint8 {
	if c.out != nil || c.s.ag == nil || (c.ctl != nil && c.ctl.toCarrier) {
		return sideCarrier
	}
	return sideAgent
}

func (s *Server) viaHostOn(side uint8) string {
	if n := s.on6(side); n != nil {
		return n.viaHost
	}
	side &^= sideV6
	if side == sideAgent && s.ag != nil {
		return s.ag.viaHost
	}
	return s.viaHost
}

func (s *Server) viaPortOn(side uint8, p proto) int {
	if n := s.on6(side); n != nil {
		return n.port(p)
	}
	side &^= sideV6
	if side == sideAgent && s.ag != nil {
		return s.ag.port(p)
	}
	return s.viaPort(p)
}

func (ag *agentSide) port(p proto) int {
	switch p {
	case protoTCP:
		return int(ag.tp.TCPAddr().Port())
	case protoTLS:
		if ag.tp.HasTLS() {
			return int(ag.tp.TLSAddr().Port())
		}
		return int(ag.tp.TCPAddr().Port())
	}
	return int(ag.tp.UDPAddr().Port())
}

func (ag *agentSide) rr(p proto) string {
	switch p {
	case protoTCP:
		return ag.rrTCP
	case protoTLS:
		if ag.rrTLS != "" {
			return ag.rrTLS
		}
		return ag.rrTCP
	}
	return ag.rrUDP
}

// hostIs reports whether h names the agent listener's host.
func (ag *agentSide) hostIs(h string) bool {
	h = trimBrackets(h)
	if strings.EqualFold(h, trimBrackets(ag.viaHost)) {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap() == ag.tp.UDPAddr().Addr()
}

func (ag *agentSide) hasPort(port int) bool {
	if port == 0 {
		port = 5060
	}
	return port == int(ag.tp.UDPAddr().Port()) || port == int(ag.tp.TCPAddr().Port()) ||
		(ag.tp.HasTLS() && port == int(ag.tp.TLSAddr().Port()))
}

// isUs reports whether u names the agent listener.
func (ag *agentSide) isUs(u *sip.Uri) bool {
	return (ag.hostIs(u.Host) && ag.hasPort(u.Port)) || ag.six.isUs(u)
}

// ownVia reports whether a Via entry is the agent listener's sent-by.
func (ag *agentSide) ownVia(v *sip.ViaHeader) bool {
	return (ag.hostIs(v.Host) && ag.hasPort(v.Port)) || ag.six.ownVia(v)
}

// egressSeen records an address an outbound call was sent to.
func (s *Server) egressSeen(a netip.Addr) {
	if s.ag == nil {
		return
	}
	now := time.Now()
	s.ag.egressMu.Lock()
	if len(s.ag.egress) > 10000 { // bounded: forget expired entries, then any until half are left
		for k, t := range s.ag.egress {
			if now.Sub(t) > s.cfg.MaxCallDuration || len(s.ag.egress) > 5000 {
				delete(s.ag.egress, k)
			}
		}
	}
	s.ag.egress[a.Unmap()] = now
	s.ag.egressMu.Unlock()
}

// isEgressAddr reports whether an outbound call went to a within
// max_call_duration (its answers and in-dialog requests are let in).
func (s *Server) isEgressAddr(a netip.Addr) bool {
	if s.ag == nil {
		return false
	}
	s.ag.egressMu.Lock()
	t, ok := s.ag.egress[a]
	s.ag.egressMu.Unlock()
	return ok && time.Since(t) < s.cfg.MaxCallDuration
}

// isAgentOnlyHeader: headers of the agent's request that are not passed
// on to the carrier.
func isAgentOnlyHeader(name string) bool {
	return strings.EqualFold(name, "Proxy-Authorization") || strings.EqualFold(name, "Authorization")
}
