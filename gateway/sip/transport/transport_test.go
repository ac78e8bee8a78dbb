package transport

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/internal/testwait"
)

// recHandler records what the transport hands to the proxy.
type recHandler struct {
	allow netip.Addr // the one source allowed

	mu        sync.Mutex
	datagrams []string
	messages  []sip.Message
	refused   []string
	froms     []Peer
}

func (h *recHandler) AllowedSource(a netip.Addr) bool { return a == h.allow }

func (h *recHandler) RefuseSource(data []byte, from Peer) {
	h.mu.Lock()
	h.refused = append(h.refused, string(data))
	h.mu.Unlock()
}

func (h *recHandler) HandleDatagram(data []byte, from Peer) {
	h.mu.Lock()
	h.datagrams = append(h.datagrams, string(data))
	h.froms = append(h.froms, from)
	h.mu.Unlock()
}

func (h *recHandler) HandleMessage(m sip.Message, from Peer) {
	h.mu.Lock()
	h.messages = append(h.messages, m)
	h.froms = append(h.froms, from)
	h.mu.Unlock()
}

func testMetrics() Metrics {
	return Metrics{
		Dropped:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dropped_total"}, []string{"reason"}),
		Rejected:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rejected_total"}, []string{"reason"}),
		ConnsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "refused_total"}, []string{"reason"}),
		Conns:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "connections"}, []string{"transport"}),
		SendErrors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "send_errors_total"}, []string{"transport", "stage"}),
	}
}

func startTransport(t *testing.T, h Handler, m Metrics) *Transport {
	t.Helper()
	tp, err := New(Config{Addr: "127.0.0.1:0", MessageTimeout: 5 * time.Second, MaxConnections: 10,
		MaxConnectionsPerSource: 10, DNS: DNSConfig{Server: "127.0.0.1:1", Timeout: time.Second}}, h, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp.Serve(1)
	t.Cleanup(tp.Close)
	return tp
}

const options = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-t1\r\n" +
	"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: tp-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"

// TestHandlerGetsDatagramsAndStreamMessages: the transport hands a
// datagram from an allowed source to HandleDatagram, one from another
// source to RefuseSource, and a message read from a TCP connection,
// parsed, to HandleMessage with the connection in the peer.
func TestHandlerGetsDatagramsAndStreamMessages(t *testing.T) {
	h := &recHandler{allow: netip.MustParseAddr("127.0.0.1")}
	tp := startTransport(t, h, testMetrics())

	for _, src := range []string{"127.0.0.1", "127.0.0.2"} {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(tp.UDPAddr()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("hello from " + src)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	tc, err := net.Dial("tcp", tp.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := tc.Write([]byte(options)); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.datagrams) != 1 || len(h.refused) != 1 || len(h.messages) != 1 {
			return fmt.Errorf("datagrams %q refused %q messages %d", h.datagrams, h.refused, len(h.messages))
		}
		return nil
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.datagrams[0] != "hello from 127.0.0.1" || h.refused[0] != "hello from 127.0.0.2" {
		t.Errorf("datagrams %q, refused %q", h.datagrams, h.refused)
	}
	req, ok := h.messages[0].(*sip.Request)
	if !ok || req.Method != sip.OPTIONS || req.CallID().Value() != "tp-1" {
		t.Fatalf("message = %v", h.messages[0])
	}
	for _, f := range h.froms {
		if f.Addr.Addr() != h.allow {
			t.Errorf("from %v, want %v", f.Addr, h.allow)
		}
		if f.Proto == TCP && (!f.Conn.Usable() || f.Conn.Remote() != f.Addr) {
			t.Errorf("stream peer %+v without its open connection", f)
		}
	}
	if tp.Streams() != 1 {
		t.Errorf("Streams() = %d, want 1", tp.Streams())
	}
}

// TestRefusedConnectionCounted: a TCP connection from a source the
// Handler does not allow is closed at accept, counted in Metrics.Rejected,
// and nothing of it reaches the Handler.
func TestRefusedConnectionCounted(t *testing.T) {
	h := &recHandler{allow: netip.MustParseAddr("127.0.0.1")}
	m := testMetrics()
	tp := startTransport(t, h, m)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c, err := d.Dial("tcp", tp.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte(options))
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if n := testutil.ToFloat64(m.Rejected.WithLabelValues("unknown_source")); n != 1 {
			return fmt.Errorf("rejected %v", n)
		}
		return nil
	})
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("refused connection still open")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.messages) != 0 || len(h.refused) != 0 {
		t.Errorf("handler got messages %d refused %q from a refused connection", len(h.messages), h.refused)
	}
}
