package transport

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
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

	// Sends held while a read loop works through a batch (see below);
	// under holds.mu.
	flushing  bool         // a read loop is sending ready
	held      *heldSends   // the set being filled
	ready     []*heldSends // sets to send, in order
	heldBytes int          // in held and ready
	spare     []*heldSends // emptied ones, for the next batches
	dirty     bool         // in holds.dirty
	fail      func([]byte, netip.AddrPort, error)
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

// writeTo sends b to ap: held for the batch's sendmmsg while a read loop
// works through a batch, else a raw sendto, or net.UDPConn's write for
// anything else (see the top of this file).
func (u *udpSock) writeTo(b []byte, ap netip.AddrPort) error {
	if u.fd >= 0 && len(b) > 0 && (mayHold() && u.hold(b, ap) || u.sendRaw(b, ap)) {
		return nil
	}
	_, err := u.UDPConn.WriteToUDPAddrPort(b, ap)
	return err
}

// sockaddr writes ap into sa as the socket's family needs it (IPv4 as
// v4-mapped on an AF_INET6 socket) and returns its length; 0: ap does not
// fit the socket, or has a zone (net.UDPConn's write then).
func (u *udpSock) sockaddr(sa *unix.RawSockaddrInet6, ap netip.AddrPort) uint32 {
	a := ap.Addr()
	switch {
	case a.Zone() != "":
		return 0
	case !u.six && a.Is4():
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		putPort(&sa4.Port, ap.Port())
		return unix.SizeofSockaddrInet4
	case u.six && a.IsValid():
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
		putPort(&sa.Port, ap.Port())
		return unix.SizeofSockaddrInet6
	}
	return 0
}

// sendRaw reports whether b was sent with one raw sendto.
func (u *udpSock) sendRaw(b []byte, ap netip.AddrPort) bool {
	var sa unix.RawSockaddrInet6
	salen := u.sockaddr(&sa, ap)
	if salen == 0 {
		return false
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.closed {
		return false
	}
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(u.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT, uintptr(unsafe.Pointer(&sa)), uintptr(salen))
	return e == 0
}

// Held sends. A read loop that took more than one datagram from its
// socket (recvmmsg) holds the sends made while it handles them, through
// any of the process's UDP sockets and from any goroutine, and sends
// them with one sendmmsg per socket before it reads again: the datagrams
// a batch brings in mostly cause as many going out (a request forwarded,
// a response relayed, a 100 Trying), and an inbound call's go out through
// the other listener (carriers' in, agents' out, and back). A raw sendto
// to loopback cost 4-6 µs of CPU per datagram on the bench machine, one
// datagram of a sendmmsg of 8 about 2-3 µs (a throwaway benchmark, not
// kept: a system call's entry and exit, and the receiver's wake-up, paid
// once per batch). In bench/sip
// at 5,000 calls/s callgate's CPU per call fell 12-17%. When no read
// loop is in a batch and nothing is held, a send goes at once, as
// before (one atomic load more).
//
// A socket's sends leave in the order they were made: while sends are
// held or being sent, every other send through the socket is held behind
// them. Without that, a response relayed at once by another read loop
// could overtake the 100 Trying held before it (SIPp's caller, expecting
// the 100, then failed the call).
//
// A held send is copied (the caller's buffer is its own again at once)
// and reported sent; the kernel's refusal of one, later (the socket's
// buffer full: net.UDPConn's write then waits for room, as a direct send
// does; an error), is counted and logged by the socket's transport
// (setFail), as any failed send, but its caller, already gone on, is not
// told: to it the datagram was lost on the way, which its timers (RFC
// 3261 Timer A, B, E, F) already cover. A send whose destination needs
// net.UDPConn (a zone, another family) goes at once, as does any while
// maxHeldBytes are already waiting.
//
// The read loops never wait on the network or on a lookup (those run in
// other goroutines), so a batch ends within the time its datagrams take
// to handle; a read loop stuck in a handler would hold every socket's
// sends up to maxHeldBytes, after which they go at once.

// maxHeld is the most datagrams one sendmmsg sends; maxHeldBytes bounds
// what a socket holds in all.
const (
	maxHeld      = 64
	maxHeldBytes = 4 << 20
)

// heldSends are sends held together: their bytes one after the other,
// each one's end and destination, and the sendmmsg arrays.
type heldSends struct {
	data []byte
	ends []int
	sas  []unix.RawSockaddrInet6
	sal  []uint32
	hdrs []unix.Mmsghdr
	iovs []unix.Iovec
}

// holds is the process's: a read loop in a batch holds the sends of
// every socket (an INVITE read on the carriers' socket leaves through the
// agents' one, its 180 comes back the other way). mu guards the sockets'
// held sends too.
var holds struct {
	mu       sync.Mutex
	batching atomic.Int32 // read loops in a batch (changed under mu)
	dirty    []*udpSock   // sockets with sends held, ready or being sent
	pending  atomic.Int32 // len(dirty) (changed under mu)
}

// setFail sets what counts and logs a held send the kernel refused.
func (u *udpSock) setFail(fail func([]byte, netip.AddrPort, error)) { u.fail = fail }

// hold reports whether b was held, behind the sends held before it: a
// read loop is in a batch, or this socket's held sends are being sent.
func (u *udpSock) hold(b []byte, ap netip.AddrPort) bool {
	var sa unix.RawSockaddrInet6
	salen := u.sockaddr(&sa, ap)
	if salen == 0 {
		return false
	}
	holds.mu.Lock()
	defer holds.mu.Unlock()
	if holds.batching.Load() == 0 && !u.dirty || u.heldBytes+len(b) > maxHeldBytes {
		return false
	}
	h := u.held
	if h == nil || len(h.ends) >= maxHeld {
		if h != nil {
			u.ready = append(u.ready, h)
		}
		if n := len(u.spare); n > 0 {
			h, u.spare = u.spare[n-1], u.spare[:n-1]
		} else {
			h = &heldSends{}
		}
		u.held = h
	}
	h.sas = append(h.sas, sa)
	h.sal = append(h.sal, salen)
	h.data = append(h.data, b...)
	h.ends = append(h.ends, len(h.data))
	u.heldBytes += len(b)
	if !u.dirty {
		u.dirty = true
		holds.dirty = append(holds.dirty, u)
		holds.pending.Add(1)
	}
	return true
}

// mayHold: no lock needed to know that a send goes at once (the usual
// case with no load); a stale true only costs the lock.
func mayHold() bool { return holds.batching.Load() > 0 || holds.pending.Load() > 0 }

// startBatch: a read loop took several datagrams; sends are held until
// its endBatch.
func startBatch() {
	holds.mu.Lock()
	holds.batching.Add(1)
	holds.mu.Unlock()
}

// flushRounds is how many sets of held sends of a socket a read loop
// sends in one endBatch while another read loop is in a batch (that one
// sends the rest at its end, so that neither only sends).
const flushRounds = 4

// endBatch: the read loop handled its batch; the sends held so far (its
// own and any other's, on every socket) leave now, each socket's in
// order, with sendmmsg, unless another read loop is sending a socket's
// (it sends these after its own).
func endBatch() {
	holds.mu.Lock()
	holds.batching.Add(-1)
	var buf [4]*udpSock
	done := buf[:0] // flushed in this call: not again while a read loop is in a batch
	for again := true; again; {
		again = false
		for _, u := range holds.dirty {
			// With no read loop in a batch, nobody else would send what
			// was held on a socket flushed earlier in this call while the
			// lock was released for another's sends.
			if u.flushing || holds.batching.Load() > 0 && slices.Contains(done, u) {
				continue
			}
			u.readyHeld()
			if len(u.ready) > 0 {
				done = append(done, u)
				u.flush() // holds.mu released while sending: dirty may change
				again = true
				break
			}
		}
	}
	for i := 0; i < len(holds.dirty); { // the sockets with nothing held leave the list
		u := holds.dirty[i]
		if u.flushing || u.held != nil || len(u.ready) > 0 {
			i++
			continue
		}
		u.dirty = false
		last := len(holds.dirty) - 1
		holds.dirty[i], holds.dirty[last] = holds.dirty[last], nil
		holds.dirty = holds.dirty[:last]
		holds.pending.Add(-1)
	}
	holds.mu.Unlock()
}

// flush sends u's ready sets, in order: all of them, and what is held
// meanwhile, when no read loop is in a batch; else at most flushRounds.
// holds.mu held, released while sending.
func (u *udpSock) flush() {
	if len(u.ready) == 0 {
		return
	}
	u.flushing = true
	for round := 0; ; round++ {
		h := u.ready[0]
		u.ready[0] = nil
		u.ready = u.ready[1:]
		u.heldBytes -= len(h.data)
		holds.mu.Unlock()
		u.sendHeld(h)
		h.data, h.ends, h.sas, h.sal = h.data[:0], h.ends[:0], h.sas[:0], h.sal[:0]
		holds.mu.Lock()
		u.spare = append(u.spare, h)
		if holds.batching.Load() == 0 {
			u.readyHeld() // held meanwhile, and nobody else to send them
		} else if round+1 >= flushRounds {
			break // a read loop in a batch sends the rest at its end
		}
		if len(u.ready) == 0 {
			break
		}
	}
	u.flushing = false
}

// readyHeld queues the set being filled for sending. holds.mu held.
func (u *udpSock) readyHeld() {
	switch h := u.held; {
	case h == nil:
	case len(h.ends) > 0:
		u.ready = append(u.ready, h)
	default:
		u.spare = append(u.spare, h)
	}
	u.held = nil
}

// sendHeld sends h's datagrams with sendmmsg; the kernel's refusal of one
// sends that one with net.UDPConn's write (waiting for room when the
// socket's buffer is full) and the rest with sendmmsg again.
func (u *udpSock) sendHeld(h *heldSends) {
	n := len(h.ends)
	if cap(h.hdrs) < n {
		h.hdrs, h.iovs = make([]unix.Mmsghdr, n, maxHeld), make([]unix.Iovec, n, maxHeld)
	}
	h.hdrs, h.iovs = h.hdrs[:n], h.iovs[:n]
	start := 0
	for i, end := range h.ends {
		h.hdrs[i] = unix.Mmsghdr{}
		h.iovs[i].Base = &h.data[start]
		h.iovs[i].SetLen(end - start)
		h.hdrs[i].Hdr.Iov = &h.iovs[i]
		h.hdrs[i].Hdr.SetIovlen(1)
		h.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&h.sas[i]))
		h.hdrs[i].Hdr.Namelen = h.sal[i]
		start = end
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	for i := 0; i < n; {
		if !u.closed {
			k, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(u.fd), uintptr(unsafe.Pointer(&h.hdrs[i])), uintptr(n-i),
				unix.MSG_DONTWAIT, 0, 0)
			if e == unix.EINTR {
				continue
			}
			if e == 0 {
				i += int(k)
				continue
			}
		}
		// datagram i was refused (or the socket is closing)
		b := h.data[h.ends[i]-int(h.iovs[i].Len) : h.ends[i]]
		ap := h.dest(i)
		if _, err := u.UDPConn.WriteToUDPAddrPort(b, ap); err != nil && u.fail != nil {
			u.fail(b, ap, err)
		}
		i++
	}
}

// dest is the destination of held datagram i.
func (h *heldSends) dest(i int) netip.AddrPort {
	sa := &h.sas[i]
	if sa.Family == unix.AF_INET {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), getPort(&sa4.Port))
	}
	return unmap(netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), getPort(&sa.Port)))
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

	batch bool // sends held (more than one datagram read)
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
		if r.batch { // the batch is handled: its sends leave
			r.batch = false
			endBatch()
		}
		r.cnt, r.pos = 0, 0
		if err := r.u.rc.Read(r.fn); err != nil {
			return nil, netip.AddrPort{}, err
		}
		if r.err != 0 {
			return nil, netip.AddrPort{}, r.err
		}
		if r.cnt > 1 {
			r.batch = true
			startBatch()
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
