package transport

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// TestDualStackListeners: with Addr6 the transport reads UDP and TCP on
// [::1] as well as on 127.0.0.1; a datagram to an IPv6 peer leaves
// through the IPv6 socket (its source is UDPAddr6) and one to an IPv4
// peer through the IPv4 socket.
func TestDualStackListeners(t *testing.T) {
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback:", err)
	} else {
		c.Close()
	}
	h := &recHandler{allow: netip.MustParseAddr("::1")}
	tp, err := New(Config{Addr: "127.0.0.1:0", Addr6: "[::1]:0", MessageTimeout: 5 * time.Second, MaxConnections: 10,
		MaxConnectionsPerSource: 10, DNS: DNSConfig{Server: "127.0.0.1:1", Timeout: time.Second}}, h, testMetrics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tp.Serve(1)
	t.Cleanup(tp.Close)
	if !tp.HasV6() || !tp.UDPAddr6().Addr().Is6() || tp.UDPAddr6().Port() != tp.TCPAddr6().Port() || !tp.UDPAddr().Addr().Is4() {
		t.Fatalf("listeners: udp %s udp6 %s tcp6 %s", tp.UDPAddr(), tp.UDPAddr6(), tp.TCPAddr6())
	}

	// UDP in over IPv6, and the answer out of the IPv6 socket
	c6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer c6.Close()
	if _, err := c6.WriteToUDPAddrPort([]byte(options), tp.UDPAddr6()); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.datagrams) != 1 {
			return fmt.Errorf("%d datagrams", len(h.datagrams))
		}
		return nil
	})
	h.mu.Lock()
	from := h.froms[0]
	h.mu.Unlock()
	if from.Addr != c6.LocalAddr().(*net.UDPAddr).AddrPort() || from.Proto != UDP {
		t.Errorf("datagram from %v, want udp %s", from, c6.LocalAddr())
	}
	if err := tp.Send(from, []byte("SIP/2.0 200 OK\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = c6.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, src, err := c6.ReadFromUDPAddrPort(buf)
	if err != nil || src != tp.UDPAddr6() {
		t.Errorf("reply from %s (%v), want our IPv6 socket %s", src, err, tp.UDPAddr6())
	}

	// an IPv4 peer is sent to from the IPv4 socket
	c4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	if err := tp.Send(Peer{Proto: UDP, Addr: c4.LocalAddr().(*net.UDPAddr).AddrPort()}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = c4.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, src, err := c4.ReadFromUDPAddrPort(buf); err != nil || src != tp.UDPAddr() {
		t.Errorf("datagram to IPv4 from %s (%v), want %s", src, err, tp.UDPAddr())
	}

	// TCP over IPv6
	conn, err := net.Dial("tcp6", tp.TCPAddr6().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(options)); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.messages) != 1 {
			return fmt.Errorf("%d stream messages", len(h.messages))
		}
		return nil
	})
}

// TestDualStackSharedPort: UDP and TCP on 127.0.0.1:P and [::1]:P at once
// (one port number for both families, as sip.addr and sip.addr6 are
// usually configured).
func TestDualStackSharedPort(t *testing.T) {
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skip("no IPv6 loopback:", err)
	} else {
		c.Close()
	}
	first, err := New(Config{Addr: "127.0.0.1:0", DNS: DNSConfig{Server: "127.0.0.1:1"}}, &recHandler{}, testMetrics(), nil)
	if err != nil {
		t.Fatal(err)
	}
	port := first.UDPAddr().Port()
	first.Close()
	tp, err := New(Config{Addr: fmt.Sprintf("127.0.0.1:%d", port), Addr6: fmt.Sprintf("[::1]:%d", port),
		DNS: DNSConfig{Server: "127.0.0.1:1"}}, &recHandler{}, testMetrics(), nil)
	if err != nil {
		t.Skipf("port %d taken meanwhile: %v", port, err)
	}
	defer tp.Close()
	if tp.UDPAddr().Port() != port || tp.UDPAddr6().Port() != port || tp.TCPAddr6().Port() != port {
		t.Errorf("ports %s %s %s, want %d on both families", tp.UDPAddr(), tp.UDPAddr6(), tp.TCPAddr6(), port)
	}
}
