package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The proxy has its own thin transport on top of sipgo's parser and
// message types. Why not sipgo's TransportLayer: its UDP writer refuses
// messages over ~1300 bytes (ErrUDPMTUCongestion) which carrier INVITEs
// plus our Via and Record-Route exceed; its UDP listener keeps every
// source in a pool; and its server runs a goroutine per message. Here
// each UDP read loop parses and handles a message inline (no goroutine
// per message or per call), unlisted sources are refused from the packet
// source address before any parsing, and writes go straight to the socket.

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
}

// maxMessage bounds a SIP message (UDP datagram or stream message).
const maxMessage = 65535

type streamKey struct {
	proto proto
	addr  netip.AddrPort
}

type streamConn struct {
	c      net.Conn
	proto  proto
	remote netip.AddrPort
	wmu    sync.Mutex
}

func (c *streamConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.c.Write(b)
	return err
}

type transport struct {
	s       *Server
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

	rmu      sync.RWMutex
	resolved map[string]netip.Addr // host name → address (hostnames in agent URIs)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

var (
	errBusy       = errors.New("sip: too many pending dials or lookups")
	errNeedLookup = errors.New("sip: host name needs a DNS lookup")
)

// maxAsync bounds goroutines doing DNS lookups and TCP/TLS dials.
const maxAsync = 64

// async runs f on its own goroutine unless maxAsync are already running.
func (t *transport) async(f func()) bool {
	select {
	case t.sem <- struct{}{}:
	default:
		t.s.metrics.Dropped.WithLabelValues("busy").Inc()
		return false
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.sem }()
		f()
	}()
	return true
}

// sendURI sends m to where u points; a host name not in the cache is
// looked up off the read loop.
func (t *transport) sendURI(u *sip.Uri, m sip.Message) error {
	p, err := t.uriPeerCached(u)
	if err == nil {
		return t.sendMsg(p, m)
	}
	if err != errNeedLookup {
		return err
	}
	uc := *u
	if !t.async(func() {
		if p, err := t.uriPeer(&uc); err == nil {
			_ = t.sendMsg(p, m)
		}
	}) {
		return errBusy
	}
	return nil
}

// sendVia sends a response by its Via, looking a host name up off the read loop.
func (t *transport) sendVia(v *sip.ViaHeader, m sip.Message) error {
	p, err := t.viaPeerOpt(v, false)
	if err == nil {
		return t.sendMsg(p, m)
	}
	if err != errNeedLookup {
		return err
	}
	if !t.async(func() {
		if p, err := t.viaPeerOpt(v, true); err == nil {
			_ = t.sendMsg(p, m)
		}
	}) {
		return errBusy
	}
	return nil
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.UDPAddr:
		return unmap(v.AddrPort())
	case *net.TCPAddr:
		return unmap(v.AddrPort())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return unmap(ap)
}

func (t *transport) listen(cfg Config) error {
	// UDP and TCP share one port. With port 0 the port UDP got may be
	// taken for TCP by another process: then try another pair.
	attempts := 1
	if ap, err := netip.ParseAddrPort(cfg.Addr); err == nil && ap.Port() == 0 {
		attempts = 20
	}
	var err error
	for i := 0; i < attempts; i++ {
		if err = t.listenPair(cfg.Addr); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return err
	}
	if cfg.TLSAddr != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			t.udp.Close()
			t.tcpLn.Close()
			return fmt.Errorf("sip: tls_cert/tls_key: %w", err)
		}
		t.tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		tl, err := tls.Listen("tcp", cfg.TLSAddr, t.tlsConf)
		if err != nil {
			t.udp.Close()
			t.tcpLn.Close()
			return fmt.Errorf("sip: listen tls %s: %w", cfg.TLSAddr, err)
		}
		t.tlsLn = tl
		t.tlsAddr = addrPortOf(tl.Addr())
	}
	return nil
}

// listenPair binds UDP on addr and TCP on the port UDP got.
func (t *transport) listenPair(addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("sip: listen udp %s: %w", addr, err)
	}
	udp := pc.(*net.UDPConn)
	udpAddr := addrPortOf(udp.LocalAddr())
	tcpAt := udpAddr.String()
	ln, err := net.Listen("tcp", tcpAt)
	if err != nil {
		udp.Close()
		return fmt.Errorf("sip: listen tcp %s: %w", tcpAt, err)
	}
	_ = udp.SetReadBuffer(4 << 20)
	_ = udp.SetWriteBuffer(4 << 20)
	t.udp, t.udpAddr = udp, udpAddr
	t.tcpLn, t.tcpAddr = ln, addrPortOf(ln.Addr())
	return nil
}

func (t *transport) serve(workers int) {
	for i := 0; i < workers; i++ {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.readUDP()
		}()
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.accept(t.tcpLn, protoTCP)
	}()
	if t.tlsLn != nil {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.accept(t.tlsLn, protoTLS)
		}()
	}
}

func (t *transport) close() {
	t.mu.Lock()
	t.closed = true
	conns := make([]*streamConn, 0, len(t.streams))
	for _, c := range t.streams {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	t.udp.Close()
	t.tcpLn.Close()
	if t.tlsLn != nil {
		t.tlsLn.Close()
	}
	for _, c := range conns {
		c.c.Close()
	}
	t.wg.Wait()
}

func (t *transport) readUDP() {
	buf := make([]byte, maxMessage)
	for {
		n, ap, err := t.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ap = unmap(ap)
		// Source filter before parsing: nothing is parsed or kept for an
		// unlisted source.
		if !t.s.allowedSource(ap.Addr()) {
			t.s.refuseSource(buf[:n], peer{proto: protoUDP, addr: ap})
			continue
		}
		t.s.handleDatagram(buf[:n], peer{proto: protoUDP, addr: ap})
	}
}

func (t *transport) accept(ln net.Listener, p proto) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ra := addrPortOf(c.RemoteAddr())
		if !t.s.allowedSource(ra.Addr()) {
			// refused at accept: nothing read, nothing kept
			t.s.metrics.Rejected.WithLabelValues("unknown_source").Inc()
			c.Close()
			continue
		}
		sc := &streamConn{c: c, proto: p, remote: ra}
		if !t.addStream(sc) {
			c.Close()
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.readStream(sc)
		}()
	}
}

func (t *transport) addStream(sc *streamConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.streams == nil {
		t.streams = map[streamKey]*streamConn{}
	}
	t.streams[streamKey{sc.proto, sc.remote}] = sc
	return true
}

func (t *transport) dropStream(sc *streamConn) {
	t.mu.Lock()
	if t.streams[streamKey{sc.proto, sc.remote}] == sc {
		delete(t.streams, streamKey{sc.proto, sc.remote})
	}
	t.mu.Unlock()
	sc.c.Close()
}

// streamIdle closes a connection that carried nothing for this long.
const streamIdle = 10 * time.Minute

func (t *transport) readStream(sc *streamConn) {
	defer t.dropStream(sc)
	par := t.parser.NewSIPStream()
	buf := make([]byte, 16384)
	from := peer{proto: sc.proto, addr: sc.remote, conn: sc}
	for {
		_ = sc.c.SetReadDeadline(time.Now().Add(streamIdle))
		n, err := sc.c.Read(buf)
		if err != nil {
			return
		}
		data := buf[:n]
		if par.Buffer().Len()+n > maxMessage {
			t.s.metrics.Dropped.WithLabelValues("too_large").Inc()
			return
		}
		if len(bytes.Trim(data, "\r\n")) == 0 && par.Buffer().Len() == 0 {
			if n == 4 { // RFC 5626 ping → pong
				_ = sc.write(data[:2])
			}
			continue
		}
		err = par.ParseSIPStream(data, func(m sip.Message) {
			t.s.handleMessage(m, from)
		})
		if err != nil && !errors.Is(err, sip.ErrParseSipPartial) {
			// no message boundary to resync on
			t.s.metrics.Dropped.WithLabelValues("malformed").Inc()
			return
		}
	}
}

// send writes a serialised message to p.
func (t *transport) send(p peer, b []byte) error {
	if p.proto == protoUDP {
		_, err := t.udp.WriteToUDPAddrPort(b, p.addr)
		return err
	}
	sc := p.conn
	if sc == nil {
		t.mu.Lock()
		sc = t.streams[streamKey{p.proto, p.addr}]
		t.mu.Unlock()
	}
	if sc == nil {
		// dialling can take seconds: never in a read loop
		cp := append([]byte(nil), b...)
		if !t.async(func() {
			if sc, err := t.stream(p); err == nil {
				if sc.write(cp) != nil {
					t.dropStream(sc)
				}
			}
		}) {
			return errBusy
		}
		return nil
	}
	if err := sc.write(b); err != nil {
		t.dropStream(sc)
		return err
	}
	return nil
}

// stream returns a connection to p, dialling one if needed.
func (t *transport) stream(p peer) (*streamConn, error) {
	t.mu.Lock()
	sc := t.streams[streamKey{p.proto, p.addr}]
	t.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	d := net.Dialer{Timeout: 2 * time.Second}
	var c net.Conn
	var err error
	if p.proto == protoTLS {
		c, err = tls.DialWithDialer(&d, "tcp", p.addr.String(), &tls.Config{
			ServerName: p.addr.Addr().String(), MinVersion: tls.VersionTLS12})
	} else {
		c, err = d.Dial("tcp", p.addr.String())
	}
	if err != nil {
		return nil, fmt.Errorf("sip: dial %s %s: %w", p.proto, p.addr, err)
	}
	sc = &streamConn{c: c, proto: p.proto, remote: p.addr}
	if !t.addStream(sc) {
		c.Close()
		return nil, net.ErrClosed
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.readStream(sc)
	}()
	return sc, nil
}

// sendMsg serialises m and sends it to p.
func (t *transport) sendMsg(p peer, m sip.Message) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	writeMsg(buf, m)
	err := t.send(p, buf.Bytes())
	if buf.Cap() <= 1<<16 {
		bufPool.Put(buf)
	}
	return err
}

// uriPeer resolves where a request for u goes (RFC 3263 without DNS
// SRV/NAPTR: IP literals, or a host name resolved through the cache).
func (t *transport) uriPeer(u *sip.Uri) (peer, error) { return t.uriPeerOpt(u, true) }

// uriPeerCached is uriPeer without DNS: errNeedLookup for an uncached name.
func (t *transport) uriPeerCached(u *sip.Uri) (peer, error) { return t.uriPeerOpt(u, false) }

func (t *transport) uriPeerOpt(u *sip.Uri, lookup bool) (peer, error) {
	var p peer
	pr, err := uriProto(u)
	if err != nil {
		return p, err
	}
	p.proto = pr
	a, err := t.resolveOpt(u.Host, lookup)
	if err != nil {
		return p, err
	}
	port := u.Port
	if port == 0 {
		port = 5060
		if p.proto == protoTLS {
			port = 5061
		}
	}
	if port < 0 || port > 65535 {
		return p, fmt.Errorf("sip: bad port %d", port)
	}
	p.addr = netip.AddrPortFrom(a, uint16(port))
	return p, nil
}

func (t *transport) resolve(host string) (netip.Addr, error) { return t.resolveOpt(host, true) }

func (t *transport) resolveOpt(host string, lookup bool) (netip.Addr, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), nil
	}
	t.rmu.RLock()
	a, ok := t.resolved[h]
	t.rmu.RUnlock()
	if ok {
		return a, nil
	}
	if !lookup {
		return netip.Addr{}, errNeedLookup
	}
	if h == "" {
		return netip.Addr{}, errors.New("sip: empty host")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("sip: resolve %q: %v", h, err)
	}
	a = addrs[0].Unmap()
	for _, x := range addrs {
		if x.Unmap().Is4() {
			a = x.Unmap()
			break
		}
	}
	t.rmu.Lock()
	if t.resolved == nil {
		t.resolved = map[string]netip.Addr{}
	}
	if len(t.resolved) < 10000 {
		t.resolved[h] = a
	}
	t.rmu.Unlock()
	return a, nil
}

// uriProto is the transport a request for u uses.
func uriProto(u *sip.Uri) (proto, error) {
	tp := ""
	if u.UriParams != nil {
		tp, _ = u.UriParams.Get("transport")
	}
	if !strings.EqualFold(u.Scheme, "sip") && !strings.EqualFold(u.Scheme, "sips") {
		return protoUDP, fmt.Errorf("sip: cannot route to a %q URI", u.Scheme)
	}
	switch {
	case strings.EqualFold(u.Scheme, "sips") || strings.EqualFold(tp, "tls"):
		return protoTLS, nil
	case strings.EqualFold(tp, "tcp"):
		return protoTCP, nil
	case tp == "" || strings.EqualFold(tp, "udp"):
		return protoUDP, nil
	}
	return protoUDP, fmt.Errorf("sip: unsupported transport %q", tp)
}

// viaPeer is where a response goes by its (next) Via: received/rport
// when present (RFC 3261 18.2.2, RFC 3581), else sent-by.
func (t *transport) viaPeer(v *sip.ViaHeader) (peer, error) { return t.viaPeerOpt(v, true) }

func (t *transport) viaPeerOpt(v *sip.ViaHeader, lookup bool) (peer, error) {
	var p peer
	switch strings.ToUpper(v.Transport) {
	case "TCP":
		p.proto = protoTCP
	case "TLS":
		p.proto = protoTLS
	case "UDP", "":
		p.proto = protoUDP
	default:
		return p, fmt.Errorf("sip: unsupported Via transport %q", v.Transport)
	}
	host := v.Host
	port := v.Port
	if v.Params != nil {
		if r, ok := v.Params.Get("received"); ok && r != "" {
			host = r
		}
		if r, ok := v.Params.Get("rport"); ok && r != "" {
			n := 0
			for i := 0; i < len(r) && n < 70000; i++ {
				if r[i] < '0' || r[i] > '9' {
					n = -1
					break
				}
				n = n*10 + int(r[i]-'0')
			}
			if n > 0 && n < 65536 {
				port = n
			}
		}
	}
	a, err := t.resolveOpt(host, lookup)
	if err != nil {
		return p, err
	}
	if port == 0 {
		port = 5060
		if p.proto == protoTLS {
			port = 5061
		}
	}
	p.addr = netip.AddrPortFrom(a.Unmap(), uint16(port))
	if p.proto != protoUDP {
		t.mu.Lock()
		p.conn = t.streams[streamKey{p.proto, p.addr}]
		t.mu.Unlock()
	}
	return p, nil
}

// writeMsg serialises m like m.StringWrite, without copying the body
// into a string first.
func writeMsg(buf *bytes.Buffer, m sip.Message) {
	var hs []sip.Header
	switch x := m.(type) {
	case *sip.Request:
		buf.WriteString(string(x.Method))
		buf.WriteByte(' ')
		x.Recipient.StringWrite(buf)
		buf.WriteByte(' ')
		buf.WriteString(x.SipVersion)
		hs = x.Headers()
	case *sip.Response:
		x.StartLineWrite(buf)
		hs = x.Headers()
	default:
		m.StringWrite(buf)
		return
	}
	buf.WriteString("\r\n")
	for _, h := range hs {
		writeHeaderLine(buf, h)
	}
	buf.WriteString("\r\n")
	buf.Write(m.Body())
}

// writeHeaderLine writes one header line; a Via is written here because
// sipgo's ViaHeader.StringWrite builds its value in a string first.
func writeHeaderLine(buf *bytes.Buffer, h sip.Header) {
	if v, ok := h.(*sip.ViaHeader); ok {
		buf.WriteString("Via: ")
		buf.WriteString(v.ProtocolName)
		buf.WriteByte('/')
		buf.WriteString(v.ProtocolVersion)
		buf.WriteByte('/')
		buf.WriteString(v.Transport)
		buf.WriteByte(' ')
		if strings.IndexByte(v.Host, ':') >= 0 && !strings.HasPrefix(v.Host, "[") {
			buf.WriteByte('[')
			buf.WriteString(v.Host)
			buf.WriteByte(']')
		} else {
			buf.WriteString(v.Host)
		}
		if v.Port > 0 {
			buf.WriteByte(':')
			buf.WriteString(strconv.Itoa(v.Port))
		}
		if v.Params.Length() > 0 {
			buf.WriteByte(';')
			v.Params.ToStringWrite(';', buf)
		}
	} else {
		h.StringWrite(buf)
	}
	buf.WriteString("\r\n")
}
