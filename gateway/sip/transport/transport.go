// Package transport is the SIP edge's transport layer: UDP, TCP and TLS
// listeners, connections and their caps and deadlines, sends (dials off
// the read loops, connection reuse, send-error reporting) and addressing
// (URIs and Vias, host names through a TTL-respecting DNS cache). It
// knows nothing of the proxy above it: messages go to a Handler.
//
// Why not sipgo's TransportLayer: its UDP writer refuses messages over
// ~1300 bytes (ErrUDPMTUCongestion) which carrier INVITEs plus our Via
// and Record-Route exceed; its UDP listener keeps every source in a pool;
// and its server runs a goroutine per message. Here each UDP read loop
// parses and handles a message inline (no goroutine per message or per
// call), unlisted sources are refused from the packet source address
// before any parsing, and writes go straight to the socket.
//
// Files: transport.go (peers, connections, Handler, Metrics, New),
// conn.go (listeners, read loops, connection caps and deadlines),
// send.go (sends, dials, connection reuse, send errors), udpraw_linux.go
// (UDP reads and sends as raw system calls; udpraw_other.go elsewhere),
// resolve.go (URI and Via addressing, lookups off the read loops), dns.go
// (the resolver).
// Locks: Transport.mu, its lookup lock and the resolver's locks are leaf
// locks; no lock is held across a DNS lookup.
package transport

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// Proto is a SIP transport.
type Proto uint8

// The transports.
const (
	UDP Proto = iota
	TCP
	TLS
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "TCP"
	case TLS:
		return "TLS"
	}
	return "UDP"
}

// Peer is where a message came from or goes to.
type Peer struct {
	Proto Proto
	Addr  netip.AddrPort
	Conn  *Conn  // stream transports: the connection, when known
	Host  string // the host name Addr was resolved from (TLS server name), if any
	// Alt is a connection the same party opened to us, used when Addr
	// cannot be reached (RFC 5923 style reuse: a carrier behind NAT whose
	// Contact names an address nothing can connect to).
	Alt *Conn
	// Side is the Config.Side of the transport a message came in on (or
	// that a message to this peer goes out through): an edge with several
	// transports (carrier-facing, agent-facing) tells them apart by it.
	Side uint8
}

// maxMessage bounds a SIP message (UDP datagram or stream message).
const maxMessage = 65535

type streamKey struct {
	proto Proto
	addr  netip.AddrPort
}

// Conn is a TCP or TLS connection, accepted or dialled.
type Conn struct {
	c       net.Conn
	proto   Proto
	remote  netip.AddrPort
	inbound bool // accepted (counted against the connection caps)
	closed  atomic.Bool
	wmu     sync.Mutex
}

// Usable reports whether c is a connection still open.
func (c *Conn) Usable() bool { return c != nil && !c.closed.Load() }

// Proto is c's transport (TCP or TLS).
func (c *Conn) Proto() Proto { return c.proto }

// Remote is the address of c's other end.
func (c *Conn) Remote() netip.AddrPort { return c.remote }

func (c *Conn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.c.Write(b)
	return err
}

// Handler is all the transport layer knows of the proxy: whether a source
// may talk to us at all, asked before anything from it is read or parsed;
// what to do with a datagram from a source refused (the rate-limited
// 403); and every datagram, and every message parsed from a TCP/TLS
// connection, from an allowed source. Its methods run on the read loops:
// they must not block.
type Handler interface {
	AllowedSource(a netip.Addr) bool
	RefuseSource(data []byte, from Peer)
	HandleDatagram(data []byte, from Peer)
	HandleMessage(m sip.Message, from Peer)
}

// Metrics are the collectors the transport layer counts on (series of
// the edge's metrics, passed in by the proxy).
type Metrics struct {
	Dropped      *prometheus.CounterVec // reason: busy, message_timeout, tls_handshake, too_large, malformed
	Rejected     *prometheus.CounterVec // reason: unknown_source (refused at accept)
	ConnsRefused *prometheus.CounterVec // reason: per_source, total
	Conns        *prometheus.GaugeVec   // transport: inbound connections open
	SendErrors   *prometheus.CounterVec // transport, stage
}

// Config is what the transport layer takes of the edge's configuration.
type Config struct {
	Addr                    string // UDP and TCP (one port)
	TLSAddr, TLSCert        string // TLS listener, when TLSAddr is set
	Addr6, TLSAddr6         string // dual stack: IPv6 listeners besides Addr's IPv4 ones (dualstack.go)
	TLSKey                  string
	TLSCAFile               string // outbound TLS: trusted besides the system roots
	TLSClientCert           string // outbound TLS: client certificate
	TLSClientKey            string
	MessageTimeout          time.Duration
	MaxConnections          int
	MaxConnectionsPerSource int
	DNS                     DNSConfig
	// Side tags every Peer this transport reads from (Peer.Side).
	Side uint8
}

// New binds the listeners (Serve starts reading them). h gets every
// message; m and log are where the transport counts and logs (log nil:
// discarded).
func New(cfg Config, h Handler, m Metrics, log *slog.Logger) (*Transport, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transport{h: h, m: m, log: log, parser: sip.NewParser(), sem: make(chan struct{}, MaxAsync)}
	dnsr, err := newResolver(cfg.DNS)
	if err != nil {
		return nil, fmt.Errorf("sip: dns: %w", err)
	}
	t.dns = dnsr
	t.side = cfg.Side
	if err := t.listen(cfg); err != nil {
		return nil, err
	}
	return t, nil
}

// UDPAddr is the bound UDP address.
func (t *Transport) UDPAddr() netip.AddrPort { return t.udpAddr }

// TCPAddr is the bound TCP address.
func (t *Transport) TCPAddr() netip.AddrPort { return t.tcpAddr }

// TLSAddr is the bound TLS address (zero without TLS).
func (t *Transport) TLSAddr() netip.AddrPort { return t.tlsAddr }

// HasTLS reports whether a TLS listener is up.
func (t *Transport) HasTLS() bool { return t.tlsLn != nil }

// Parser is the transport's SIP parser (for datagrams the Handler parses).
func (t *Transport) Parser() *sip.Parser { return t.parser }

// DNSGeneration changes whenever a cached name's addresses may have
// changed (for callers that keep sets of resolved addresses).
func (t *Transport) DNSGeneration() uint64 { return t.dns.gen.Load() }

// Streams is the number of TCP/TLS connections open (accepted and dialled).
func (t *Transport) Streams() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.streams)
}

// Serve starts the UDP read loops (workers) and the TCP/TLS accept loops.
func (t *Transport) Serve(workers int) { t.serve(workers) }

// Close closes the listeners and connections and waits for every
// goroutine of the transport.
func (t *Transport) Close() { t.close() }

// LookupBusy is the error of a lookup of host that could not start
// (MaxAsync lookups and dials running).
func LookupBusy(host string) error { return &dnsError{host: host, err: ErrBusy} }

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// Transport is the SIP edge's listeners, connections, sends and
// resolver (New builds it). Its methods are safe for concurrent use.
type Transport struct {
	side    uint8   // Config.Side, put in every Peer read here
	h       Handler // the proxy
	m       Metrics // counted here
	log     *slog.Logger
	udp     *udpSock // udpraw_linux.go
	tcpLn   net.Listener
	tlsLn   net.Listener
	tlsConf *tls.Config
	udpAddr netip.AddrPort
	tcpAddr netip.AddrPort
	tlsAddr netip.AddrPort
	six     *v6 // IPv6 listeners of a dual-stack edge (dualstack.go); nil: none
	parser  *sip.Parser

	mu      sync.Mutex
	streams map[streamKey]*Conn
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
	lookups map[string][]func(error) // name → callers waiting for its LookupThen
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var (
	ErrBusy       = errors.New("sip: too many pending dials or lookups")
	ErrNeedLookup = errors.New("sip: host name needs a DNS lookup")
	// ErrPending: the send goes on in another goroutine (a dial or a DNS
	// lookup); its outcome goes to the caller's callback.
	ErrPending = errors.New("sip: send pending")
)

// sendError is a send that failed, and the stage it failed at (the
// stage label of send_errors_total).
type sendError struct {
	stage string
	err   error
}

func (e *sendError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

func StageOf(err error) string {
	var se *sendError
	if errors.As(err, &se) {
		return se.stage
	}
	return "write"
}

// Label is p as a metric label value (udp, tcp, tls).
func (p Proto) Label() string {
	switch p {
	case TCP:
		return "tcp"
	case TLS:
		return "tls"
	}
	return "udp"
}
