package sip

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/routing"
)

// victim listens on one port of 127.0.0.77 over UDP and TCP and keeps
// whatever reaches it: the third party an open relay would call.
type victim struct {
	port int
	mu   sync.Mutex
	got  []string
}

func newVictim(t *testing.T) *victim {
	t.Helper()
	var pc *net.UDPConn
	var ln net.Listener
	for i := 0; ; i++ {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 77)})
		if err != nil {
			t.Skipf("no 127.0.0.77 here: %v", err)
		}
		l, err := net.Listen("tcp", c.LocalAddr().String())
		if err == nil {
			pc, ln = c, l
			break
		}
		c.Close()
		if i == 20 {
			t.Fatalf("no UDP and TCP port pair on 127.0.0.77: %v", err)
		}
	}
	v := &victim{port: pc.LocalAddr().(*net.UDPAddr).Port}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, _, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			v.keep(string(buf[:n]))
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 65535)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						v.keep(string(buf[:n]))
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		wg.Wait()
	})
	return v
}

func (v *victim) keep(m string) {
	v.mu.Lock()
	v.got = append(v.got, m)
	v.mu.Unlock()
}

func (v *victim) received() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.got...)
}

// relayAttempt is an in-dialog-looking request (To tag, Route naming the
// edge) from host:port towards the victim's Request-URI.
func relayAttempt(e *testEdge, method, transport, host string, port int, v *victim, callID string) string {
	edgePort := e.UDPAddr().Port()
	rrTransport := ""
	if transport == "TCP" {
		edgePort = e.TCPAddr().Port()
		rrTransport = ";transport=tcp"
	}
	body := ""
	if method == "INVITE" {
		body = testSDP
	}
	msg := method + " sip:+19005550100@127.0.0.77:" + itoa(v.port) + " SIP/2.0\r\n" +
		"Via: SIP/2.0/" + transport + " " + host + ":" + itoa(port) + ";branch=z9hG4bK-" + callID + ";rport\r\n" +
		"Route: <sip:127.0.0.1:" + itoa(int(edgePort)) + rrTransport + ";lr>\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:bot@" + host + ">;tag=attacker\r\n" +
		"To: <sip:+19005550100@127.0.0.77>;tag=victim\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 2 " + method + "\r\n" +
		"Contact: <sip:bot@" + host + ":" + itoa(port) + ">\r\n"
	if body != "" {
		msg += "Content-Type: application/sdp\r\n"
	}
	return msg + "Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body
}

// tcpClient is a raw SIP client on one TCP connection from a chosen address.
type tcpClient struct {
	c  net.Conn
	rd *bufio.Reader
}

func dialTCPFrom(t *testing.T, host string, to string) *tcpClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(host)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tcpClient{c: c, rd: bufio.NewReader(c)}
}

func (c *tcpClient) port() int { return c.c.LocalAddr().(*net.TCPAddr).Port }

// readFinal returns the next final response on the connection ("" when
// the connection ends or d passes first).
func (c *tcpClient) readFinal(d time.Duration) string {
	_ = c.c.SetReadDeadline(time.Now().Add(d))
	for {
		var head bytes.Buffer
		for {
			l, err := c.rd.ReadString('\n')
			if err != nil {
				return ""
			}
			head.WriteString(l)
			if l == "\r\n" {
				break
			}
		}
		m := head.String()
		if n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(first(m, "Content-Length"), "Content-Length:"))); n > 0 {
			body := make([]byte, n)
			if _, err := c.rd.Read(body); err != nil {
				return ""
			}
		}
		if !strings.HasPrefix(m, "SIP/2.0 1") {
			return m
		}
	}
}

// waitAnswerOrRelay waits for the sender's final response or for anything
// reaching the victim, whichever happens first.
func waitAnswerOrRelay(t *testing.T, v *victim, read func(time.Duration) string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if got := v.received(); len(got) > 0 {
			t.Fatalf("relayed to 127.0.0.77: %q", statusLine(got[0]))
		}
		if m := read(100 * time.Millisecond); m != "" {
			return m
		}
	}
	t.Fatal("no answer from the edge and nothing at the victim")
	return ""
}

// TestNoRelayFromAgentAddress is the open relay of issue #10: an address
// that only tenant A's agent endpoint names sends INVITE, MESSAGE and BYE
// with a To tag and a Route naming the edge to sip:+19005550100@127.0.0.77.
// The edge must answer 403 and send nothing to 127.0.0.77, over UDP and TCP.
func TestNoRelayFromAgentAddress(t *testing.T) {
	const agentHost = "127.0.0.55" // tenant A's agent endpoint; not a trunk
	tbl := buildTable(routing.Endpoint{Region: "eu", URI: "sip:bot@" + agentHost + ":5060"})
	e := runEdge(t, tbl, func(c *Config) { c.Trunks[0].CIDRs = []string{"127.0.0.1/32"} }, nil)
	refused := func() float64 { return testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("relay_denied")) }

	for _, tr := range []string{"UDP", "TCP"} {
		for _, method := range []string{"INVITE", "MESSAGE", "BYE"} {
			t.Run(tr+"/"+method, func(t *testing.T) {
				v := newVictim(t)
				before := refused()
				callID := "relay-" + tr + "-" + method
				var m string
				if tr == "UDP" {
					a := newRaw(t, agentHost, net_(e))
					a.send(relayAttempt(e, method, tr, agentHost, a.port(), v, callID))
					m = waitAnswerOrRelay(t, v, a.readFinal)
				} else {
					c := dialTCPFrom(t, agentHost, e.TCPAddr().String())
					if _, err := c.c.Write([]byte(relayAttempt(e, method, tr, agentHost, c.port(), v, callID))); err != nil {
						t.Fatal(err)
					}
					m = waitAnswerOrRelay(t, v, c.readFinal)
				}
				if !strings.HasPrefix(m, "SIP/2.0 403") {
					t.Errorf("relay attempt answered %q, want 403", statusLine(m))
				}
				if got := refused(); got != before+1 {
					t.Errorf("rejected_total{reason=relay_denied} went %v -> %v, want +1", before, got)
				}
				if got := v.received(); len(got) > 0 {
					t.Errorf("relayed to 127.0.0.77: %q", statusLine(got[0]))
				}
			})
		}
	}
}

// TestLoopDetected: an agent endpoint that resolves back to the edge
// itself. The INVITE comes back once, is refused with 482 there, and the
// caller gets 482 — not 70 forwarded copies ending in 483.
func TestLoopDetected(t *testing.T) {
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			tbl := &routing.Table{}
			tbl.Store(routing.NewBuilder().Build())
			e := runEdge(t, tbl, nil, nil)
			port := e.UDPAddr().Port()
			if tr == "tcp" {
				port = e.TCPAddr().Port()
			}
			ep := routing.Endpoint{Region: "eu", URI: "sip:" + numPurchased + "@127.0.0.1:" + itoa(int(port)) + ";transport=" + tr}
			tbl.Store(buildTable(ep).Load())
			caller := newRaw(t, "127.0.0.1", net_(e))
			caller.send(caller.invite(e, numPurchased, "loop-"+tr, ""))
			m := caller.readFinal(15 * time.Second)
			if !strings.HasPrefix(m, "SIP/2.0 482") {
				t.Errorf("caller got %q, want 482 Loop Detected", statusLine(m))
			}
			if n := testutil.ToFloat64(e.metrics.Requests.WithLabelValues("INVITE")); n != 2 {
				t.Errorf("edge handled %v INVITEs, want 2 (the call and its one return)", n)
			}
			if n := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("loop_detected")); n != 1 {
				t.Errorf("rejected_total{reason=loop_detected} = %v, want 1", n)
			}
			waitIdle(t, e, 10*time.Second)
		})
	}
}
