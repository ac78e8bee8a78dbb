package sip

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// optionsOverStream is an OPTIONS request as a stream client at local sends it.
func optionsOverStream(local net.Addr, callID string) string {
	la := local.(*net.TCPAddr)
	return fmt.Sprintf("OPTIONS sip:127.0.0.1 SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP %s;branch=z9hG4bK-%s\r\nMax-Forwards: 70\r\n"+
		"From: <sip:probe@%s>;tag=%s\r\nTo: <sip:127.0.0.1>\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"+
		"Content-Length: 0\r\n\r\n", la.String(), callID, la.IP, callID, callID)
}

// served reports whether the edge answers an OPTIONS on c (200 within the
// timeout); an error says what happened instead.
func served(c net.Conn, callID string, timeout time.Duration) error {
	if _, err := c.Write([]byte(optionsOverStream(c.LocalAddr(), callID))); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if !strings.HasPrefix(line, "SIP/2.0 200") {
		return fmt.Errorf("got %q", line)
	}
	// drain the rest of the response (headers up to the blank line)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if l == "\r\n" {
			return nil
		}
	}
}

// closedByPeer waits until the edge closes c (EOF or reset on read).
func closedByPeer(c net.Conn, timeout time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("still open after %s", timeout)
		}
		return nil // EOF or connection reset: closed by the edge
	}
}

func dialFrom(t *testing.T, src string, to net.Addr) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", to.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStreamMessageDeadline: a partial INVITE trickled one byte at a time
// (each byte well inside any idle timeout) is closed once the message has
// taken longer than message_timeout; a connection that completes its
// messages stays open past it.
func TestStreamMessageDeadline(t *testing.T) {
	const msgTimeout = 500 * time.Millisecond
	e := runEdge(t, buildTable(), func(c *Config) { c.MessageTimeout = msgTimeout }, nil)
	tcp := net.TCPAddrFromAddrPort(e.TCPAddr())

	// complete messages: the connection outlives message_timeout
	ok := dialFrom(t, "127.0.0.1", tcp)
	if err := served(ok, "dl-1", 10*time.Second); err != nil {
		t.Fatalf("first OPTIONS: %v", err)
	}
	time.Sleep(3 * msgTimeout) // a lower bound: the edge may not close it whatever the load
	if err := served(ok, "dl-2", 10*time.Second); err != nil {
		t.Fatalf("OPTIONS after an idle gap longer than message_timeout: %v", err)
	}

	// a trickled partial INVITE: closed after message_timeout
	c := dialFrom(t, "127.0.0.1", tcp)
	inv := "INVITE sip:" + numPurchased + "@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-trickle\r\n" +
		strings.Repeat("X-Pad: trickle trickle trickle\r\n", 200)
	closed := make(chan time.Time, 1)
	go func() {
		_ = closedByPeer(c, 30*time.Second)
		closed <- time.Now()
	}()
	start := time.Now()
	var sent atomic.Int64
	deadline := time.After(20 * time.Second)
	var at time.Time
trickle:
	for i := 0; ; i++ {
		select {
		case at = <-closed:
			break trickle
		case <-deadline:
			t.Fatalf("a partial INVITE trickled for 20s (%d bytes) is still open (message_timeout %s)", sent.Load(), msgTimeout)
		case <-time.After(50 * time.Millisecond):
		}
		if i < len(inv) {
			if _, err := c.Write([]byte{inv[i]}); err == nil {
				sent.Add(1)
			}
		}
	}
	if took := at.Sub(start); took < msgTimeout {
		t.Errorf("closed after %s, before message_timeout %s", took, msgTimeout)
	}
	if sent.Load() >= int64(len(inv)) {
		t.Fatalf("the whole trickle was sent before the close (%d bytes): the test proves nothing", sent.Load())
	}
	if n := testutil.ToFloat64(e.metrics.Dropped.WithLabelValues("message_timeout")); n != 1 {
		t.Errorf("dropped_total{reason=message_timeout} = %v, want 1", n)
	}
	// the complete-message connection is still served
	if err := served(ok, "dl-3", 10*time.Second); err != nil {
		t.Fatalf("OPTIONS on the other connection: %v", err)
	}
}

// TestTLSHandshakeDeadline: a connection to the TLS port that never
// completes its handshake is closed after message_timeout.
func TestTLSHandshakeDeadline(t *testing.T) {
	certFile, keyFile := selfSigned(t, t.TempDir())
	e := runEdge(t, buildTable(), func(c *Config) {
		c.TLSAddr, c.TLSCert, c.TLSKey = "127.0.0.1:0", certFile, keyFile
		c.MessageTimeout = 500 * time.Millisecond
	}, nil)
	start := time.Now() // before the edge can accept
	c := dialFrom(t, "127.0.0.1", net.TCPAddrFromAddrPort(e.TLSAddr()))
	_, _ = c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello, and no more
	if err := closedByPeer(c, 20*time.Second); err != nil {
		t.Fatalf("half a TLS handshake: %v", err)
	}
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("closed after %s, before message_timeout", took)
	}
	if n := testutil.ToFloat64(e.metrics.Dropped.WithLabelValues("tls_handshake")); n != 1 {
		t.Errorf("dropped_total{reason=tls_handshake} = %v, want 1", n)
	}
}

// TestConnectionCaps: with N connections held, the N+1-th from the same
// source (per-source cap) or from any source (total cap) is closed at
// accept and counted; when a held one closes, a new one is served again.
func TestConnectionCaps(t *testing.T) {
	const n = 3
	for _, tc := range []struct {
		reason string
		tweak  func(*Config)
		src    func(i int) string // source address of the i-th connection
	}{
		{"per_source", func(c *Config) { c.MaxConnectionsPerSource = n }, func(int) string { return "127.0.0.1" }},
		{"total", func(c *Config) { c.MaxConnections = n }, func(i int) string { return fmt.Sprintf("127.0.0.%d", 2+i) }},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			e := runEdge(t, buildTable(), tc.tweak, nil)
			tcp := net.TCPAddrFromAddrPort(e.TCPAddr())
			held := make([]net.Conn, n)
			for i := range held {
				held[i] = dialFrom(t, tc.src(i), tcp)
				if err := served(held[i], fmt.Sprintf("cap-%d", i), 10*time.Second); err != nil {
					t.Fatalf("connection %d of %d: %v", i+1, n, err)
				}
			}
			over := dialFrom(t, tc.src(n), tcp)
			_, _ = over.Write([]byte(optionsOverStream(over.LocalAddr(), "cap-over")))
			if err := closedByPeer(over, 10*time.Second); err != nil {
				t.Fatalf("connection %d over the %s cap: %v", n+1, tc.reason, err)
			}
			if got := testutil.ToFloat64(e.metrics.ConnsRefused.WithLabelValues(tc.reason)); got != 1 {
				t.Errorf("connections_refused_total{reason=%q} = %v, want 1", tc.reason, got)
			}
			// the held ones are untouched
			for i, c := range held {
				if err := served(c, fmt.Sprintf("cap-again-%d", i), 10*time.Second); err != nil {
					t.Fatalf("held connection %d: %v", i+1, err)
				}
			}
			// one closes: room for a new one (the edge sees the close asynchronously)
			held[0].Close()
			checkFor(t, 10*time.Second, func() error {
				c := dialFrom(t, tc.src(n), tcp)
				defer c.Close()
				return served(c, "cap-after", 5*time.Second)
			})
		})
	}
}

// TestConfigValidateTransport: the transport settings are checked, each
// error naming its key.
func TestConfigValidateTransport(t *testing.T) {
	dir := t.TempDir()
	notPEM := dir + "/ca.txt"
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key   string
		tweak func(*Config)
	}{
		{"sip.tls_ca_file", func(c *Config) { c.TLSCAFile = dir + "/missing.pem" }},
		{"sip.tls_ca_file", func(c *Config) { c.TLSCAFile = notPEM }},
		{"sip.tls_client_cert", func(c *Config) { c.TLSClientCert = dir + "/cert.pem" }},
		{"sip.tls_client_cert", func(c *Config) { c.TLSClientCert, c.TLSClientKey = notPEM, notPEM }},
		{"sip.message_timeout", func(c *Config) { c.MessageTimeout = -time.Second }},
		{"sip.max_connections", func(c *Config) { c.MaxConnections = -1 }},
		{"sip.max_connections_per_source", func(c *Config) { c.MaxConnectionsPerSource = -1 }},
	} {
		c := DefaultConfig()
		tc.tweak(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("%s: got %v", tc.key, err)
		}
	}
	ca := newTestCA(t)
	cert, key, _ := ca.issue("client")
	good := DefaultConfig()
	good.TLSCAFile, good.TLSClientCert, good.TLSClientKey = ca.file, cert, key
	if err := good.Validate(); err != nil {
		t.Errorf("valid TLS trust settings: %v", err)
	}
}
