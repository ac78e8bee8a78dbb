package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// testPortNext spreads test port ranges below Linux's ephemeral range
// (so that no short-lived client socket takes one of them) and below the
// default range, one block of 40 ports per test manager.
var testPortNext = 10000 + (os.Getpid()%10)*500

// runTestManager starts a manager on 127.0.0.1 with its own port block
// and registry; it is closed when the test ends.
func runTestManager(t testing.TB, mod func(*Config)) (*Manager, *prometheus.Registry) {
	t.Helper()
	cfg := Config{BindIP: "127.0.0.1", PortMin: testPortNext, PortMax: testPortNext + 39, Region: "us1"}
	testPortNext += 40
	if testPortNext > 16000 {
		testPortNext = 10000
	}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	m, err := NewManager(cfg, nil, reg)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, reg
}

// endpoint is a UDP socket on loopback playing a caller or an agent.
type endpoint struct {
	t        testing.TB
	c        *net.UDPConn // RTP
	rc       *net.UDPConn // RTCP
	addr     netip.AddrPort
	rtcpAddr netip.AddrPort
	buf      []byte
}

func listenLoopback(t testing.TB, port int) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newEndpoint(t testing.TB) *endpoint {
	t.Helper()
	c, rc := listenLoopback(t, 0), listenLoopback(t, 0)
	return &endpoint{t: t, c: c, rc: rc, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(),
		rtcpAddr: rc.LocalAddr().(*net.UDPAddr).AddrPort(), buf: make([]byte, 2048)}
}

// newEndpointAt holds a given port (to make it busy).
func newEndpointAt(t testing.TB, port int) *net.UDPConn { return listenLoopback(t, port) }

// sendRTCP sends from the endpoint's RTCP socket.
func (e *endpoint) sendRTCP(to netip.AddrPort, b []byte) {
	e.t.Helper()
	if _, err := e.rc.WriteToUDPAddrPort(b, to); err != nil {
		e.t.Fatalf("send: %v", err)
	}
}

// recvRTCP reads the endpoint's RTCP socket.
func (e *endpoint) recvRTCP(d time.Duration) ([]byte, netip.AddrPort, error) {
	return recvOn(e.rc, e.buf, d)
}

func nextPort(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr(), a.Port()+1) }

func (e *endpoint) send(to netip.AddrPort, b []byte) {
	e.t.Helper()
	if _, err := e.c.WriteToUDPAddrPort(b, to); err != nil {
		e.t.Fatalf("send: %v", err)
	}
}

func (e *endpoint) sendRTP(to netip.AddrPort, p *rtp.Packet) []byte {
	e.t.Helper()
	b, err := p.Marshal()
	if err != nil {
		e.t.Fatal(err)
	}
	e.send(to, b)
	return b
}

var errTimeout = errors.New("timeout")

// recv returns the next datagram or errTimeout.
func (e *endpoint) recv(d time.Duration) ([]byte, netip.AddrPort, error) {
	return recvOn(e.c, e.buf, d)
}

func recvOn(c *net.UDPConn, buf []byte, d time.Duration) ([]byte, netip.AddrPort, error) {
	c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, from, errTimeout
		}
		return nil, from, err
	}
	return append([]byte(nil), buf[:n]...), from, nil
}

// drain reads until nothing arrives for d; returns the datagrams.
func (e *endpoint) drain(d time.Duration) [][]byte {
	var out [][]byte
	for {
		b, _, err := e.recv(d)
		if err != nil {
			return out
		}
		out = append(out, b)
	}
}

// offerFor is a minimal PCMU/telephone-event SDP for an endpoint.
func offerFor(e *endpoint, extra ...string) []byte {
	a := e.addr
	s := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\n"+
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=rtcp:%d\r\n", a.Addr(), a.Addr(), a.Port(), e.rtcpAddr.Port())
	for _, x := range extra {
		s += x + "\r\n"
	}
	return []byte(s)
}

// mediaAddr returns the audio RTP address in an SDP body.
func mediaAddr(t testing.TB, body []byte) netip.AddrPort {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		t.Fatalf("rewritten SDP does not parse: %v\n%s", err, body)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "audio" || md.MediaName.Port.Value == 0 {
			continue
		}
		c := md.ConnectionInformation
		if c == nil {
			c = sd.ConnectionInformation
		}
		return netip.AddrPortFrom(netip.MustParseAddr(c.Address.Address), uint16(md.MediaName.Port.Value))
	}
	t.Fatalf("no audio stream in\n%s", body)
	return netip.AddrPort{}
}

// call is a relayed call between two loopback endpoints.
type call struct {
	s             *Session
	caller, agent *endpoint
	toCaller      netip.AddrPort // callgate's caller-facing RTP address
	toAgent       netip.AddrPort // callgate's agent-facing RTP address
}

func setupCall(t testing.TB, m *Manager, onTimeout func()) *call {
	t.Helper()
	c := &call{caller: newEndpoint(t), agent: newEndpoint(t)}
	s, err := m.NewSession("call-"+t.Name(), onTimeout)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	c.s = s
	off, err := s.RewriteOffer(offerFor(c.caller))
	if err != nil {
		t.Fatalf("RewriteOffer: %v", err)
	}
	c.toAgent = mediaAddr(t, off)
	ans, err := s.RewriteAnswer(offerFor(c.agent))
	if err != nil {
		t.Fatalf("RewriteAnswer: %v", err)
	}
	c.toCaller = mediaAddr(t, ans)
	return c
}

func rtpPacket(ssrc uint32, seq uint16, ts uint32, payload []byte) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: payload}
}

func gather(t testing.TB, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

func gaugeValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	ms := gather(t, reg, name)
	if len(ms) == 0 {
		t.Fatalf("no metric %s", name)
	}
	return ms[0].GetGauge().GetValue()
}

func counterValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	var v float64
	for _, m := range gather(t, reg, name) {
		v += m.GetCounter().GetValue()
	}
	return v
}

func histCount(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) uint64 {
	var n uint64
outer:
	for _, m := range gather(t, reg, name) {
		for _, lp := range m.GetLabel() {
			if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
				continue outer
			}
		}
		n += m.GetHistogram().GetSampleCount()
	}
	return n
}
