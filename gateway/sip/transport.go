package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// maxAsync bounds goroutines doing DNS lookups and TCP/TLS dials.
const maxAsync = 64

// async runs f on its own goroutine unless maxAsync are already running.
func (t *transport) async(f func()) bool {
	if !t.acquire() {
		return false
	}
	t.run(f)
	return true
}

// acquire takes one of the maxAsync slots (false: none free, counted).
func (t *transport) acquire() bool {
	select {
	case t.sem <- struct{}{}:
		return true
	default:
		t.s.metrics.Dropped.WithLabelValues("busy").Inc()
		return false
	}
}

// run runs f on its own goroutine in a slot taken by acquire.
func (t *transport) run(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.sem }()
		f()
	}()
}

// lookupThen resolves host in another goroutine and then calls then with
// the outcome (nil: the name is in the cache now), with no lock held.
// Every caller waiting for one name shares one goroutine (and one query),
// so a burst of calls to one endpoint takes one slot. false when the name
// needs a goroutine and maxAsync are already running.
func (t *transport) lookupThen(host string, then func(error)) bool {
	k := dnsKey(trimBrackets(host))
	t.lmu.Lock()
	if w, ok := t.lookups[k]; ok {
		t.lookups[k] = append(w, then)
		t.lmu.Unlock()
		return true
	}
	if !t.acquire() {
		t.lmu.Unlock()
		return false
	}
	if t.lookups == nil {
		t.lookups = map[string][]func(error){}
	}
	t.lookups[k] = []func(error){then}
	t.lmu.Unlock()
	t.run(func() {
		_, err := t.resolve(host)
		t.lmu.Lock()
		waiting := t.lookups[k]
		delete(t.lookups, k)
		t.lmu.Unlock()
		for _, f := range waiting {
			f(err)
		}
	})
	return true
}

// sendURI sends m to where u points; a host name not in the cache is
// looked up off the read loop.
func (t *transport) sendURI(u *sip.Uri, m sip.Message) error {
	if err := t.sendURIThen(u, m, nil, nil); err != errPending {
		return err
	}
	return nil
}

// sendURIThen is sendURI with sendThen's contract (errPending, then);
// alt is a connection to the same party to fall back on.
func (t *transport) sendURIThen(u *sip.Uri, m sip.Message, alt *streamConn, then func(error)) error {
	p, err := t.uriPeerCached(u)
	if err == nil {
		p.alt = alt
		return t.sendMsgThen(p, m, then)
	}
	if err != errNeedLookup {
		return t.failedMsg(p, "resolve", m, err)
	}
	uc := *u
	if !t.lookupThen(u.Host, func(lerr error) {
		p, err := t.uriPeerCached(&uc)
		if lerr != nil {
			err = lerr
		}
		if err == nil {
			p.alt = alt
			// a dial goes on in yet another goroutine: then gets its outcome
			if err = t.sendMsgThen(p, m, then); err == errPending {
				return
			}
		} else if alt.usable() {
			err = t.sendMsgThen(peer{proto: alt.proto, addr: alt.remote, conn: alt}, m, nil)
		} else {
			err = t.failedMsg(p, "resolve", m, err)
		}
		if then != nil {
			then(err)
		}
	}) {
		return t.failedMsg(peer{proto: p.proto}, "busy", m, errBusy)
	}
	return errPending
}

// sendVia sends a response by its Via, looking a host name up off the read loop.
func (t *transport) sendVia(v *sip.ViaHeader, m sip.Message) error {
	p, err := t.viaPeerOpt(v, resolveCached)
	if err == nil {
		return t.sendMsg(p, m)
	}
	if err != errNeedLookup {
		if isResolveErr(err) {
			return t.failedMsg(p, "resolve", m, err)
		}
		return err
	}
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	if !t.lookupThen(host, func(lerr error) {
		p, err := t.viaPeerOpt(v, resolveCached)
		if lerr != nil {
			err = lerr
		}
		if err == nil {
			_ = t.sendMsg(p, m)
		} else {
			_ = t.failedMsg(p, "resolve", m, err)
		}
	}) {
		return t.failedMsg(peer{proto: p.proto}, "busy", m, errBusy)
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
	t.msgTimeout = cfg.MessageTimeout
	t.maxConns, t.maxPerSource = cfg.MaxConnections, cfg.MaxConnectionsPerSource
	if t.tlsClient, err = clientTLS(cfg); err != nil {
		t.udp.Close()
		t.tcpLn.Close()
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

// clientTLS is the configuration of the TLS connections callgate opens:
// the system roots plus tls_ca_file, and tls_client_cert for peers that
// ask for a client certificate. The server name is set per connection.
func clientTLS(cfg Config) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSCAFile != "" {
		cas, err := loadCAs(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("sip: tls_ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, c := range cas {
			pool.AddCert(c)
		}
		conf.RootCAs = pool
	}
	if cfg.TLSClientCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSClientCert, cfg.TLSClientKey)
		if err != nil {
			return nil, fmt.Errorf("sip: tls_client_cert/tls_client_key: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
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
	if t.dns != nil {
		t.dns.close() // pending lookups end at once
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
		sc := &streamConn{c: c, proto: p, remote: ra, inbound: true}
		switch t.addInbound(sc) {
		case "":
		case "closed":
			c.Close()
			return
		default:
			c.Close()
			continue
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

// addInbound registers an accepted connection unless a cap is reached:
// "" when added, else why not ("per_source", "total", "closed").
func (t *transport) addInbound(sc *streamConn) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return "closed"
	}
	a := sc.remote.Addr()
	why := ""
	switch {
	case t.maxPerSource > 0 && t.perSource[a] >= t.maxPerSource:
		why = "per_source"
	case t.maxConns > 0 && t.inbound >= t.maxConns:
		why = "total"
	}
	if why != "" {
		t.s.metrics.ConnsRefused.WithLabelValues(why).Inc()
		t.s.log.Debug("sip: connection refused", "from", sc.remote.String(), "transport", sc.proto.String(), "cap", why)
		return why
	}
	if t.perSource == nil {
		t.perSource = map[netip.Addr]int{}
	}
	t.perSource[a]++
	t.inbound++
	t.s.metrics.Conns.WithLabelValues(sc.proto.label()).Inc()
	if t.streams == nil {
		t.streams = map[streamKey]*streamConn{}
	}
	t.streams[streamKey{sc.proto, sc.remote}] = sc
	return ""
}

func (t *transport) dropStream(sc *streamConn) {
	if sc.closed.Swap(true) {
		return
	}
	t.mu.Lock()
	if t.streams[streamKey{sc.proto, sc.remote}] == sc {
		delete(t.streams, streamKey{sc.proto, sc.remote})
	}
	if sc.inbound {
		a := sc.remote.Addr()
		if t.perSource[a]--; t.perSource[a] <= 0 {
			delete(t.perSource, a)
		}
		t.inbound--
		t.s.metrics.Conns.WithLabelValues(sc.proto.label()).Dec()
	}
	t.mu.Unlock()
	sc.c.Close()
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

// streamIdle closes a connection that carried nothing for this long
// (between messages; a message itself must complete within msgTimeout).
const streamIdle = 10 * time.Minute

// readStream reads messages from a TCP/TLS connection until it closes.
// Between messages the connection may stay idle for streamIdle; once a
// message has started (or a TLS handshake), it must complete within
// msgTimeout however slowly its bytes trickle in.
func (t *transport) readStream(sc *streamConn) {
	defer t.dropStream(sc)
	if tc, ok := sc.c.(*tls.Conn); ok && sc.inbound {
		_ = tc.SetDeadline(time.Now().Add(t.msgTimeout))
		if err := tc.Handshake(); err != nil {
			t.s.metrics.Dropped.WithLabelValues("tls_handshake").Inc()
			t.s.log.Debug("sip: TLS handshake failed", "from", sc.remote.String(), "err", err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
	}
	par := t.parser.NewSIPStream()
	defer par.Close()
	buf := make([]byte, 16384)
	from := peer{proto: sc.proto, addr: sc.remote, conn: sc}
	var msgStart time.Time // first byte of the message in progress; zero between messages
	for {
		deadline := time.Now().Add(streamIdle)
		if !msgStart.IsZero() {
			deadline = msgStart.Add(t.msgTimeout)
		}
		_ = sc.c.SetReadDeadline(deadline)
		n, err := sc.c.Read(buf)
		if err != nil {
			var ne net.Error
			if !msgStart.IsZero() && errors.As(err, &ne) && ne.Timeout() {
				t.s.metrics.Dropped.WithLabelValues("message_timeout").Inc()
				t.s.log.Debug("sip: stream message not complete in time", "from", sc.remote.String(),
					"transport", sc.proto.String(), "message_timeout", t.msgTimeout)
			}
			return
		}
		now := time.Now()
		data := buf[:n]
		if par.Buffer().Len()+n > maxMessage {
			t.s.metrics.Dropped.WithLabelValues("too_large").Inc()
			return
		}
		if msgStart.IsZero() && len(bytes.Trim(data, "\r\n")) == 0 {
			if n == 4 { // RFC 5626 ping → pong
				_ = sc.write(data[:2])
			}
			continue
		}
		_, _ = par.Write(data)
		inMsg := false
		for par.Buffer().Len() > 0 {
			m, _, err := par.ParseNext()
			if errors.Is(err, io.ErrUnexpectedEOF) {
				// a started message (start line parsed, or part of it
				// buffered); CRLFs between messages alone are not one
				inMsg = m != nil || par.Buffer().Len() > 0
				break
			}
			if err != nil {
				// no message boundary to resync on
				reason := "malformed"
				if errors.Is(err, sip.ErrMessageTooLarge) {
					reason = "too_large"
				}
				t.s.metrics.Dropped.WithLabelValues(reason).Inc()
				return
			}
			t.s.handleMessage(m, from)
		}
		switch {
		case !inMsg:
			msgStart = time.Time{}
		case msgStart.IsZero():
			msgStart = now
		}
	}
}

// send writes a serialised message to p. A send that needs a dial goes
// on in another goroutine and counts as sent here; every failure, now or
// later, is counted and logged (failed).
func (t *transport) send(p peer, b []byte) error {
	if err := t.sendThen(p, b, nil); err != errPending {
		return err
	}
	return nil
}

// sendThen writes b to p and returns the outcome, or errPending when a
// connection must be dialled first (never in a read loop): then, when not
// nil, is called later with the outcome, from another goroutine with no
// lock held. When p.addr cannot be reached and p.alt is open, b goes
// over p.alt.
func (t *transport) sendThen(p peer, b []byte, then func(error)) error {
	if p.proto == protoUDP {
		if _, err := t.udp.WriteToUDPAddrPort(b, p.addr); err != nil {
			return t.failed(p, "write", b, err)
		}
		return nil
	}
	sc := p.conn
	if !sc.usable() {
		t.mu.Lock()
		sc = t.streams[streamKey{p.proto, p.addr}]
		t.mu.Unlock()
	}
	if sc != nil {
		return t.writeStream(sc, p, b)
	}
	cp := append([]byte(nil), b...)
	if !t.async(func() {
		err := t.dialWrite(p, cp)
		if then != nil {
			then(err)
		}
	}) {
		return t.failed(p, "busy", b, errBusy)
	}
	return errPending
}

// dialWrite connects to p and writes b (off the read loops).
func (t *transport) dialWrite(p peer, b []byte) error {
	sc, err := t.stream(p)
	if err != nil {
		if p.alt.usable() {
			t.s.log.Debug("sip: destination unreachable, using the connection its party opened",
				"call_id", callIDOf(b), "to", p.addr.String(), "via", p.alt.remote.String(), "err", err)
			return t.writeStream(p.alt, peer{proto: p.alt.proto, addr: p.alt.remote, conn: p.alt}, b)
		}
		return t.failed(p, stageOf(err), b, err)
	}
	return t.writeStream(sc, p, b)
}

func (t *transport) writeStream(sc *streamConn, p peer, b []byte) error {
	if err := sc.write(b); err != nil {
		t.dropStream(sc)
		return t.failed(p, "write", b, err)
	}
	return nil
}

// failed counts and logs a send that failed (rate-limited log lines, the
// call's Call-ID) and returns the error with its stage.
func (t *transport) failed(p peer, stage string, b []byte, err error) error {
	t.s.metrics.SendErrors.WithLabelValues(p.proto.label(), stage).Inc()
	if t.logToken() {
		t.s.log.Warn("sip: send failed", "call_id", callIDOf(b), "method", methodOf(b), "to", p.addr.String(),
			"transport", p.proto.String(), "stage", stage, "err", err)
	}
	var se *sendError
	if errors.As(err, &se) {
		return err
	}
	return &sendError{stage: stage, err: err}
}

func (t *transport) failedMsg(p peer, stage string, m sip.Message, err error) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	writeMsg(buf, m)
	err = t.failed(p, stage, buf.Bytes(), err)
	if buf.Cap() <= 1<<16 {
		bufPool.Put(buf)
	}
	return err
}

// logToken allows 20 send failure log lines per second.
func (t *transport) logToken() bool {
	now := time.Now().Unix()
	if t.logSecond.Load() != now {
		t.logSecond.Store(now)
		t.logTokens.Store(20)
	}
	return t.logTokens.Add(-1) >= 0
}

// callIDOf is the Call-ID of a serialised message ("" if none).
func callIDOf(b []byte) string {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		line := b
		if i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break // end of headers
		}
		name, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte("call-id")) || bytes.EqualFold(name, []byte("i")) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// methodOf is a serialised request's method, or "response".
func methodOf(b []byte) string {
	if bytes.HasPrefix(b, []byte("SIP/")) {
		return "response"
	}
	if i := bytes.IndexByte(b, ' '); i > 0 && i < 20 {
		return string(b[:i])
	}
	return ""
}

const (
	dialTimeout      = 2 * time.Second
	handshakeTimeout = 5 * time.Second
)

// stream returns a connection to p, dialling one if needed.
func (t *transport) stream(p peer) (*streamConn, error) {
	t.mu.Lock()
	sc := t.streams[streamKey{p.proto, p.addr}]
	t.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.Dial("tcp", p.addr.String())
	if err != nil {
		return nil, &sendError{"dial", fmt.Errorf("sip: dial %s %s: %w", p.proto, p.addr, err)}
	}
	if p.proto == protoTLS {
		conf := t.tlsClient.Clone()
		conf.ServerName = p.addr.Addr().String()
		if p.host != "" {
			conf.ServerName = p.host
		}
		tc := tls.Client(c, conf)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, &sendError{"handshake", fmt.Errorf("sip: TLS handshake with %s (server name %q): %w", p.addr, conf.ServerName, err)}
		}
		c = tc
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
	if err := t.sendMsgThen(p, m, nil); err != errPending {
		return err
	}
	return nil
}

// sendMsgThen serialises m and sends it to p (sendThen).
func (t *transport) sendMsgThen(p peer, m sip.Message, then func(error)) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	writeMsg(buf, m)
	err := t.sendThen(p, buf.Bytes(), then)
	if buf.Cap() <= 1<<16 {
		bufPool.Put(buf)
	}
	return err
}

// resolveMode says how far resolveOpt may go for a host name.
type resolveMode uint8

const (
	// resolveCached: an unexpired cache entry, else errNeedLookup (read
	// loops, call locks).
	resolveCached resolveMode = iota
	// resolveLast: the name's last known address even if expired, else
	// errNeedLookup (matching sources and peers, never a send).
	resolveLast
	// resolveLookup: a DNS lookup when needed (blocks up to the lookup
	// timeout: only in a goroutine of its own).
	resolveLookup
)

// uriPeer resolves where a request for u goes (RFC 3263 without DNS
// SRV/NAPTR: IP literals, or a host name resolved through the cache).
// It may block on a DNS lookup: never on a read loop or under a call's lock.
func (t *transport) uriPeer(u *sip.Uri) (peer, error) { return t.uriPeerOpt(u, resolveLookup) }

// uriPeerCached is uriPeer without DNS: errNeedLookup for a name not in
// the cache (or expired there), the cached error for a name that failed.
func (t *transport) uriPeerCached(u *sip.Uri) (peer, error) { return t.uriPeerOpt(u, resolveCached) }

func (t *transport) uriPeerOpt(u *sip.Uri, mode resolveMode) (peer, error) {
	var p peer
	pr, err := uriProto(u)
	if err != nil {
		return p, err
	}
	p.proto = pr
	a, err := t.resolveOpt(u.Host, mode)
	if err != nil {
		return p, err
	}
	if h := trimBrackets(u.Host); h != a.String() {
		if _, err := netip.ParseAddr(h); err != nil {
			p.host = h // a name: the TLS server name
		}
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

func (t *transport) resolve(host string) (netip.Addr, error) {
	return t.resolveOpt(host, resolveLookup)
}

func (t *transport) resolveOpt(host string, mode resolveMode) (netip.Addr, error) {
	h := strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap(), nil
	}
	if h == "" {
		return netip.Addr{}, errors.New("sip: empty host")
	}
	switch mode {
	case resolveLast:
		if a, ok := t.dns.last(h); ok {
			return a, nil
		}
		return netip.Addr{}, errNeedLookup
	case resolveCached:
		if a, ok, err := t.dns.cached(h); ok {
			return a, err
		}
		return netip.Addr{}, errNeedLookup
	}
	return t.dns.lookup(h)
}

// isResolveErr reports whether err is a host name that did not resolve.
func isResolveErr(err error) bool {
	var de *dnsError
	return errors.As(err, &de)
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
func (t *transport) viaPeer(v *sip.ViaHeader) (peer, error) { return t.viaPeerOpt(v, resolveLookup) }

func (t *transport) viaPeerOpt(v *sip.ViaHeader, mode resolveMode) (peer, error) {
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
	a, err := t.resolveOpt(host, mode)
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
