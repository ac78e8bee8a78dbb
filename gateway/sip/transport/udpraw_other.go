//go:build !linux

package transport

import (
	"net"
	"net/netip"
)

// UDP sockets elsewhere than Linux: net.UDPConn's reads and writes
// (udpraw_linux.go has the raw system calls).

type udpSock struct {
	*net.UDPConn
}

func newUDPSock(c *net.UDPConn) *udpSock { return &udpSock{UDPConn: c} }

// setFail: no sends are held here (udpraw_linux.go holds them).
func (u *udpSock) setFail(func([]byte, netip.AddrPort, error)) {}

func (u *udpSock) writeTo(b []byte, ap netip.AddrPort) error {
	_, err := u.UDPConn.WriteToUDPAddrPort(b, ap)
	return err
}

type udpReader struct {
	u   *udpSock
	buf []byte
}

func (u *udpSock) newReader() *udpReader {
	return &udpReader{u: u, buf: make([]byte, maxMessage)}
}

func (r *udpReader) next() ([]byte, netip.AddrPort, error) {
	n, ap, err := r.u.ReadFromUDPAddrPort(r.buf)
	return r.buf[:n], ap, err
}
