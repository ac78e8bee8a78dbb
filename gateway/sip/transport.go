package sip

import (
	"bytes"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// The proxy has its own thin transport on top of sipgo's parser and
// message types. Why not sipgo's TransportLayer: its UDP writer refuses
// messages over ~1300 bytes (ErrUDPMTUCongestion) which carrier INVITEs
// plus our Via and Record-Route exceed; its UDP listener keeps every
// source in a pool; and its server runs a goroutine per message. Here
// each UDP read loop parses and handles a message inline (no goroutine
// per message or per call), unlisted sources are refused from the packet
// source address before any parsing, and writes go straight to the socket.
//
// The transport layer is transport*.go and dns.go: this file (peers,
// connections, the handler it hands messages to, its metrics),
// transport_conn.go (listeners, read loops, connection caps and
// deadlines), transport_send.go (sends, dials, connection reuse, send
// errors) and transport_resolve.go (URI and Via addressing, lookups off
// the read loops). It calls the proxy only through handler; the proxy
// calls it through transport's methods (send*, uriPeer*, viaPeer*,
// lookupThen, resolveOpt) and reads its bound addresses.

type proto uint8

const (
	protoUDP proto = iota
	protoTCP
	protoTLS
)

func (p proto) String() string {
	switch p {
	case protoTCP:
		return "TCP"
	case protoTLS:
		return "TLS"
	}
	return "UDP"
}

// peer is where a message came from or goes to.
type peer struct {
	proto proto
	addr  netip.AddrPort
	conn  *streamConn // stream transports: the connection, when known
	host  string      // the host name addr was resolved from (TLS server name), if any
	// alt is a connection the same party opened to us, used when addr
	// cannot be reached (RFC 5923 style reuse: a carrier behind NAT whose
	// Contact names an address nothing can connect to).
	alt *streamConn
}

// maxMessage bounds a SIP message (UDP datagram or stream message).
const maxMessage = 65535

type streamKey struct {
	proto proto
	addr  netip.AddrPort
}

type streamConn struct {
	c       net.Conn
	proto   proto
	remote  netip.AddrPort
	inbound bool // accepted (counted against the connection caps)
	closed  atomic.Bool
	wmu     sync.Mutex
}

func (c *streamConn) usable() bool { return c != nil && !c.closed.Load() }

func (c *streamConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.c.Write(b)
	return err
}

// handler is all the transport layer knows of the proxy (the Server):
// whether a source may talk to us at all, asked before anything from it
// is read or parsed; what to do with a datagram from a source refused
// (the rate-limited 403); and every datagram, and every message parsed
// from a TCP/TLS connection, from an allowed source. Its methods run on
// the read loops: they must not block.
type handler interface {
	allowedSource(a netip.Addr) bool
	refuseSource(data []byte, from peer)
	handleDatagram(data []byte, from peer)
	handleMessage(m sip.Message, from peer)
}

var _ handler = (*Server)(nil)

// transportMetrics are the collectors the transport layer counts on
// (series of the edge's Metrics, passed in by the Server).
type transportMetrics struct {
	Dropped      *prometheus.CounterVec // reason: busy, message_timeout, tls_handshake, too_large, malformed
	Rejected     *prometheus.CounterVec // reason: unknown_source (refused at accept)
	ConnsRefused *prometheus.CounterVec // reason: per_source, total
	Conns        *prometheus.GaugeVec   // transport: inbound connections open
	SendErrors   *prometheus.CounterVec // transport, stage
}

type transport struct {
	h       handler          // the proxy
	m       transportMetrics // counted here
	log     *slog.Logger
	udp     *net.UDPConn
	tcpLn   net.Listener
	tlsLn   net.Listener
	tlsConf *tls.Config
	udpAddr netip.AddrPort
	tcpAddr netip.AddrPort
	tlsAddr netip.AddrPort
	parser  *sip.Parser

	mu      sync.Mutex
	streams map[streamKey]*streamConn
	closed  bool
	wg      sync.WaitGroup

	sem chan struct{}

	tlsClient    *tls.Config        // outbound TLS: roots (system + tls_ca_file), client certificate
	msgTimeout   time.Duration      // a stream message (or TLS handshake) must complete within this
	maxConns     int                // inbound TCP/TLS connections, in total
	maxPerSource int                // and per source address
	inbound      int                // under mu
	perSource    map[netip.Addr]int // under mu

	logSecond atomic.Int64 // rate limit of send failure log lines
	logTokens atomic.Int64

	dns     *resolver                // host names (agent URIs, Contacts, Vias)
	lmu     sync.Mutex               // guards lookups (a leaf lock)
	lookups map[string][]func(error) // name → callers waiting for its lookupThen
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var (
	errBusy       = errors.New("sip: too many pending dials or lookups")
	errNeedLookup = errors.New("sip: host name needs a DNS lookup")
	// errPending: the send goes on in another goroutine (a dial or a DNS
	// lookup); its outcome goes to the caller's callback.
	errPending = errors.New("sip: send pending")
)

// sendError is a send that failed, and the stage it failed at (the
// stage label of send_errors_total).
type sendError struct {
	stage string
	err   error
}

func (e *sendError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

func stageOf(err error) string {
	var se *sendError
	if errors.As(err, &se) {
		return se.stage
	}
	return "write"
}

func (p proto) label() string {
	switch p {
	case protoTCP:
		return "tcp"
	case protoTLS:
		return "tls"
	}
	return "udp"
}
