package transport

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

// SendURI sends m to where u points; a host name not in the cache is
// looked up off the read loop.
func (t *Transport) SendURI(u *sip.Uri, m sip.Message) error {
	if err := t.SendURIThen(u, m, nil, nil); err != ErrPending {
		return err
	}
	return nil
}

// SendURIThen is SendURI with SendThen's contract (ErrPending, then);
// alt is a connection to the same party to fall back on.
func (t *Transport) SendURIThen(u *sip.Uri, m sip.Message, alt *Conn, then func(error)) error {
	p, err := t.URIPeerCached(u)
	if err == nil {
		p.Alt = alt
		return t.SendMsgThen(p, m, then)
	}
	if err != ErrNeedLookup {
		return t.failedMsg(p, "resolve", m, err)
	}
	uc := *u
	if !t.LocateThen(u, func(lerr error) {
		p, err := t.URIPeerCached(&uc)
		if lerr != nil {
			err = lerr
		}
		if err == nil {
			p.Alt = alt
			// a dial goes on in yet another goroutine: then gets its outcome
			if err = t.SendMsgThen(p, m, then); err == ErrPending {
				return
			}
		} else if alt.Usable() {
			err = t.SendMsgThen(Peer{Proto: alt.proto, Addr: alt.remote, Conn: alt}, m, nil)
		} else {
			err = t.failedMsg(p, "resolve", m, err)
		}
		if then != nil {
			then(err)
		}
	}) {
		return t.failedMsg(Peer{Proto: p.Proto}, "busy", m, ErrBusy)
	}
	return ErrPending
}

// SendVia sends a response by its Via, looking a host name up off the read loop.
func (t *Transport) SendVia(v *sip.ViaHeader, m sip.Message) error {
	p, err := t.ViaPeerOpt(v, ResolveCached)
	if err == nil {
		return t.SendMsg(p, m)
	}
	if err != ErrNeedLookup {
		if IsResolveErr(err) {
			return t.failedMsg(p, "resolve", m, err)
		}
		return err
	}
	host := v.Host
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	if !t.LookupThen(host, func(lerr error) {
		p, err := t.ViaPeerOpt(v, ResolveCached)
		if lerr != nil {
			err = lerr
		}
		if err == nil {
			_ = t.SendMsg(p, m)
		} else {
			_ = t.failedMsg(p, "resolve", m, err)
		}
	}) {
		return t.failedMsg(Peer{Proto: p.Proto}, "busy", m, ErrBusy)
	}
	return nil
}

// send writes a serialised message to p. A send that needs a dial goes
// on in another goroutine and counts as sent here; every failure, now or
// later, is counted and logged (failed).
func (t *Transport) Send(p Peer, b []byte) error {
	if err := t.SendThen(p, b, nil); err != ErrPending {
		return err
	}
	return nil
}

// SendThen writes b to p and returns the outcome, or ErrPending when a
// connection must be dialled first (never in a read loop): then, when not
// nil, is called later with the outcome, from another goroutine with no
// lock held. When p.Addr cannot be reached and p.Alt is open, b goes
// over p.Alt.
func (t *Transport) SendThen(p Peer, b []byte, then func(error)) error {
	if p.Proto == UDP {
		if err := t.udpFor(p.Addr.Addr()).writeTo(b, p.Addr); err != nil {
			return t.failed(p, "write", b, err)
		}
		return nil
	}
	sc := p.Conn
	if !sc.Usable() {
		t.mu.Lock()
		sc = t.streams[streamKey{p.Proto, p.Addr}]
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
		return t.failed(p, "busy", b, ErrBusy)
	}
	return ErrPending
}

// dialWrite connects to p and writes b (off the read loops).
func (t *Transport) dialWrite(p Peer, b []byte) error {
	sc, err := t.stream(p)
	if err != nil {
		if p.Alt.Usable() {
			t.log.Debug("sip: destination unreachable, using the connection its party opened",
				"call_id", callIDOf(b), "to", p.Addr.String(), "via", p.Alt.remote.String(), "err", err)
			return t.writeStream(p.Alt, Peer{Proto: p.Alt.proto, Addr: p.Alt.remote, Conn: p.Alt}, b)
		}
		return t.failed(p, StageOf(err), b, err)
	}
	return t.writeStream(sc, p, b)
}

func (t *Transport) writeStream(sc *Conn, p Peer, b []byte) error {
	if err := sc.write(b); err != nil {
		t.dropStream(sc)
		return t.failed(p, "write", b, err)
	}
	return nil
}

// failed counts and logs a send that failed (rate-limited log lines, the
// call's Call-ID) and returns the error with its stage.
func (t *Transport) failed(p Peer, stage string, b []byte, err error) error {
	t.m.SendErrors.WithLabelValues(p.Proto.Label(), stage).Inc()
	if t.logToken() {
		t.log.Warn("sip: send failed", "call_id", callIDOf(b), "method", methodOf(b), "to", p.Addr.String(),
			"transport", p.Proto.String(), "stage", stage, "err", err)
	}
	var se *sendError
	if errors.As(err, &se) {
		return err
	}
	return &sendError{stage: stage, err: err}
}

func (t *Transport) failedMsg(p Peer, stage string, m sip.Message, err error) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	WriteMsg(buf, m)
	err = t.failed(p, stage, buf.Bytes(), err)
	if buf.Cap() <= 1<<16 {
		bufPool.Put(buf)
	}
	return err
}

// logToken allows 20 send failure log lines per second.
func (t *Transport) logToken() bool {
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
func (t *Transport) stream(p Peer) (*Conn, error) {
	t.mu.Lock()
	sc := t.streams[streamKey{p.Proto, p.Addr}]
	t.mu.Unlock()
	if sc != nil {
		return sc, nil
	}
	d := net.Dialer{Timeout: dialTimeout}
	c, err := d.Dial("tcp", p.Addr.String())
	if err != nil {
		return nil, &sendError{"dial", fmt.Errorf("sip: dial %s %s: %w", p.Proto, p.Addr, err)}
	}
	if p.Proto == TLS {
		conf := t.tlsClient.Clone()
		conf.ServerName = p.Addr.Addr().String()
		if p.Host != "" {
			conf.ServerName = p.Host
		}
		tc := tls.Client(c, conf)
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			c.Close()
			return nil, &sendError{"handshake", fmt.Errorf("sip: TLS handshake with %s (server name %q): %w", p.Addr, conf.ServerName, err)}
		}
		c = tc
	}
	sc = &Conn{c: c, proto: p.Proto, remote: p.Addr}
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

// SendMsg serialises m and sends it to p.
func (t *Transport) SendMsg(p Peer, m sip.Message) error {
	if err := t.SendMsgThen(p, m, nil); err != ErrPending {
		return err
	}
	return nil
}

// SendMsgThen serialises m and sends it to p (SendThen).
func (t *Transport) SendMsgThen(p Peer, m sip.Message, then func(error)) error {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	WriteMsg(buf, m)
	err := t.SendThen(p, buf.Bytes(), then)
	if buf.Cap() <= 1<<16 {
		bufPool.Put(buf)
	}
	return err
}

// WriteMsg serialises m like m.StringWrite, without copying the body
// into a string first.
func WriteMsg(buf *bytes.Buffer, m sip.Message) {
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
		WriteHeaderLine(buf, h)
	}
	buf.WriteString("\r\n")
	buf.Write(m.Body())
}

// WriteHeaderLine writes one header line; a Via is written by WriteVia
// because sipgo's ViaHeader.StringWrite builds its value in a string first.
func WriteHeaderLine(buf *bytes.Buffer, h sip.Header) {
	if v, ok := h.(*sip.ViaHeader); ok {
		WriteVia(buf, v)
	} else {
		h.StringWrite(buf)
	}
	buf.WriteString("\r\n")
}

// WriteVia writes a Via header line without its CRLF, as sipgo does but
// for an IPv6 host without brackets (bracketed here), allocating nothing.
func WriteVia(buf *bytes.Buffer, v *sip.ViaHeader) {
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
		var n [20]byte
		buf.WriteByte(':')
		buf.Write(strconv.AppendInt(n[:0], int64(v.Port), 10))
	}
	if v.Params.Length() > 0 {
		buf.WriteByte(';')
		WriteParams(buf, ';', v.Params)
	}
}

// WriteParams is sipgo's HeaderParams.ToStringWrite without its
// allocation (it makes a string of the separator each time): a value
// with whitespace is quoted, an empty one leaves the bare name.
func WriteParams(buf *bytes.Buffer, sep byte, ps sip.HeaderParams) {
	for i, kv := range ps {
		if i > 0 {
			buf.WriteByte(sep)
		}
		buf.WriteString(kv.K)
		if kv.V == "" {
			continue
		}
		if strings.ContainsAny(kv.V, " \t") {
			buf.WriteString("=\"")
			buf.WriteString(kv.V)
			buf.WriteByte('"')
		} else {
			buf.WriteByte('=')
			buf.WriteString(kv.V)
		}
	}
}
