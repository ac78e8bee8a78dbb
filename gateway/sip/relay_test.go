package sip

import (
	"bufio"
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
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
		for _, method := range []string{"INVITE", "MESSAGE", "BYE", "BYE/loose-route"} {
			t.Run(tr+"/"+method, func(t *testing.T) {
				v := newVictim(t)
				before := refused()
				callID := "relay-" + tr + "-" + strings.ReplaceAll(method, "/", "-")
				msg := func(port int) string {
					m, next := method, ""
					if m, next, _ = strings.Cut(m, "/"); next != "" {
						// the victim as the next Route, the Request-URI elsewhere
						msg := relayAttempt(e, m, tr, agentHost, port, v, callID)
						msg = strings.Replace(msg, "sip:+19005550100@127.0.0.77:"+itoa(v.port)+" SIP/2.0",
							"sip:+19005550100@192.0.2.1 SIP/2.0", 1)
						return strings.Replace(msg, ";lr>\r\n", ";lr>\r\nRoute: <sip:127.0.0.77:"+itoa(v.port)+";lr>\r\n", 1)
					}
					return relayAttempt(e, m, tr, agentHost, port, v, callID)
				}
				var m string
				if tr == "UDP" {
					a := newRaw(t, agentHost, net_(e))
					a.send(msg(a.port()))
					m = waitAnswerOrRelay(t, v, a.readFinal)
				} else {
					c := dialTCPFrom(t, agentHost, e.TCPAddr().String())
					if _, err := c.c.Write([]byte(msg(c.port()))); err != nil {
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
// itself (by its address, or by a DNS name when the edge's own address is
// neither a trunk nor an agent address). The INVITE comes back once, is
// refused with 482 there, and the caller gets 482 — not 70 forwarded
// copies ending in 483.
func TestLoopDetected(t *testing.T) {
	for _, tc := range []struct{ name, tr, host, callerHost string }{
		{"udp", "udp", "127.0.0.1", "127.0.0.1"},
		{"tcp", "tcp", "127.0.0.1", "127.0.0.1"},
		{"dns-unlisted-source", "udp", "localhost", "127.0.0.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tbl := &routing.Table{}
			tbl.Store(routing.NewBuilder().Build())
			var logs syncBuffer
			e := runLoggedEdge(t, tbl, func(c *Config) { c.Trunks[0].CIDRs = []string{tc.callerHost + "/32"} }, &logs)
			tr := tc.tr
			port := e.UDPAddr().Port()
			if tr == "tcp" {
				port = e.TCPAddr().Port()
			}
			ep := routing.Endpoint{Region: "eu", URI: "sip:" + numPurchased + "@" + tc.host + ":" + itoa(int(port)) + ";transport=" + tr}
			tbl.Store(buildTable(ep).Load())
			if tc.host == "localhost" {
				// the agent addresses of this snapshot are known before
				// the name is resolved: 127.0.0.1 (the edge) is neither a
				// trunk nor an agent address
				if a := netip.MustParseAddr("127.0.0.1"); e.trunkFor(a) != nil || e.isAgentAddr(a) {
					t.Fatal("127.0.0.1 is a trunk or agent address: the case tests nothing")
				}
			}
			caller := newRaw(t, tc.callerHost, net_(e))
			caller.send(caller.invite(e, numPurchased, "loop-"+tc.name, ""))
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
			// one info line: the call's outcome, 482 loop_detected
			var lines []string
			checkFor(t, 10*time.Second, func() error {
				lines = lines[:0]
				for _, l := range strings.Split(logs.String(), "\n") {
					if strings.Contains(l, `"call_id":"loop-`+tc.name+`"`) && !strings.Contains(l, `"level":"DEBUG"`) {
						lines = append(lines, l)
					}
				}
				if len(lines) == 0 {
					return errorf("no log line for the call")
				}
				return nil
			})
			if len(lines) != 1 || !strings.Contains(lines[0], `"status":482`) || !strings.Contains(lines[0], `"reason":"loop_detected"`) {
				t.Errorf("want one line with status 482, reason loop_detected; got %d:\n%s", len(lines), strings.Join(lines, "\n"))
			}
			waitIdle(t, e, 10*time.Second)
		})
	}
}

// agentAt is a hand-driven agent endpoint on host that sends to the edge.
func agentAt(t *testing.T, host string, e *testEdge) (*rawUA, routing.Endpoint) {
	t.Helper()
	r := newRaw(t, host, net_(e))
	return r, routing.Endpoint{Region: "eu", URI: "sip:bot@" + host + ":" + itoa(r.port())}
}

// fromAgent builds an in-dialog request of the agent's for the call whose
// INVITE the agent got: Route from the INVITE's Record-Route, to ruri.
func fromAgent(agent *rawUA, inv, method, ruri, callID string, cseq int) string {
	route := ""
	for _, rr := range lines(inv, "Record-Route") {
		route += "Route:" + strings.TrimPrefix(rr, "Record-Route:") + "\r\n"
	}
	host := agent.conn.LocalAddr().(*net.UDPAddr).IP.String()
	return method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + host + ":" + itoa(agent.port()) + ";branch=z9hG4bK-ag" + method + itoa(cseq) + callID + ";rport\r\n" +
		route + "Max-Forwards: 70\r\n" +
		"From:" + strings.TrimPrefix(first(inv, "To"), "To:") + ";tag=ag-" + callID + "\r\n" +
		"To:" + strings.TrimPrefix(first(inv, "From"), "From:") + "\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: " + itoa(cseq) + " " + method + "\r\nContent-Length: 0\r\n\r\n"
}

// TestInDialogOnlyTowardPeers: inside a dialog the edge routed, the
// agent (not a trunk source) reaches the caller's side and nowhere else,
// with the dialog record and, once the record is gone (another node, a
// restart), by the MACs in our Record-Route; an agent cannot use a
// Contact naming a third party, nor another dialog's Record-Route.
func TestInDialogOnlyTowardPeers(t *testing.T) {
	tbl := &routing.Table{}
	tbl.Store(routing.NewBuilder().Build())
	e := runEdge(t, tbl, func(c *Config) { c.Trunks[0].CIDRs = []string{"127.0.0.1/32"} }, nil)
	agent, ep := agentAt(t, "127.0.0.55", e)
	e.table.Store(buildTable(ep).Load())
	caller := newRaw(t, "127.0.0.1", net_(e))
	callerURI := "sip:caller@127.0.0.1:" + itoa(caller.port())
	refused := func() float64 { return testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("relay_denied")) }

	expect403 := func(t *testing.T, v *victim, msg string) {
		t.Helper()
		before := refused()
		agent.send(msg)
		if m := waitAnswerOrRelay(t, v, agent.readFinal); !strings.HasPrefix(m, "SIP/2.0 403") {
			t.Errorf("got %q, want 403", statusLine(m))
		}
		if got := refused(); got != before+1 {
			t.Errorf("rejected_total{reason=relay_denied} %v -> %v, want +1", before, got)
		}
	}
	expectAtCaller := func(t *testing.T, msg string) {
		t.Helper()
		agent.send(msg)
		if m := caller.readRequest("INFO", 10*time.Second); m == "" {
			t.Fatal("the agent's INFO did not reach the caller")
		}
	}

	inv, ok := answeredCall(t, e, caller, agent, "peers-1")
	if !strings.Contains(first(inv, "Record-Route"), ";"+rrParam+"=") {
		t.Fatalf("our Record-Route carries no MACs: %q", first(inv, "Record-Route"))
	}
	caller.send(inDialog(e, caller, ok, "ACK", 1, true))
	if agent.readRequest("ACK", 10*time.Second) == "" {
		t.Fatal("ACK not forwarded to the agent")
	}

	t.Run("record/third party", func(t *testing.T) {
		v := newVictim(t)
		expect403(t, v, fromAgent(agent, inv, "INFO", "sip:+19005550100@127.0.0.77:"+itoa(v.port), "peers-1", 10))
	})
	t.Run("record/caller", func(t *testing.T) {
		expectAtCaller(t, fromAgent(agent, inv, "INFO", callerURI, "peers-1", 11))
	})

	// the caller hangs up: the record ends, the Record-Route still works
	caller.send(inDialog(e, caller, ok, "BYE", 2, true))
	bye := agent.readRequest("BYE", 10*time.Second)
	if bye == "" {
		t.Fatal("BYE not forwarded to the agent")
	}
	agent.replyTo(bye, 200, "OK", "", "")
	waitIdle(t, e, 10*time.Second)

	t.Run("no record/third party", func(t *testing.T) {
		v := newVictim(t)
		expect403(t, v, fromAgent(agent, inv, "INFO", "sip:+19005550100@127.0.0.77:"+itoa(v.port), "peers-1", 12))
	})
	t.Run("no record/caller", func(t *testing.T) {
		expectAtCaller(t, fromAgent(agent, inv, "INFO", callerURI, "peers-1", 13))
	})
	t.Run("no record/another dialog's Record-Route", func(t *testing.T) {
		v := newVictim(t)
		expect403(t, v, fromAgent(agent, inv, "INFO", callerURI, "peers-other", 14))
	})
	t.Run("record/agent Contact naming a third party", func(t *testing.T) {
		v := newVictim(t)
		agent.contact = "sip:+19005550100@127.0.0.77:" + itoa(v.port)
		defer func() { agent.contact = "" }()
		inv2, _ := answeredCall(t, e, caller, agent, "peers-2")
		// From the agent, claiming the caller's side (its From tag).
		msg := fromAgent(agent, inv2, "INFO", agent.contact, "peers-2", 20)
		msg = strings.Replace(msg, "From:"+strings.TrimPrefix(first(inv2, "To"), "To:")+";tag=ag-peers-2",
			"From:"+strings.TrimPrefix(first(inv2, "From"), "From:"), 1)
		expect403(t, v, msg)
	})
}

// TestRecordRouteMACs: a Record-Route token verifies on any edge with the
// same key (another node, a restart) for its Call-ID and its two peers
// only, and on no edge with another key.
func TestRecordRouteMACs(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	mk := func(k []byte) *Server {
		s, err := New(Config{Addr: "127.0.0.1:0", Trunks: DefaultConfig().Trunks}, Deps{Table: &routing.Table{}, DialogKey: k})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b, other := mk(key), mk(key), mk([]byte("another key, 32 bytes long......"))
	tok := string(a.rrToken(nil, "call-1", "[::ffff:192.0.2.10]", "Agent.Example.COM"))
	rr := func(s *Server, tok string) []sip.Uri {
		var u sip.Uri
		if err := sip.ParseUri("sip:127.0.0.1:5060;lr;"+rrParam+"="+tok, &u); err != nil {
			t.Fatal(err)
		}
		return []sip.Uri{u}
	}
	for _, tc := range []struct {
		name         string
		s            *Server
		callID, host string
		want         bool
	}{
		{"same node, caller hop", a, "call-1", "192.0.2.10", true},
		{"other node, caller hop", b, "call-1", "192.0.2.10", true},
		{"other node, agent host", b, "call-1", "agent.example.com", true},
		{"third party", b, "call-1", "127.0.0.77", false},
		{"another Call-ID", b, "call-2", "192.0.2.10", false},
		{"another key", other, "call-1", "192.0.2.10", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := false
			if tk := tc.s.routeToken(rr(tc.s, tok), tc.callID); tk != "" {
				h := hostKey(tc.host)
				got = tc.s.tokenMatch(tk, 1, tc.callID, macCaller, h) || tc.s.tokenMatch(tk, 2, tc.callID, macAgent, h)
			}
			if got != tc.want {
				t.Errorf("verified %v, want %v", got, tc.want)
			}
		})
	}
	for i := range tok {
		c := byte('A')
		if tok[i] == c {
			c = 'B'
		}
		changed := tok[:i] + string(c) + tok[i+1:]
		tk := a.routeToken(rr(a, changed), "call-1")
		if tk != "" && (a.tokenMatch(tk, 1, "call-1", macCaller, "192.0.2.10") && a.tokenMatch(tk, 2, "call-1", macAgent, "agent.example.com")) {
			t.Errorf("token changed at %d verified", i)
		}
	}
}

// runLoggedEdge is runEdge with the edge's log (JSON, debug and up) in logs.
func runLoggedEdge(t *testing.T, table *routing.Table, tweak func(*Config), logs *syncBuffer) *testEdge {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Region = "test"
	cfg.InviteTimeout = 400 * time.Millisecond
	cfg.Probe.Disabled = true
	if tweak != nil {
		tweak(&cfg)
	}
	rec := &recorder{}
	s, err := New(cfg, Deps{Table: table, Events: rec,
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	checkFor(t, 10*time.Second, func() error {
		if !s.Ready() {
			return errorf("not ready")
		}
		return nil
	})
	return &testEdge{Server: s, events: rec, table: table}
}
