package transport

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The transport layer's listeners and connections: UDP and TCP on one
// port (TLS on its own), the UDP read loops, accepted TCP/TLS connections
// and their caps (in total and per source), the message deadline and idle
// timeout of a stream, and the map of open connections that sends reuse.
// Nothing here knows the proxy: messages go to the Handler (transport.go).

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

func (t *Transport) listen(cfg Config) error {
	// UDP and TCP share one port. With port 0 the port UDP got may be
	// taken for TCP by another process: then try another pair.
	attempts := 1
	if ap, err := netip.ParseAddrPort(cfg.Addr); err == nil && ap.Port() == 0 {
		attempts = 20
	}
	var err error
	for i := 0; i < attempts; i++ {
		if err = t.listenPair(cfg); err == nil || !errors.Is(err, syscall.EADDRINUSE) {
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
		_, tcpNet := primaryNets(cfg)
		tl, err := tls.Listen(tcpNet, cfg.TLSAddr, t.tlsConf)
		if err != nil {
			t.udp.Close()
			t.tcpLn.Close()
			return fmt.Errorf("sip: listen tls %s: %w", cfg.TLSAddr, err)
		}
		t.tlsLn = tl
		t.tlsAddr = addrPortOf(tl.Addr())
	}
	if err := t.listen6(cfg); err != nil {
		t.udp.Close()
		t.tcpLn.Close()
		if t.tlsLn != nil {
			t.tlsLn.Close()
		}
		return err
	}
	return nil
}

// clientTLS is the configuration of the TLS connections callgate opens:
// the system roots plus tls_ca_file, and tls_client_cert for peers that
// ask for a client certificate. The server name is set per connection.
func clientTLS(cfg Config) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLSCAFile != "" {
		cas, err := LoadCAs(cfg.TLSCAFile)
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

// listenPair binds UDP on cfg.Addr and TCP on the port UDP got.
func (t *Transport) listenPair(cfg Config) error {
	addr := cfg.Addr
	udpNet, tcpNet := primaryNets(cfg)
	pc, err := net.ListenPacket(udpNet, addr)
	if err != nil {
		return fmt.Errorf("sip: listen udp %s: %w", addr, err)
	}
	udp := pc.(*net.UDPConn)
	udpAddr := addrPortOf(udp.LocalAddr())
	tcpAt := udpAddr.String()
	ln, err := net.Listen(tcpNet, tcpAt)
	if err != nil {
		udp.Close()
		return fmt.Errorf("sip: listen tcp %s: %w", tcpAt, err)
	}
	_ = udp.SetReadBuffer(4 << 20)
	_ = udp.SetWriteBuffer(4 << 20)
	t.udp, t.udpAddr = newUDPSock(udp), udpAddr
	t.udp.setFail(t.heldFailed)
	t.tcpLn, t.tcpAddr = ln, addrPortOf(ln.Addr())
	return nil
}

func (t *Transport) serve(workers int) {
	for i := 0; i < workers; i++ {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.readUDPOn(t.udp)
		}()
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.accept(t.tcpLn, TCP)
	}()
	if t.tlsLn != nil {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.accept(t.tlsLn, TLS)
		}()
	}
	t.serve6(workers)
}

func (t *Transport) close() {
	t.mu.Lock()
	t.closed = true
	conns := make([]*Conn, 0, len(t.streams))
	for _, c := range t.streams {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	t.udp.Close()
	t.tcpLn.Close()
	if t.tlsLn != nil {
		t.tlsLn.Close()
	}
	t.close6()
	for _, c := range conns {
		c.c.Close()
	}
	if t.dns != nil {
		t.dns.close() // pending lookups end at once
	}
	t.wg.Wait()
}

// heldFailed counts and logs a held send (udpraw_linux.go) the kernel
// refused.
func (t *Transport) heldFailed(b []byte, ap netip.AddrPort, err error) {
	_ = t.failed(Peer{Proto: UDP, Addr: ap, Side: t.side}, "write", b, err)
}

func (t *Transport) readUDPOn(udp *udpSock) {
	r := udp.newReader()
	for {
		b, ap, err := r.next()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ap = unmap(ap)
		// Source filter before parsing: nothing is parsed or kept for an
		// unlisted source.
		if !t.h.AllowedSource(ap.Addr()) {
			t.h.RefuseSource(b, Peer{Proto: UDP, Addr: ap, Side: t.side})
			continue
		}
		t.h.HandleDatagram(b, Peer{Proto: UDP, Addr: ap, Side: t.side})
	}
}

func (t *Transport) accept(ln net.Listener, p Proto) {
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
		if !t.h.AllowedSource(ra.Addr()) {
			// refused at accept: nothing read, nothing kept
			t.m.Rejected.WithLabelValues("unknown_source").Inc()
			c.Close()
			continue
		}
		sc := &Conn{c: c, proto: p, remote: ra, inbound: true}
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

func (t *Transport) addStream(sc *Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	if t.streams == nil {
		t.streams = map[streamKey]*Conn{}
	}
	t.streams[streamKey{sc.proto, sc.remote}] = sc
	return true
}

// addInbound registers an accepted connection unless a cap is reached:
// "" when added, else why not ("per_source", "total", "closed").
func (t *Transport) addInbound(sc *Conn) string {
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
		t.m.ConnsRefused.WithLabelValues(why).Inc()
		t.log.Debug("sip: connection refused", "from", sc.remote.String(), "transport", sc.proto.String(), "cap", why)
		return why
	}
	if t.perSource == nil {
		t.perSource = map[netip.Addr]int{}
	}
	t.perSource[a]++
	t.inbound++
	t.m.Conns.WithLabelValues(sc.proto.Label()).Inc()
	if t.streams == nil {
		t.streams = map[streamKey]*Conn{}
	}
	t.streams[streamKey{sc.proto, sc.remote}] = sc
	return ""
}

func (t *Transport) dropStream(sc *Conn) {
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
		t.m.Conns.WithLabelValues(sc.proto.Label()).Dec()
	}
	t.mu.Unlock()
	sc.c.Close()
}

// streamIdle closes a connection that carried nothing for this long
// (between messages; a message itself must complete within msgTimeout).
const streamIdle = 10 * time.Minute

// readStream reads messages from a TCP/TLS connection until it closes.
// Between messages the connection may stay idle for streamIdle; once a
// message has started (or a TLS handshake), it must complete within
// msgTimeout however slowly its bytes trickle in.
func (t *Transport) readStream(sc *Conn) {
	defer t.dropStream(sc)
	if tc, ok := sc.c.(*tls.Conn); ok && sc.inbound {
		_ = tc.SetDeadline(time.Now().Add(t.msgTimeout))
		if err := tc.Handshake(); err != nil {
			t.m.Dropped.WithLabelValues("tls_handshake").Inc()
			t.log.Debug("sip: TLS handshake failed", "from", sc.remote.String(), "err", err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
	}
	par := t.parser.NewSIPStream()
	defer par.Close()
	buf := make([]byte, 16384)
	from := Peer{Proto: sc.proto, Addr: sc.remote, Conn: sc, Side: t.side}
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
				t.m.Dropped.WithLabelValues("message_timeout").Inc()
				t.log.Debug("sip: stream message not complete in time", "from", sc.remote.String(),
					"transport", sc.proto.String(), "message_timeout", t.msgTimeout)
			}
			return
		}
		now := time.Now()
		data := buf[:n]
		if par.Buffer().Len()+n > maxMessage {
			t.m.Dropped.WithLabelValues("too_large").Inc()
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
				t.m.Dropped.WithLabelValues(reason).Inc()
				return
			}
			t.h.HandleMessage(m, from)
		}
		switch {
		case !inMsg:
			msgStart = time.Time{}
		case msgStart.IsZero():
			msgStart = now
		}
	}
}

// LoadCAs reads a PEM bundle of CA certificates.
func LoadCAs(file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for len(b) > 0 {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate in it", file)
	}
	return out, nil
}
