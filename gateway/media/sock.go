package media

import (
	"net"
	"net/netip"
)

// sock is one relay UDP socket with its own reader goroutine (the Go
// runtime's epoll-based poller underneath). Reads and writes use the
// netip.AddrPort forms of net.UDPConn, which do not allocate.
type sock struct {
	c     *net.UDPConn
	local netip.AddrPort
	leg   *leg
	rtcp  bool
}

type osScratch struct{}

func openSock(ip netip.Addr, port int) (*sock, error) {
	network := "udp4"
	if !ip.Unmap().Is4() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(port))))
	if err != nil {
		return nil, err
	}
	return &sock{c: c, local: netip.AddrPortFrom(ip.Unmap(), uint16(port))}, nil
}

func (s *sock) close() { s.c.Close() }

func (s *sock) sendTo(b []byte, to netip.AddrPort, _ *osScratch) error {
	_, err := s.c.WriteToUDPAddrPort(b, to)
	return err
}

// engine starts and stops the sockets' reader goroutines.
type engine struct{}

func newEngine(portMin, portMax, workers int) (*engine, error) { return &engine{}, nil }

func (e *engine) close() {}

func (e *engine) add(s *Session) error {
	for _, sk := range s.socks() {
		go sk.serve()
	}
	return nil
}

func (e *engine) remove(s *Session) {
	for _, sk := range s.socks() {
		sk.close()
	}
}

func (sk *sock) serve() {
	buf := make([]byte, maxPacket)
	sc := new(scratch)
	for {
		n, src, err := sk.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if sk.leg.s.closing.Load() {
				return
			}
			continue
		}
		s := sk.leg.s
		s.ioMu.Lock()
		if s.ioClosed {
			s.ioMu.Unlock()
			return
		}
		sk.leg.packet(buf[:n], netip.AddrPortFrom(src.Addr().Unmap(), src.Port()), sk.rtcp, sc)
		s.ioMu.Unlock()
	}
}
