//go:build linux

package media

import (
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchLen is how many datagrams one recvmmsg may return. A batch that
// comes back short means the socket is drained, so the reader parks
// without the extra read that would only return EAGAIN.
const batchLen = 4

// batch is the receive state of one reader while it handles packets;
// it goes back to a pool while the reader is parked, so idle sockets
// hold no buffers.
type batch struct {
	msgs  [batchLen]unix.Mmsghdr
	iov   [batchLen]unix.Iovec
	names [batchLen]unix.RawSockaddrAny
	bufs  [batchLen][maxPacket]byte
	sc    scratch
}

var batchPool = sync.Pool{New: func() any {
	b := new(batch)
	for i := range b.msgs {
		b.iov[i].Base = &b.bufs[i][0]
		b.iov[i].SetLen(maxPacket)
		b.msgs[i].Hdr.Iov = &b.iov[i]
		b.msgs[i].Hdr.SetIovlen(1)
		b.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}}

// serve reads the socket until it is closed: recvmmsg inside the runtime
// poller's RawConn.Read, which parks the goroutine until the socket is
// readable again.
func (sk *sock) serve() {
	rc, err := sk.c.SyscallConn()
	if err != nil {
		return
	}
	for {
		err := rc.Read(sk.drain)
		if err != nil || sk.leg.s.closing.Load() {
			return
		}
	}
}

// drain reads and handles datagrams until the socket is empty; false
// makes RawConn.Read wait for readability.
func (sk *sock) drain(fd uintptr) bool {
	b := batchPool.Get().(*batch)
	defer batchPool.Put(b)
	for {
		for i := range b.msgs {
			b.msgs[i].Hdr.Namelen = unix.SizeofSockaddrAny
			b.msgs[i].Len = 0
		}
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), batchLen, unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			if e == unix.EAGAIN || sk.leg.s.closing.Load() {
				return e != unix.EAGAIN // EAGAIN: park until readable
			}
			// Another error (ECONNREFUSED after an ICMP port unreachable
			// on a connected socket) is consumed by this read: try again,
			// datagrams may be queued behind it.
			continue
		}
		s := sk.leg.s
		s.ioMu.Lock()
		if s.ioClosed {
			s.ioMu.Unlock()
			return true
		}
		for i := 0; i < int(n); i++ {
			sk.leg.packet(b.bufs[i][:b.msgs[i].Len], sockaddrPort(&b.names[i]), sk.rtcp, &b.sc)
		}
		s.ioMu.Unlock()
		if int(n) < batchLen {
			return false
		}
	}
}

func sockaddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&a.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}
