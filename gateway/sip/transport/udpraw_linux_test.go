package transport

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/emiago/sipgo/sip"
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
