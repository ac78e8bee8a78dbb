package transport

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// The UDP sockets' reads and sends (udpraw_linux.go on Linux: raw
// recvmmsg/sendto on the descriptor; net.UDPConn elsewhere).

func hasIPv6Loopback() bool {
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// readFrom reads one datagram from c within a generous deadline.
func readFrom(t *testing.T, c *net.UDPConn) ([]byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, maxMessage)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read on %s: %v", c.LocalAddr(), err)
	}
	return buf[:n], src
}

// TestUDPDatagramsBothWays: what a peer sends reaches the Handler byte
// for byte with the peer's address and port (IPv4 and, with Addr6, IPv6),
// an empty and a 60,000-byte datagram included; what the transport sends
// reaches the peer byte for byte from the transport's own address.
func TestUDPDatagramsBothWays(t *testing.T) {
	six := hasIPv6Loopback()
	cfg := Config{Addr: "127.0.0.1:0", DNS: DNSConfig{Server: "127.0.0.1:1", Timeout: time.Second}}
	if six {
		cfg.Addr6 = "[::1]:0"
	}
	type family struct {
		name  string
		local netip.Addr
	}
	fams := []family{{"ipv4", netip.MustParseAddr("127.0.0.1")}}
	if six {
		fams = append(fams, family{"ipv6", netip.MustParseAddr("::1")})
	}
	big := bytes.Repeat([]byte("0123456789"), 6000)
	payloads := [][]byte{[]byte(options), {}, big}
	for _, f := range fams {
		t.Run(f.name, func(t *testing.T) {
			h := &recHandler{allow: f.local}
			tp, err := New(cfg, h, testMetrics(), nil)
			if err != nil {
				t.Fatal(err)
			}
			tp.Serve(2)
			defer tp.Close()
			ours := tp.UDPAddr()
			if f.local.Is6() {
				ours = tp.UDPAddr6()
			}
			peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.local, 0)))
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			peerAddr := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			for _, p := range payloads {
				if _, err := peer.WriteToUDPAddrPort(p, ours); err != nil {
					t.Fatal(err)
				}
			}
			testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
				h.mu.Lock()
				defer h.mu.Unlock()
				if len(h.datagrams) != len(payloads) {
					return fmt.Errorf("%d datagrams", len(h.datagrams))
				}
				return nil
			})
			h.mu.Lock()
			got := map[int]bool{}
			for i, d := range h.datagrams {
				got[len(d)] = true
				if from := h.froms[i]; from.Addr != peerAddr || from.Proto != UDP {
					t.Errorf("datagram %d from %+v, want udp %s", i, from, peerAddr)
				}
			}
			for _, d := range h.datagrams {
				if len(d) == len(big) && d != string(big) || len(d) == len(options) && d != options {
					t.Errorf("datagram of %d bytes changed on the way", len(d))
				}
			}
			h.mu.Unlock()
			for _, p := range payloads {
				if !got[len(p)] {
					t.Errorf("no datagram of %d bytes reached the handler", len(p))
				}
			}

			for _, p := range payloads {
				if err := tp.Send(Peer{Proto: UDP, Addr: peerAddr}, p); err != nil {
					t.Fatalf("send %d bytes: %v", len(p), err)
				}
				d, src := readFrom(t, peer)
				if !bytes.Equal(d, p) || src != ours {
					t.Errorf("peer got %d bytes from %s, want %d bytes from %s", len(d), src, len(p), ours)
				}
			}
		})
	}
}

// TestUDPSendFamilies: a socket of one family refuses a destination of
// the other with an error (no panic, nothing sent); an IPv6 listener
// not restricted to IPv6 (addr [::1] alone) sends to IPv6 peers.
func TestUDPSendFamilies(t *testing.T) {
	v4 := startTransport(t, &recHandler{}, testMetrics())
	if err := v4.Send(Peer{Proto: UDP, Addr: netip.MustParseAddrPort("[::1]:5060")}, []byte("x")); err == nil {
		t.Error("IPv4 socket: a send to [::1] did not fail")
	}
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback")
	}
	h := &recHandler{allow: netip.MustParseAddr("::1")}
	tp, err := New(Config{Addr: "[::1]:0", DNS: DNSConfig{Server: "127.0.0.1:1", Timeout: time.Second}}, h, testMetrics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tp.Serve(1)
	defer tp.Close()
	peer, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if err := tp.Send(Peer{Proto: UDP, Addr: peer.LocalAddr().(*net.UDPAddr).AddrPort()}, []byte("six")); err != nil {
		t.Fatal(err)
	}
	if d, src := readFrom(t, peer); string(d) != "six" || src != tp.UDPAddr() {
		t.Errorf("got %q from %s, want \"six\" from %s", d, src, tp.UDPAddr())
	}
	// bound to ::1, the socket has no IPv4 source for 127.0.0.1
	if err := tp.Send(Peer{Proto: UDP, Addr: netip.MustParseAddrPort("127.0.0.1:5060")}, []byte("x")); err == nil {
		t.Error("socket on [::1]: a send to 127.0.0.1 did not fail")
	}
}

// TestUDPCloseWhileBusy: Close returns while read loops are reading and
// other goroutines are sending; every goroutine of the transport ends,
// the ports can be bound again, and a send after Close fails without
// writing to the descriptor number the socket had (which a socket opened
// meanwhile may have got).
func TestUDPCloseWhileBusy(t *testing.T) {
	six := hasIPv6Loopback()
	before := runtime.NumGoroutine()
	cfg := Config{Addr: "127.0.0.1:0", DNS: DNSConfig{Server: "127.0.0.1:1", Timeout: time.Second}}
	if six {
		cfg.Addr6 = "[::1]:0"
	}
	h := &recHandler{allow: netip.MustParseAddr("127.0.0.1")}
	tp, err := New(cfg, h, testMetrics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tp.Serve(4)
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	sinkAddr := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	src, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(tp.UDPAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	sent := make(chan struct{}, 1)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = src.Write([]byte(options))
				if tp.Send(Peer{Proto: UDP, Addr: sinkAddr}, []byte("load")) == nil {
					select {
					case sent <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	// the load is on: the handler has datagrams and a send went out
	<-sent
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.datagrams) == 0 {
			return fmt.Errorf("no datagram handled yet")
		}
		return nil
	})
	closed := make(chan struct{})
	go func() {
		tp.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return within 30 s")
	}
	close(stop)
	wg.Wait()

	// sockets opened now may get the closed socket's descriptor number
	var others []*net.UDPConn
	for i := 0; i < 4; i++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		others = append(others, c)
	}
	clean, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer clean.Close()
	cleanAddr := clean.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := tp.Send(Peer{Proto: UDP, Addr: cleanAddr}, []byte("after close")); err == nil {
		t.Error("a send after Close did not fail")
	}
	// a send is delivered before sendto returns on loopback: had the
	// send above gone out of any socket, it would be read before this
	if _, err := others[0].WriteToUDPAddrPort([]byte("marker"), cleanAddr); err != nil {
		t.Fatal(err)
	}
	if d, _ := readFrom(t, clean); string(d) != "marker" {
		t.Errorf("after Close a peer got %q", d)
	}

	// the ports are free again
	for _, a := range []netip.AddrPort{tp.UDPAddr(), tp.UDPAddr6()} {
		if !a.IsValid() {
			continue
		}
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(a))
		if err != nil {
			t.Errorf("port of %s not free after Close: %v", a, err)
			continue
		}
		c.Close()
	}
	// every read loop and accept loop ended (the test's own goroutines too)
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before the transport", n, before)
		}
		return nil
	})
}

// BenchmarkUDPSend: one datagram of a SIP response's size from the
// transport's socket to a peer on loopback (the peer drains its socket
// in the background).
func BenchmarkUDPSend(b *testing.B) {
	tp, err := New(Config{Addr: "127.0.0.1:0", DNS: DNSConfig{Server: "127.0.0.1:1"}}, &recHandler{}, testMetrics(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tp.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	_ = peer.SetReadBuffer(8 << 20)
	go func() {
		buf := make([]byte, maxMessage)
		for {
			if _, _, err := peer.ReadFromUDPAddrPort(buf); err != nil {
				return
			}
		}
	}()
	msg := bytes.Repeat([]byte("x"), 600)
	to := Peer{Proto: UDP, Addr: peer.LocalAddr().(*net.UDPAddr).AddrPort()}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := tp.Send(to, msg); err != nil {
			b.Fatal(err)
		}
	}
}
