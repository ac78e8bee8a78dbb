package transport

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP sockets on Linux: datagrams are read and sent with raw system
// calls on the socket's descriptor (recvmmsg, sendto with MSG_DONTWAIT;
// neither can block), not through net.UDPConn's entersyscall/exitsyscall
// wrappers. A read loop still parks in the runtime's poller when the
// socket is empty (RawConn.Read), but a send or a read no longer makes
// the runtime treat its thread as blocked in a system call, so sysmon
// cannot retake the P during a slow sendto (on loopback the sender's
// sendto delivers the datagram and wakes the receiver, tens of µs on a
// VM) and hand it to another thread. At 2,000-3,000 calls/s (bench/sip)
// that took callgate's CPU in runtime.futex from 3.6% to 2.0%, in stopm
// and startm from 3.9% to 2.2% (pprof), and sysmon's from 7-8% to 4%
// (perf), with 25% fewer profile samples per call in all. The media
// relay's engine works the same way (gateway/media/sock_linux.go).
//
// Anything unusual goes through net.UDPConn as before: a send whose
// destination does not fit the socket's family or has a zone, and any
// send the kernel refuses (EAGAIN: the write then waits for the socket
// in the runtime's poller; an error: net.UDPConn tries once more and the
// caller gets its error).

// udpSock is a bound UDP socket: net.UDPConn for closing and the
// fallbacks, and its descriptor for the raw calls.
type udpSock struct {
	*net.UDPConn
	rc  syscall.RawConn
	fd  int  // -1: no raw calls (SyscallConn failed)
	six bool // an AF_INET6 socket (IPv4 destinations go v4-mapped)

	// mu orders Close after the raw sends in flight: once the
	// descriptor is closed its number may belong to another file.
	// Reads need no lock: RawConn.Read holds the descriptor.
	mu     sync.RWMutex
	closed bool
}

func newUDPSock(c *net.UDPConn) *udpSock {
	u := &udpSock{UDPConn: c, fd: -1}
	rc, err := c.SyscallConn()
	if err != nil {
		return u
	}
	_ = rc.Control(func(fd uintptr) {
		sa, err := unix.Getsockname(int(fd))
		if err != nil {
			return
		}
		switch sa.(type) {
		case *unix.SockaddrInet4:
		case *unix.SockaddrInet6:
			u.six = true
		default:
			return
		}
		u.fd = int(fd)
	})
	u.rc = rc
	return u
}

// Close closes the socket once no raw send is using its descriptor.
func (u *udpSock) Close() error {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	return u.UDPConn.Close()
}

// writeTo sends b to ap: a raw sendto, or net.UDPConn's write for
// anything else (see the top of this file).
func (u *udpSock) writeTo(b []byte, ap netip.AddrPort) error {
	if u.fd >= 0 && len(b) > 0 && u.sendRaw(b, ap) {
		return nil
	}
	_, err := u.UDPConn.WriteToUDPAddrPort(b, ap)
	return err
}

// sendRaw reports whether b was sent with one raw sendto.
func (u *udpSock) sendRaw(b []byte, ap netip.AddrPort) bool {
	a := ap.Addr()
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	var sa unsafe.Pointer
	var salen uintptr
	switch {
	case a.Zone() != "":
		return false
	case !u.six && a.Is4():
		sa4.Family = unix.AF_INET
		sa4.Addr = a.As4()
		putPort(&sa4.Port, ap.Port())
		sa, salen = unsafe.Pointer(&sa4), unix.SizeofSockaddrInet4
	case u.six && a.IsValid():
		sa6.Family = unix.AF_INET6
		sa6.Addr = a.As16() // IPv4 as v4-mapped
		putPort(&sa6.Port, ap.Port())
		sa, salen = unsafe.Pointer(&sa6), unix.SizeofSockaddrInet6
	default:
		return false
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.closed {
		return false
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(u.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT, uintptr(sa), salen)
	return e == 0
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	p := (*[2]byte)(unsafe.Pointer(dst))
	p[0], p[1] = byte(port>>8), byte(port)
}

// readBatch is how many datagrams one read takes at most (recvmmsg):
// those already queued when the read loop comes back for more, never a
// wait for more to arrive. The read loops are behind SIPp's bursts: in
// bench/sip at 4,000 calls/s a read took 7 datagrams on average (90% of
// reads more than one), so about one read system call per call instead
// of six; a queued datagram costs 0.7 µs to read instead of 1.15 µs
// (BenchmarkUDPReadQueued), 1-2% of a call's CPU, under the bench's
// noise. Each read loop holds readBatch buffers of maxMessage bytes.
// Tried and dropped (BenchmarkUDPEchoPaced, CPU per datagram): trying
// an empty socket 10 or 50 more times before parking (+10%, +35%), and
// read loops on locked threads blocked in ppoll instead of the runtime's
// poller (+75%, twice the context switches: every blocked loop wakes
// for each datagram, and sysmon hands their Ps off). A variable for the
// tests.
var readBatch = 8

// udpReader is one read loop's state: its buffers, and the raw
// recvmmsg RawConn.Read calls until the socket has a datagram. next
// hands the datagrams of a batch out one at a time, in order.
type udpReader struct {
	u    *udpSock
	buf  []byte   // net.UDPConn's reads (no raw calls)
	bufs [][]byte // one per datagram of a batch
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
	rsas []unix.RawSockaddrAny
	cnt  int // datagrams in the batch
	pos  int // the next one to hand out
	err  unix.Errno
	fn   func(fd uintptr) bool // r.recv, bound once (no allocation per read)
}

func (u *udpSock) newReader() *udpReader {
	r := &udpReader{u: u}
	if u.fd < 0 {
		r.buf = make([]byte, maxMessage)
		return r
	}
	n := max(readBatch, 1)
	r.bufs = make([][]byte, n)
	r.hdrs = make([]unix.Mmsghdr, n)
	r.iovs = make([]unix.Iovec, n)
	r.rsas = make([]unix.RawSockaddrAny, n)
	for i := range n {
		r.bufs[i] = make([]byte, maxMessage)
		r.iovs[i].Base = &r.bufs[i][0]
		r.iovs[i].SetLen(maxMessage)
		r.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.rsas[i]))
		r.hdrs[i].Hdr.Iov = &r.iovs[i]
		r.hdrs[i].Hdr.SetIovlen(1)
	}
	r.fn = r.recv
	return r
}

// recv is one non-blocking recvmmsg (the datagrams queued, up to
// readBatch); false: nothing there, park.
func (r *udpReader) recv(fd uintptr) bool {
	for {
		for i := range r.hdrs {
			r.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrAny
		}
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)),
			unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		r.cnt, r.pos, r.err = int(n), 0, e
		return true
	}
}

// next reads one datagram: its bytes (valid until the next call), its
// source, or an error (net.ErrClosed once the socket is closed).
func (r *udpReader) next() ([]byte, netip.AddrPort, error) {
	if r.u.fd < 0 {
		n, ap, err := r.u.ReadFromUDPAddrPort(r.buf)
		return r.buf[:n], ap, err
	}
	for r.pos >= r.cnt {
		r.cnt, r.pos = 0, 0
		if err := r.u.rc.Read(r.fn); err != nil {
			return nil, netip.AddrPort{}, err
		}
		if r.err != 0 {
			return nil, netip.AddrPort{}, r.err
		}
	}
	i := r.pos
	r.pos++
	return r.bufs[i][:r.hdrs[i].Len], source(&r.rsas[i]), nil
}

// source is the address the kernel put in rsa.
func source(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), getPort(&sa.Port))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(zoneName(int(sa.Scope_id)))
		}
		return netip.AddrPortFrom(a, getPort(&sa.Port))
	}
	return netip.AddrPort{}
}

func getPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// zoneName is the interface name of a scope id, as net names it (its
// number when there is no such interface).
func zoneName(idx int) string {
	if ifi, err := net.InterfaceByIndex(idx); err == nil {
		return ifi.Name
	}
	return strconv.Itoa(idx)
}
