package media

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Linux engine: a few worker goroutines, each with its own epoll
// set, own the relay sockets (raw non-blocking file descriptors, not
// net.UDPConn). For every socket that is readable a worker reads a batch
// of datagrams with recvmmsg and forwards them with sendto; it parks in
// the Go runtime's poller only when none of its sockets has anything.
// One goroutine per socket (the portable engine, used before) cost a
// park, a wake-up and a run-queue turn for nearly every packet; at
// 100,000 packets/s on two cores those queues were most of the latency
// the relay added (p99 0.6-1.3 ms against 0.16-0.25 ms now, bench/media
// at 1,000 calls).
//
// All four sockets of a session belong to one worker, so the session's
// ioMu is contended only by Close. A socket is registered with its port
// (index into engine.table) and a generation, never its fd: an event
// that was already returned for a socket closed since cannot be taken
// for a new socket that got the same fd number or port.

// batchLen is how many datagrams one recvmmsg may return. A batch that
// comes back short means the socket is drained.
const batchLen = 8

// maxRounds bounds the batches read from one socket per readiness event,
// so that one busy socket cannot starve the others of its worker (the
// epoll set is level-triggered: what is left is reported again).
const maxRounds = 4

type sock struct {
	fd    int
	v6    bool
	local netip.AddrPort
	leg   *leg
	rtcp  bool
	// peer the socket is connected to (nil: unconnected). Once a leg's
	// source is fixed its socket is connected to it: the kernel then
	// drops datagrams from anyone else and both directions skip the
	// per-packet route and socket lookups.
	peer atomic.Pointer[netip.AddrPort]
	gen  uint32  // set by engine.add before the socket is published
	w    *worker // the worker polling it; nil until engine.add

	// ctlMu orders close against connect and disconnect, which a re-offer
	// runs from the signalling side: once the descriptor is closed its
	// number may belong to another socket, which must not be touched.
	// Reads and sends need no lock: the worker does them under the
	// session's ioMu, which close is called with.
	ctlMu  sync.Mutex
	closed bool
}

// osScratch holds the destination sockaddr of a send, per worker.
type osScratch struct {
	sa4 unix.RawSockaddrInet4
	sa6 unix.RawSockaddrInet6
}

func sockaddr(to netip.AddrPort, v6 bool) unix.Sockaddr {
	if v6 {
		return &unix.SockaddrInet6{Port: int(to.Port()), Addr: to.Addr().As16()}
	}
	return &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()}
}

func openSock(ip netip.Addr, port int) (*sock, error) {
	ip = ip.Unmap()
	local := netip.AddrPortFrom(ip, uint16(port))
	domain, v6 := unix.AF_INET, false
	if !ip.Is4() {
		domain, v6 = unix.AF_INET6, true
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("media: socket: %w", err)
	}
	if v6 {
		// As net.ListenUDP("udp6", ...) does: IPv6 only.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("media: socket %s: %w", local, err)
		}
	}
	if err := unix.Bind(fd, sockaddr(local, v6)); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("media: bind %s: %w", local, err)
	}
	return &sock{fd: fd, v6: v6, local: local}, nil
}

// close closes the descriptor once. engine.remove calls it with the
// session's ioMu held, so no worker is reading the descriptor then.
func (s *sock) close() {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	if !s.closed {
		s.closed = true
		unix.Close(s.fd)
	}
}

var errFamily = errors.New("media: destination address family differs from the socket's")

// sendTo sends b to `to` (connected: a plain send). It does not allocate.
// The socket is non-blocking, so the raw system call cannot park the
// thread; a full send buffer drops the datagram (EAGAIN), as UDP may.
func (s *sock) sendTo(b []byte, to netip.AddrPort, o *osScratch) error {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	var sa unsafe.Pointer // nil: connected to `to`, a plain send
	var salen uintptr
	switch pr := s.peer.Load(); {
	case pr != nil && *pr == to:
	case !s.v6:
		if !to.Addr().Is4() {
			return errFamily
		}
		o.sa4.Family = unix.AF_INET
		o.sa4.Addr = to.Addr().As4()
		putPort(&o.sa4.Port, to.Port())
		sa, salen = unsafe.Pointer(&o.sa4), unix.SizeofSockaddrInet4
	default:
		if !to.Addr().Is6() {
			return errFamily
		}
		o.sa6.Family = unix.AF_INET6
		o.sa6.Addr = to.Addr().As16()
		putPort(&o.sa6.Port, to.Port())
		sa, salen = unsafe.Pointer(&o.sa6), unix.SizeofSockaddrInet6
	}
	if _, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), uintptr(p), uintptr(len(b)), 0, uintptr(sa), salen); e != 0 {
		return e
	}
	return nil
}

// putPort stores port in network byte order.
func putPort(dst *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(dst))
	b[0], b[1] = byte(port>>8), byte(port)
}

// connect fixes the socket's peer (see sock.peer). Errors leave it
// unconnected, which only costs speed.
func (s *sock) connect(to netip.AddrPort) {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	if p := s.peer.Load(); s.closed || p != nil && *p == to {
		return
	}
	if to.Addr().Is4() == s.v6 {
		return
	}
	if err := unix.Connect(s.fd, sockaddr(to, s.v6)); err != nil {
		return
	}
	s.peer.Store(&to)
}

// disconnect lets the socket receive from anyone again (connect to
// AF_UNSPEC dissolves the association).
func (s *sock) disconnect() {
	s.ctlMu.Lock()
	defer s.ctlMu.Unlock()
	if s.closed || s.peer.Load() == nil {
		return
	}
	s.peer.Store(nil)
	var sa unix.RawSockaddr
	sa.Family = unix.AF_UNSPEC
	unix.RawSyscall(unix.SYS_CONNECT, uintptr(s.fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
}

// batch is a worker's receive state, reused for every read.
type batch struct {
	msgs  [batchLen]unix.Mmsghdr
	iov   [batchLen]unix.Iovec
	names [batchLen]unix.RawSockaddrAny
	bufs  [batchLen][maxPacket]byte
	sc    scratch
}

func newBatch() *batch {
	b := new(batch)
	for i := range b.msgs {
		b.iov[i].Base = &b.bufs[i][0]
		b.iov[i].SetLen(maxPacket)
		b.msgs[i].Hdr.Iov = &b.iov[i]
		b.msgs[i].Hdr.SetIovlen(1)
		b.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

// drain reads and handles what the socket holds (up to maxRounds
// batches). It holds the session's ioMu throughout: Close takes it
// before closing the descriptor, so the descriptor stays valid here.
func (sk *sock) drain(b *batch) {
	s := sk.leg.s
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	if s.ioClosed {
		return
	}
	for round := 0; round < maxRounds; round++ {
		for i := range b.msgs {
			b.msgs[i].Hdr.Namelen = unix.SizeofSockaddrAny
			b.msgs[i].Len = 0
		}
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(sk.fd), uintptr(unsafe.Pointer(&b.msgs[0])), batchLen, unix.MSG_DONTWAIT, 0, 0)
		if e != 0 {
			if e == unix.EAGAIN || e == unix.EINTR {
				return
			}
			// Another error (ECONNREFUSED after an ICMP port unreachable
			// on a connected socket) is consumed by this read: read
			// again, datagrams may be queued behind it.
			continue
		}
		for i := 0; i < int(n); i++ {
			sk.leg.packet(b.bufs[i][:b.msgs[i].Len], sockaddrPort(&b.names[i]), sk.rtcp, &b.sc)
		}
		if int(n) < batchLen {
			return
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

// engine owns the workers and the table of registered sockets.
type engine struct {
	portMin int
	table   []atomic.Pointer[sock] // by port - portMin
	ws      []*worker
	next    atomic.Uint32
	gen     atomic.Uint32
	closing atomic.Bool
	wg      sync.WaitGroup
	once    sync.Once
}

// worker is one epoll set and the goroutine that serves it. The epoll
// descriptor is itself registered with the Go runtime's poller (an epoll
// set is readable while it has ready events): when none of its sockets
// has anything to read the goroutine parks there, like any network
// goroutine, instead of blocking a thread in epoll_wait. A thread
// blocked in a system call makes the runtime's monitor (sysmon) take its
// P away and keep polling at its shortest interval; with a blocking
// epoll_wait, perf put 6% of the relay's CPU in sysmon's nanosleep alone.
type worker struct {
	e    *engine
	epfd int
	f    *os.File // owns epfd
}

// newEngine starts `workers` workers (0: GOMAXPROCS) for sockets bound
// to ports in [portMin, portMax].
func newEngine(portMin, portMax, workers int) (*engine, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	e := &engine{portMin: portMin, table: make([]atomic.Pointer[sock], portMax-portMin+1)}
	for i := 0; i < workers; i++ {
		w, err := newWorker(e)
		if err != nil {
			e.close()
			return nil, err
		}
		e.ws = append(e.ws, w)
		e.wg.Add(1)
		go w.run()
	}
	return e, nil
}

func newWorker(e *engine) (*worker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("media: epoll_create1: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to the runtime's poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("media: epoll fd: %w", err)
	}
	w := &worker{e: e, epfd: epfd, f: os.NewFile(uintptr(epfd), "media-epoll")}
	// A file the runtime could not add to its poller has no deadlines;
	// the worker would then never be woken.
	if err := w.f.SetReadDeadline(time.Time{}); err != nil {
		w.f.Close()
		return nil, fmt.Errorf("media: the runtime poller does not take an epoll descriptor: %w", err)
	}
	return w, nil
}

// run serves the worker's sockets until the engine closes: it takes the
// ready sockets with a non-blocking epoll_wait and drains each, for as
// long as there are any, then parks in the runtime's poller until the
// epoll set has events again. The set is level-triggered, so a socket
// left with datagrams (maxRounds) is reported again.
func (w *worker) run() {
	defer w.e.wg.Done()
	rc, err := w.f.SyscallConn()
	if err != nil {
		return
	}
	var evs [128]unix.EpollEvent
	b := newBatch()
	poll := func(fd uintptr) bool {
		for !w.e.closing.Load() {
			n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
			if e != 0 {
				if e == unix.EINTR {
					continue
				}
				return true
			}
			if n == 0 {
				return false // park until the set is readable
			}
			for i := range evs[:n] {
				ev := &evs[i]
				idx := int(ev.Fd)
				if idx < 0 || idx >= len(w.e.table) {
					continue
				}
				sk := w.e.table[idx].Load()
				if sk == nil || sk.gen != uint32(ev.Pad) {
					continue // closed since the event was returned
				}
				sk.drain(b)
			}
		}
		return true
	}
	for !w.e.closing.Load() {
		if err := rc.Read(poll); err != nil {
			return // the epoll file is closed
		}
	}
}

// close stops the workers and waits for them. Sessions are closed first
// (Manager.Close), so no socket is registered any more.
func (e *engine) close() {
	e.once.Do(func() {
		e.closing.Store(true)
		for _, w := range e.ws {
			w.f.Close() // wakes a parked worker with an error
		}
		e.wg.Wait()
	})
}

// add registers the session's four sockets with one worker.
func (e *engine) add(s *Session) error {
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	if s.ioClosed {
		return ErrSessionClosed
	}
	w := e.ws[int(e.next.Add(1))%len(e.ws)]
	for _, sk := range s.socks() {
		idx := int(sk.local.Port()) - e.portMin
		if idx < 0 || idx >= len(e.table) {
			return fmt.Errorf("media: port %d outside the engine's range", sk.local.Port())
		}
		sk.gen = e.gen.Add(1)
		e.table[idx].Store(sk)
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(idx), Pad: int32(sk.gen)}
		if err := unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, sk.fd, &ev); err != nil {
			e.table[idx].CompareAndSwap(sk, nil)
			return fmt.Errorf("media: epoll_ctl: %w", err)
		}
		sk.w = w
	}
	return nil
}

// remove unregisters and closes the session's sockets. Called with the
// session's ioMu held and ioClosed set.
func (e *engine) remove(s *Session) {
	for _, sk := range s.socks() {
		if sk.w != nil {
			unix.EpollCtl(sk.w.epfd, unix.EPOLL_CTL_DEL, sk.fd, nil)
			e.table[int(sk.local.Port())-e.portMin].CompareAndSwap(sk, nil)
		}
		sk.close()
	}
}
