package sip

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The transport layer's sends: serialising a message, writing it over UDP
// or an open TCP/TLS connection, dialling one off the read loops, falling
// back to the connection the party opened (RFC 5923 style reuse), and
// counting and logging every failed send (send_errors_total).

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
			t.log.Debug("sip: destination unreachable, using the connection its party opened",
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
	t.m.SendErrors.WithLabelValues(p.proto.label(), stage).Inc()
	if t.logToken() {
		t.log.Warn("sip: send failed", "call_id", callIDOf(b), "method", methodOf(b), "to", p.addr.String(),
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
