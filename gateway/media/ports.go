package media

import (
	"fmt"
	"net/netip"
	"sync"
)

// portPool hands out RTP/RTCP port pairs (even RTP port). A pair is never
// handed out twice at once. Released pairs go to the back of the queue so
// that a port is reused as late as possible (stray packets from a finished
// call are less likely to reach a new one).
type portPool struct {
	mu    sync.Mutex
	free  []int // ring of free even ports
	head  int
	n     int // free count
	total int
	inUse map[int]bool
}

func newPortPool(lo, hi int) *portPool {
	if lo%2 == 1 {
		lo++
	}
	p := &portPool{inUse: make(map[int]bool)}
	for port := lo; port+1 <= hi; port += 2 {
		p.free = append(p.free, port)
	}
	p.n = len(p.free)
	p.total = len(p.free)
	return p
}

func (p *portPool) get() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n == 0 {
		return 0, false
	}
	port := p.free[p.head]
	p.head = (p.head + 1) % len(p.free)
	p.n--
	p.inUse[port] = true
	return port, true
}

func (p *portPool) put(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.inUse[port] {
		panic(fmt.Sprintf("media: port %d released twice", port))
	}
	delete(p.inUse, port)
	p.free[(p.head+p.n)%len(p.free)] = port
	p.n++
}

func (p *portPool) used() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total - p.n
}

// pair is one bound RTP/RTCP socket pair.
type pair struct {
	port      int // even RTP port
	rtp, rtcp *sock
	rtpAddr   netip.AddrPort
	rtcpAddr  netip.AddrPort
}

// bindPair takes a pair from the pool and binds both sockets. A port that
// cannot be bound (another process holds it) goes back to the pool and
// the next one is tried; after a full turn it gives up with ErrNoPorts.
func (p *portPool) bindPair(ip netip.Addr) (*pair, error) {
	var lastErr error
	for i := 0; i < p.total; i++ {
		port, ok := p.get()
		if !ok {
			break
		}
		rtp, err := openSock(ip, port)
		if err != nil {
			lastErr = err
			p.put(port)
			continue
		}
		rtcp, err := openSock(ip, port+1)
		if err != nil {
			lastErr = err
			rtp.close()
			p.put(port)
			continue
		}
		rtcp.rtcp = true
		return &pair{port: port, rtp: rtp, rtcp: rtcp, rtpAddr: rtp.local, rtcpAddr: rtcp.local}, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w (last bind error: %v)", ErrNoPorts, lastErr)
	}
	return nil, ErrNoPorts
}
