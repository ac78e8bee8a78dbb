package transport

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestUDPQueuedDatagramsInOrder: datagrams queued on the socket before a
// read loop runs (a read then takes several at once, recvmmsg) reach the
// Handler one at a time in the order sent, each with its own bytes and
// its own sender, a 60,000-byte one among small ones included; so do
// more than one batch holds.
func TestUDPQueuedDatagramsInOrder(t *testing.T) {
	h := &recHandler{allow: netip.MustParseAddr("127.0.0.1")}
	tp, err := New(Config{Addr: "127.0.0.1:0", DNS: DNSConfig{Server: "127.0.0.1:1", Timeout: time.Second}}, h, testMetrics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	var peers [2]*net.UDPConn
	for i := range peers {
		if peers[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		defer peers[i].Close()
	}
	big := bytes.Repeat([]byte("abcdefghij"), 6000)
	n := 3*readBatch + 3
	var want []string
	var from []netip.AddrPort
	for i := 0; i < n; i++ {
		p := []byte(fmt.Sprintf("datagram %d", i))
		if i == readBatch/2 {
			p = append(big, p...)
		}
		pc := peers[i%2]
		if _, err := pc.WriteToUDPAddrPort(p, tp.UDPAddr()); err != nil {
			t.Fatal(err)
		}
		want = append(want, string(p))
		from = append(from, pc.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	// on loopback a datagram is queued before sendto returns: all n wait
	tp.Serve(1) // one read loop: the handler sees the socket's order
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.datagrams) < n {
			return fmt.Errorf("%d of %d datagrams", len(h.datagrams), n)
		}
		return nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.datagrams) != n {
		t.Fatalf("%d datagrams, want %d", len(h.datagrams), n)
	}
	for i, d := range h.datagrams {
		if d != want[i] {
			t.Errorf("datagram %d: %d bytes ending %q, want %d bytes ending %q", i, len(d), tail(d), len(want[i]), tail(want[i]))
		}
		if h.froms[i].Addr != from[i] || h.froms[i].Proto != UDP {
			t.Errorf("datagram %d from %+v, want udp %s", i, h.froms[i], from[i])
		}
	}
}

func tail(s string) string { return s[max(0, len(s)-16):] }

// echoHandler sends every datagram back to where it came from, as the
// proxy forwards one (a datagram in, one out, on the read loop).
type echoHandler struct{ tp *Transport }

func (h *echoHandler) AllowedSource(netip.Addr) bool { return true }
func (h *echoHandler) RefuseSource([]byte, Peer)     {}
func (h *echoHandler) HandleDatagram(b []byte, from Peer) {
	_ = h.tp.Send(from, b)
}
func (h *echoHandler) HandleMessage(sip.Message, Peer) {}

// BenchmarkUDPEchoPaced: b.N datagrams of 600 bytes offered at 12,000/s
// (bursts of 12 every millisecond, the way SIPp paces 2,000 calls/s of
// six datagrams in) to a transport that sends each back from its read
// loop; reports the process's CPU and kernel time per datagram (the
// sending peer's included) and its voluntary and involuntary context
// switches per datagram, the regime where read loops park and wake
// between bursts.
func BenchmarkUDPEchoPaced(b *testing.B) {
	h := &echoHandler{}
	tp, err := New(Config{Addr: "127.0.0.1:0", DNS: DNSConfig{Server: "127.0.0.1:1"}}, h, testMetrics(), nil)
	if err != nil {
		b.Fatal(err)
	}
	h.tp = tp
	tp.Serve(runtime.GOMAXPROCS(0))
	defer tp.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	_ = peer.SetReadBuffer(8 << 20)
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, maxMessage)
		n := 0
		for {
			if _, _, err := peer.ReadFromUDPAddrPort(buf); err != nil {
				got <- n
				return
			}
			if n++; n == b.N {
				got <- n
			}
		}
	}()
	msg := bytes.Repeat([]byte("x"), 600)
	to := tp.UDPAddr()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	tick := time.NewTicker(time.Millisecond)
	for sent := 0; sent < b.N; {
		for i := 0; i < 12 && sent < b.N; i++ {
			if _, err := peer.WriteToUDPAddrPort(msg, to); err != nil {
				b.Fatal(err)
			}
			sent++
		}
		<-tick.C
	}
	tick.Stop()
	select {
	case n := <-got:
		if n < b.N {
			b.Fatalf("%d of %d echoes", n, b.N)
		}
	case <-time.After(30 * time.Second):
		b.Fatalf("echoes missing after 30 s")
	}
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	us := func(a, z syscall.Timeval) float64 {
		return float64(z.Sec-a.Sec)*1e6 + float64(z.Usec-a.Usec)
	}
	b.ReportMetric(us(ru0.Utime, ru1.Utime)/float64(b.N)+us(ru0.Stime, ru1.Stime)/float64(b.N), "cpu-us/dgram")
	b.ReportMetric(us(ru0.Stime, ru1.Stime)/float64(b.N), "sys-us/dgram")
	b.ReportMetric(float64(ru1.Nvcsw-ru0.Nvcsw)/float64(b.N), "vcsw/dgram")
	b.ReportMetric(float64(ru1.Nivcsw-ru0.Nivcsw)/float64(b.N), "ivcsw/dgram")
}

// BenchmarkUDPReadQueued: reading datagrams of 600 bytes already queued
// on the socket, 8 at a time (the way SIPp's bursts wait for a busy read
// loop), one recvfrom each (batch=1) against one recvmmsg per read
// (batch=8); the peer's sends are outside the timer, and the reads never
// wait, so ns/op is the CPU of reading one datagram.
func BenchmarkUDPReadQueued(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			defer func(old int) { readBatch = old }(readBatch)
			readBatch = n
			c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			_ = c.SetReadBuffer(4 << 20)
			u := newUDPSock(c)
			defer u.Close()
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer peer.Close()
			to := c.LocalAddr().(*net.UDPAddr).AddrPort()
			msg := bytes.Repeat([]byte("x"), 600)
			r := u.newReader()
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				b.StopTimer()
				k := min(8, b.N-done)
				for i := 0; i < k; i++ {
					if _, err := peer.WriteToUDPAddrPort(msg, to); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				for i := 0; i < k; i++ {
					if d, _, err := r.next(); err != nil || len(d) != len(msg) {
						b.Fatalf("read %d bytes: %v", len(d), err)
					}
				}
				done += k
			}
		})
	}
}

// batchHandler echoes each datagram to its sender: from the read loop for
// peer 0's, from a goroutine of its own for peer 1's (a timer's send, say);
// a datagram "refuse" also gets a send the kernel refuses (port 0).
type batchHandler struct {
	tp    *Transport
	odd   netip.AddrPort // peer 1
	other sync.WaitGroup
}

func (h *batchHandler) AllowedSource(netip.Addr) bool { return true }
func (h *batchHandler) RefuseSource([]byte, Peer)     {}
func (h *batchHandler) HandleDatagram(b []byte, from Peer) {
	if string(b) == "refuse" {
		_ = h.tp.Send(Peer{Proto: UDP, Addr: netip.MustParseAddrPort("127.0.0.1:0")}, b)
	}
	if from.Addr == h.odd {
		cp := append([]byte(nil), b...)
		h.other.Add(1)
		go func() {
			defer h.other.Done()
			_ = h.tp.Send(from, cp)
		}()
		return
	}
	_ = h.tp.Send(from, b)
}
func (h *batchHandler) HandleMessage(sip.Message, Peer) {}

// TestUDPBatchSends: the sends made while a read loop handles a batch of
// datagrams (its own and another goroutine's) are held and leave
// together (sendmmsg) when the batch is handled: every one arrives, with
// its bytes, a big one included, those of the read loop in the order
// sent; one the kernel refuses in the middle of a batch is counted as a
// failed send (stage write) and the rest still leave.
func TestUDPBatchSends(t *testing.T) {
	h := &batchHandler{}
	m := testMetrics()
	tp, err := New(Config{Addr: "127.0.0.1:0", DNS: DNSConfig{Server: "127.0.0.1:1", Timeout: time.Second}}, h, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	closeTP := func() { once.Do(tp.Close) }
	defer closeTP()
	h.tp = tp
	var peers [2]*net.UDPConn
	for i := range peers {
		if peers[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		defer peers[i].Close()
		_ = peers[i].SetReadBuffer(4 << 20)
	}
	h.odd = peers[1].LocalAddr().(*net.UDPAddr).AddrPort()
	big := string(bytes.Repeat([]byte("abcdefghij"), 6000))
	n := 3*readBatch + 3
	var want [2][]string
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("datagram %d", i)
		switch i {
		case readBatch / 2:
			p = big + p
		case readBatch + 2:
			p = "refuse"
		}
		if _, err := peers[i%2].WriteToUDPAddrPort([]byte(p), tp.UDPAddr()); err != nil {
			t.Fatal(err)
		}
		want[i%2] = append(want[i%2], p)
	}
	// on loopback a datagram is queued before sendto returns: all n wait,
	// and the one read loop takes them readBatch at a time
	tp.Serve(1)
	var got [2][]string
	for i, pc := range peers {
		buf := make([]byte, maxMessage)
		for len(got[i]) < len(want[i]) {
			_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, _, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("peer %d: %d of %d echoes: %v", i, len(got[i]), len(want[i]), err)
			}
			got[i] = append(got[i], string(buf[:k]))
		}
	}
	// the handler's Add happen before Wait for the race detector too (a
	// datagram is no synchronisation to it): the read loop ends first
	closeTP()
	h.other.Wait()
	for j := range want[0] {
		if got[0][j] != want[0][j] {
			t.Errorf("echo %d to peer 0: %d bytes ending %q, want %d bytes ending %q", j, len(got[0][j]), tail(got[0][j]), len(want[0][j]), tail(want[0][j]))
		}
	}
	slices.Sort(got[1])
	slices.Sort(want[1])
	if !slices.Equal(got[1], want[1]) {
		t.Errorf("echoes to peer 1 %q, want %q", got[1], want[1])
	}
	if v := testutil.ToFloat64(m.SendErrors.WithLabelValues("udp", "write")); v != 1 {
		t.Errorf("send_errors_total{udp,write} = %v, want 1 (the send to port 0)", v)
	}
	// held sends left in batches: a used set of held sends is back
	heldAndSent(t, tp.udp)
}

// heldAndSent: u held sends (a set of them is back among the spares),
// and none is left once the read loops are idle (the last flush may
// still be putting its set back when the peer has the datagrams).
func heldAndSent(t *testing.T, u *udpSock) {
	t.Helper()
	testwait.CheckFor(t, 10*time.Second, time.Millisecond, func() error {
		holds.mu.Lock()
		defer holds.mu.Unlock()
		if u.held != nil || len(u.ready) != 0 || u.heldBytes != 0 || u.dirty || u.flushing {
			return fmt.Errorf("sends left held: held %v, ready %d, %d bytes, dirty %v, flushing %v",
				u.held != nil, len(u.ready), u.heldBytes, u.dirty, u.flushing)
		}
		return nil
	})
	holds.mu.Lock()
	defer holds.mu.Unlock()
	if len(u.spare) == 0 {
		t.Errorf("no send was held")
	}
}

// TestUDPHeldSendsKeepTheirOrder: a send made while held sends are being
// sent (here from the failure report of one of them, with no read loop
// in a batch any more) is held behind them, not sent before the rest:
// the peer gets 1, 3, then 2. Sent at once, 2 would overtake 3 (as a
// relayed 180 Ringing overtook a held 100 Trying).
func TestUDPHeldSendsKeepTheirOrder(t *testing.T) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	u := newUDPSock(c)
	defer u.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	refused := netip.MustParseAddrPort("127.0.0.1:0")
	startBatch()
	for _, s := range []struct {
		b  string
		to netip.AddrPort
	}{{"1", to}, {"refused", refused}, {"3", to}} {
		if err := u.writeTo([]byte(s.b), s.to); err != nil {
			t.Fatalf("send %s: %v", s.b, err)
		}
	}
	var failed []string
	u.setFail(func(b []byte, ap netip.AddrPort, err error) {
		failed = append(failed, fmt.Sprintf("%s to %s", b, ap))
		if err := u.writeTo([]byte("2"), to); err != nil {
			t.Errorf("send 2: %v", err)
		}
	})
	endBatch()
	if want := []string{"refused to 127.0.0.1:0"}; !slices.Equal(failed, want) {
		t.Errorf("failed sends %q, want %q", failed, want)
	}
	got := readStrings(t, peer, 3)
	if want := []string{"1", "3", "2"}; !slices.Equal(got, want) {
		t.Errorf("the peer got %q, want %q", got, want)
	}
	holds.mu.Lock()
	defer holds.mu.Unlock()
	if mayHold() || u.held != nil || len(u.ready) != 0 || u.heldBytes != 0 || u.dirty {
		t.Errorf("sends left held: batching %d, dirty sockets %d, held %v, ready %d, %d bytes", holds.batching.Load(), len(holds.dirty), u.held != nil, len(u.ready), u.heldBytes)
	}
}

// fwdHandler forwards every datagram to a peer through another transport
// (as the proxy sends an INVITE read on the carriers' listener through
// the agents' one).
type fwdHandler struct {
	out *Transport
	to  netip.AddrPort
}

func (h *fwdHandler) AllowedSource(netip.Addr) bool { return true }
func (h *fwdHandler) RefuseSource([]byte, Peer)     {}
func (h *fwdHandler) HandleDatagram(b []byte, _ Peer) {
	_ = h.out.Send(Peer{Proto: UDP, Addr: h.to}, b)
}
func (h *fwdHandler) HandleMessage(sip.Message, Peer) {}

// TestUDPBatchHoldsEverySocket: a read loop in a batch holds the sends
// through the other transport's socket too, and they leave, in order,
// when the batch is handled.
func TestUDPBatchHoldsEverySocket(t *testing.T) {
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	_ = peer.SetReadBuffer(4 << 20)
	cfg := Config{Addr: "127.0.0.1:0", DNS: DNSConfig{Server: "127.0.0.1:1", Timeout: time.Second}}
	out, err := New(cfg, &recHandler{}, testMetrics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	h := &fwdHandler{out: out, to: peer.LocalAddr().(*net.UDPAddr).AddrPort()}
	in, err := New(cfg, h, testMetrics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	n := 3*readBatch + 3
	var want []string
	for i := 0; i < n; i++ {
		p := fmt.Sprintf("datagram %d", i)
		if _, err := peer.WriteToUDPAddrPort([]byte(p), in.UDPAddr()); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	in.Serve(1)
	var got []string
	buf := make([]byte, maxMessage)
	for len(got) < n {
		_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("%d of %d forwarded: %v", len(got), n, err)
		}
		if from != out.UDPAddr() {
			t.Fatalf("datagram from %s, want the other transport's %s", from, out.UDPAddr())
		}
		got = append(got, string(buf[:k]))
	}
	if !slices.Equal(got, want) {
		t.Errorf("forwarded %q, want %q", got, want)
	}
	heldAndSent(t, out.udp)
}

// TestUDPHeldSendsNotLeftBehind: a send held on a socket already flushed
// in this endBatch, while the lock was released to send another socket's
// (here from the failure report of one of those), leaves in the same
// endBatch when no read loop is in a batch: nobody else would send it.
func TestUDPHeldSendsNotLeftBehind(t *testing.T) {
	var socks [2]*udpSock
	for i := range socks {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		socks[i] = newUDPSock(c)
		defer socks[i].Close()
	}
	x, y := socks[0], socks[1]
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	y.setFail(func([]byte, netip.AddrPort, error) {
		if err := x.writeTo([]byte("x2"), to); err != nil {
			t.Errorf("send x2: %v", err)
		}
	})
	startBatch()
	for _, s := range []struct {
		u  *udpSock
		b  string
		to netip.AddrPort
	}{{x, "x1", to}, {y, "refused", netip.MustParseAddrPort("127.0.0.1:0")}, {y, "y2", to}} {
		if err := s.u.writeTo([]byte(s.b), s.to); err != nil {
			t.Fatalf("send %s: %v", s.b, err)
		}
	}
	endBatch() // x first (held first), then y, whose failure holds x2 on x
	holds.mu.Lock()
	for i, u := range socks {
		if u.held != nil || len(u.ready) != 0 || u.dirty || u.heldBytes != 0 {
			t.Errorf("socket %d: sends left held (held %v, ready %d, dirty %v, %d bytes)", i, u.held != nil, len(u.ready), u.dirty, u.heldBytes)
		}
	}
	holds.mu.Unlock()
	got := readStrings(t, peer, 3)
	slices.Sort(got)
	if want := []string{"x1", "x2", "y2"}; !slices.Equal(got, want) {
		t.Errorf("the peer got %q, want %q", got, want)
	}
}

// readStrings reads n datagrams from c (readFrom's deadline each).
func readStrings(t *testing.T, c *net.UDPConn, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		b, _ := readFrom(t, c)
		got = append(got, string(b))
	}
	return got
}
