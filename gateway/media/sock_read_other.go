//go:build !linux

package media

import "net/netip"

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
