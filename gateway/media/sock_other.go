//go:build !linux

package media

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// sock is one relay UDP socket with its own reader goroutine (the Go
// runtime's poller underneath). This is the portable engine; Linux uses
// the epoll worker threads of sock_linux.go. Reads and writes use the
// netip.AddrPort forms of net.UDPConn, which do not allocate.
type sock struct {
	c     *net.UDPConn
	local netip.AddrPort
	leg   *leg
	rtcp  bool
	// peer the socket is connected to (nil: unconnected). Once a leg's
	// source is fixed its socket is connected to it: the kernel then
	// drops datagrams from anyone else and both directions skip the
	// per-packet route and socket lookups.
	peer atomic.Pointer[netip.AddrPort]
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
	if p := s.peer.Load(); p != nil && *p == to {
		_, err := s.c.Write(b)
		return err
	}
	_, err := s.c.WriteToUDPAddrPort(b, to)
	return err
}

// connect fixes the socket's peer (see sock.peer). Errors leave it
// unconnected, which only costs speed.
func (s *sock) connect(to netip.AddrPort) {
	if p := s.peer.Load(); p != nil && *p == to {
		return
	}
	if err := connectFD(s.c, to); err != nil {
		return
	}
	s.peer.Store(&to)
}

// disconnect lets the socket receive from anyone again.
func (s *sock) disconnect() {
	if s.peer.Load() == nil {
		return
	}
	s.peer.Store(nil)
	disconnectFD(s.c)
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

// serve reads the socket until it is closed.
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
