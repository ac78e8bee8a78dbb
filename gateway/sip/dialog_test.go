package sip

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// rawAgent is a hand-driven agent endpoint.
func rawAgent(t *testing.T) (*rawUA, routing.Endpoint) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawUA{t: t, conn: c}
	return r, routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(r.port())}
}

// replyTo answers a request read by a raw agent (echoing Via and Record-Route).
func (r *rawUA) replyTo(req string, code int, reason, toTag, body string) {
	to := first(req, "To")
	if toTag != "" && !strings.Contains(to, "tag=") {
		to += ";tag=" + toTag
	}
	msg := "SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n" + strings.Join(lines(req, "Via"), "\r\n") + "\r\n"
	if rr := lines(req, "Record-Route"); len(rr) > 0 {
		msg += strings.Join(rr, "\r\n") + "\r\n"
	}
	contact := r.contact
	if contact == "" {
		contact = "sip:bot@" + r.conn.LocalAddr().(*net.UDPAddr).IP.String() + ":" + strconv.Itoa(r.port())
	}
	msg += first(req, "From") + "\r\n" + to + "\r\n" + first(req, "Call-ID") + "\r\n" + first(req, "CSeq") + "\r\n" +
		"Contact: <" + contact + ">\r\n"
	if body != "" {
		msg += "Content-Type: application/sdp\r\n"
	}
	msg += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	// answer the proxy: the top Via's sent-by
	v := strings.Fields(lines(req, "Via")[0])[2]
	hp := strings.SplitN(v, ";", 2)[0]
	addr, err := net.ResolveUDPAddr("udp", hp)
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.conn.WriteToUDP([]byte(msg), addr); err != nil {
		r.t.Fatal(err)
	}
}

// readRequest waits for a request with the given method.
func (r *rawUA) readRequest(method string, d time.Duration) string {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m := r.read(time.Until(deadline))
		if strings.HasPrefix(m, method+" ") {
			return m
		}
	}
	return ""
}

func TestTwoHundredRetransmissionsForwarded(t *testing.T) {
	agent, ep := rawAgent(t)
	e := runEdge(t, buildTable(ep), nil, nil)
	caller := newRaw(t, "127.0.0.1", net_(e))
	caller.send(caller.invite(e, numPurchased, "retx-1", ""))
	inv := agent.readRequest("INVITE", 3*time.Second)
	if inv == "" {
		t.Fatal("no INVITE at agent")
	}
	for i := 0; i < 3; i++ { // the agent retransmits its 200 (no ACK yet)
		agent.replyTo(inv, 200, "OK", "ag1", testSDP)
	}
	n := 0
	for m := caller.read(time.Second); m != ""; m = caller.read(300 * time.Millisecond) {
		if strings.HasPrefix(m, "SIP/2.0 200") {
			n++
			if len(lines(m, "Via")) != 1 {
				t.Errorf("caller sees %d Via", len(lines(m, "Via")))
			}
		}
	}
	if n != 3 {
		t.Errorf("caller got %d 200s, want 3 (every 2xx is forwarded)", n)
	}
}

func TestRingTimeoutCancelsAndAnswers408(t *testing.T) {
	agent, ep := rawAgent(t)
	e := runEdge(t, buildTable(ep), func(c *Config) { c.RingTimeout = 500 * time.Millisecond }, nil)
	caller := newRaw(t, "127.0.0.1", net_(e))
	caller.send(caller.invite(e, numPurchased, "ring-1", ""))
	inv := agent.readRequest("INVITE", 3*time.Second)
	agent.replyTo(inv, 180, "Ringing", "ag1", "")
	cancel := agent.readRequest("CANCEL", 3*time.Second)
	if cancel == "" {
		t.Fatal("no CANCEL at agent after ring timeout")
	}
	if got, want := first(cancel, "CSeq"), strings.Replace(first(inv, "CSeq"), "INVITE", "CANCEL", 1); got != want {
		t.Errorf("CANCEL %s, INVITE %s", got, first(inv, "CSeq"))
	}
	agent.replyTo(cancel, 200, "OK", "ag1", "")
	agent.replyTo(inv, 487, "Request Terminated", "ag1", "")
	if ack := agent.readRequest("ACK", 2*time.Second); ack == "" {
		t.Error("the proxy did not ACK the agent's 487")
	} else if !strings.Contains(first(ack, "CSeq"), " ACK") || first(ack, "Via") != first(inv, "Via") {
		t.Errorf("ACK for 487: %q (INVITE Via %q)", ack, first(inv, "Via"))
	}
	if m := caller.readFinal(3 * time.Second); !strings.HasPrefix(m, "SIP/2.0 408") {
		t.Fatalf("caller got %q, want 408", statusLine(m))
	}
	en := e.events.waitEvent(t, calls.Ended, "ring-1")
	if en.Status != 408 || en.Reason != "ring_timeout" {
		t.Errorf("ended %+v", en)
	}
	// the caller's final response is retransmitted until its ACK
	if m := caller.read(1500 * time.Millisecond); !strings.HasPrefix(m, "SIP/2.0 408") {
		t.Errorf("408 not retransmitted before ACK: %q", statusLine(m))
	}
}

// TestNoOpenRelay: a request with our Route towards an address that is no
// agent, outside any dialog we record-routed, is refused.
func TestNoOpenRelay(t *testing.T) {
	_, ep := rawAgent(t)
	e := runEdge(t, buildTable(ep), nil, nil)
	caller := newRaw(t, "127.0.0.3", net_(e)) // a trunk address that is no agent's
	victim, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 77)})
	if err != nil {
		t.Skip(err)
	}
	defer victim.Close()
	vport := victim.LocalAddr().(*net.UDPAddr).Port
	msg := "MESSAGE sip:x@127.0.0.77:" + itoa(vport) + " SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:" + itoa(caller.port()) +
		";branch=z9hG4bK-relay;rport\r\nRoute: <sip:127.0.0.1:" + itoa(int(e.UDPAddr().Port())) + ";lr>\r\nMax-Forwards: 70\r\n" +
		"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.77>;tag=2\r\nCall-ID: relay-1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
	caller.send(msg)
	if m := caller.read(time.Second); !strings.HasPrefix(m, "SIP/2.0 403") {
		t.Errorf("relay attempt: %q, want 403", statusLine(m))
	}
	_ = victim.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := victim.ReadFromUDP(make([]byte, 1000)); err == nil {
		t.Error("request relayed to a third party")
	}
}

// answeredCall sets up a call through the edge with raw peers up to the
// agent's 200 reaching the caller; it returns the agent's INVITE and the
// caller's 200.
func answeredCall(t *testing.T, e *testEdge, caller, agent *rawUA, callID string) (inv, ok200 string) {
	t.Helper()
	caller.send(caller.invite(e, numPurchased, callID, ""))
	inv = agent.readRequest("INVITE", 3*time.Second)
	if inv == "" {
		t.Fatal("no INVITE at agent")
	}
	agent.replyTo(inv, 200, "OK", "ag-"+callID, testSDP)
	for m := caller.read(3 * time.Second); m != ""; m = caller.read(3 * time.Second) {
		if strings.HasPrefix(m, "SIP/2.0 200") {
			return inv, m
		}
	}
	t.Fatal("no 200 at caller")
	return "", ""
}

// inDialog builds the caller's ACK or BYE for an answered call: sent to
// the agent's Contact through the route set (or, route=false, to the
// INVITE's Request-URI without Route, as SIPp does when it aborts a call).
func inDialog(e *testEdge, caller *rawUA, ok200, method string, cseq int, route bool) string {
	ruri := "sip:" + numPurchased + "@127.0.0.1:" + itoa(int(e.UDPAddr().Port()))
	routeHdr := ""
	if route {
		ct := first(ok200, "Contact")
		ruri = ct[strings.Index(ct, "<")+1 : strings.Index(ct, ">")]
		for _, rr := range lines(ok200, "Record-Route") {
			routeHdr += "Route:" + strings.TrimPrefix(rr, "Record-Route:") + "\r\n"
		}
	}
	return method + " " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:" + itoa(caller.port()) + ";branch=z9hG4bK-" + method + itoa(cseq) + strconv.Itoa(int(time.Now().UnixNano()%1e9)) + ";rport\r\n" +
		routeHdr + "Max-Forwards: 70\r\n" + first(ok200, "From") + "\r\n" + first(ok200, "To") + "\r\n" +
		first(ok200, "Call-ID") + "\r\nCSeq: " + itoa(cseq) + " " + method + "\r\nContent-Length: 0\r\n\r\n"
}

func waitIdle(t *testing.T, e *testEdge, d time.Duration) {
	t.Helper()
	checkFor(t, d, func() error {
		stx, ctx, dl := e.tableSizes()
		if n := e.ActiveCalls(); n != 0 || dl != 0 {
			return errorf("active calls %d, dialog records %d (server tx %d, client tx %d)", n, dl, stx, ctx)
		}
		return nil
	})
}

// TestDialogRecordsEnd: a dialog record ends when its BYE passes whatever
// the answer, when the 2xx is never ACKed, and when the BYE comes without
// a Route (to the INVITE's Request-URI); a BYE whose record is gone is
// still forwarded by its Route; no BYE ever gets 404.
func TestDialogRecordsEnd(t *testing.T) {
	agent, ep := rawAgent(t)
	e := runEdge(t, buildTable(ep), func(c *Config) { c.noAckTimeout = 300 * time.Millisecond }, nil)
	caller := newRaw(t, "127.0.0.1", net_(e))

	// 1. BYE answered 481 by the agent: the record ends anyway.
	_, ok := answeredCall(t, e, caller, agent, "end-1")
	caller.send(inDialog(e, caller, ok, "ACK", 1, true))
	caller.send(inDialog(e, caller, ok, "BYE", 2, true))
	bye := agent.readRequest("BYE", 3*time.Second)
	if bye == "" {
		t.Fatal("BYE not forwarded to the agent")
	}
	agent.replyTo(bye, 481, "Call/Transaction Does Not Exist", "", "")
	if m := caller.readFinal(3 * time.Second); !strings.HasPrefix(m, "SIP/2.0 481") {
		t.Errorf("caller got %q for its BYE, want the agent's 481", statusLine(m))
	}
	waitIdle(t, e, 3*time.Second)

	// 2. A 2xx never ACKed: the record ends after 64*T1 (shortened here).
	_, ok = answeredCall(t, e, caller, agent, "end-2")
	if e.ActiveCalls() != 1 {
		t.Fatalf("active calls %d during the call", e.ActiveCalls())
	}
	waitIdle(t, e, 3*time.Second)
	if en := e.events.waitEvent(t, calls.Ended, "end-2"); en.Reason != "no_ack" {
		t.Errorf("ended %+v, want reason no_ack", en)
	}

	// 3. The record is gone: a BYE with our Route is forwarded by it.
	caller.send(inDialog(e, caller, ok, "BYE", 3, true))
	bye = agent.readRequest("BYE", 3*time.Second)
	if bye == "" {
		t.Fatal("BYE with a Route to us not forwarded after the dialog record ended")
	}
	agent.replyTo(bye, 200, "OK", "", "")
	if m := caller.readFinal(3 * time.Second); !strings.HasPrefix(m, "SIP/2.0 200") {
		t.Errorf("caller got %q for its BYE, want 200", statusLine(m))
	}

	// 4. BYE to the INVITE's Request-URI without Route (a UA that lost
	// the route set): routed by the dialog record, never 404.
	_, ok = answeredCall(t, e, caller, agent, "end-4")
	caller.send(inDialog(e, caller, ok, "ACK", 1, false))
	if ack := agent.readRequest("ACK", 3*time.Second); ack == "" {
		t.Error("ACK without Route not routed by the dialog record")
	}
	caller.send(inDialog(e, caller, ok, "BYE", 2, false))
	bye = agent.readRequest("BYE", 3*time.Second)
	if bye == "" {
		t.Fatal("BYE without Route not routed by the dialog record")
	}
	if !strings.HasPrefix(bye, "BYE sip:bot@127.0.0.1:"+itoa(agent.port())) {
		t.Errorf("BYE Request-URI: %q, want the agent's Contact", statusLine(bye))
	}
	agent.replyTo(bye, 200, "OK", "", "")
	if m := caller.readFinal(3 * time.Second); !strings.HasPrefix(m, "SIP/2.0 200") {
		t.Errorf("caller got %q for its BYE, want 200", statusLine(m))
	}
	waitIdle(t, e, 3*time.Second)

	// 5. The same without any record: 481, not 404.
	caller.send(inDialog(e, caller, ok, "BYE", 5, false))
	if m := caller.readFinal(2 * time.Second); !strings.HasPrefix(m, "SIP/2.0 481") {
		t.Errorf("BYE outside any dialog: %q, want 481", statusLine(m))
	}
	// every transaction record goes after the linger time
	checkFor(t, 8*time.Second, func() error {
		if a, b, c := e.tableSizes(); a+b+c != 0 {
			return errorf("tables: server tx %d, client tx %d, dialogs %d", a, b, c)
		}
		return nil
	})
}

// TestCallTimerRingThenNoAck: one timer per call is the ring timeout and,
// re-armed at the answer, the no-ACK timeout. An answered call outlives
// its ring timeout; a run of the timer that was under way as the 2xx came
// in (called here directly) leaves it alone; unACKed, it ends no_ack, not
// before the no-ACK timeout has passed since the answer.
func TestCallTimerRingThenNoAck(t *testing.T) {
	agent, ep := rawAgent(t)
	const ring, noAck = 200 * time.Millisecond, 1500 * time.Millisecond
	e := runEdge(t, buildTable(ep), func(c *Config) { c.RingTimeout = ring; c.noAckTimeout = noAck }, nil)
	caller := newRaw(t, "127.0.0.1", net_(e))

	// answered and ACKed: the ring timeout, long past, ends nothing
	_, ok := answeredCall(t, e, caller, agent, "timer-1")
	caller.send(inDialog(e, caller, ok, "ACK", 1, true))
	if ack := agent.readRequest("ACK", 3*time.Second); ack == "" {
		t.Fatal("ACK not forwarded")
	}
	c, found := e.dialogs.get("timer-1")
	if !found {
		t.Fatal("no dialog record for the answered call")
	}
	c.onCallTimer() // a late run of the ring timeout: the call is answered
	time.Sleep(2 * ring)
	if e.ActiveCalls() != 1 {
		t.Fatalf("active calls %d after the ring timeout of an answered call, want 1", e.ActiveCalls())
	}
	caller.send(inDialog(e, caller, ok, "BYE", 2, true))
	bye := agent.readRequest("BYE", 3*time.Second)
	if bye == "" {
		t.Fatal("BYE not forwarded")
	}
	agent.replyTo(bye, 200, "OK", "", "")
	if m := caller.readFinal(3 * time.Second); !strings.HasPrefix(m, "SIP/2.0 200") {
		t.Errorf("caller got %q for its BYE, want 200", statusLine(m))
	}
	waitIdle(t, e, 3*time.Second)
	if en := e.events.waitEvent(t, calls.Ended, "timer-1"); en.Reason == "ring_timeout" || en.Reason == "no_ack" {
		t.Errorf("ended %+v, want the BYE's end", en)
	}

	// answered, never ACKed: a stale run right after the answer does not
	// end it; the re-armed timer does, with no_ack, after noAck
	_, _ = answeredCall(t, e, caller, agent, "timer-2")
	c, found = e.dialogs.get("timer-2")
	if !found {
		t.Fatal("no dialog record for the answered call")
	}
	c.onCallTimer()
	c.mu.Lock()
	ended, answeredAt := c.ended, c.answeredAt
	c.mu.Unlock()
	if ended {
		t.Fatal("a timer run before the no-ACK deadline ended the answered call")
	}
	en := e.events.waitEvent(t, calls.Ended, "timer-2")
	if en.Reason != "no_ack" {
		t.Errorf("ended %+v, want reason no_ack", en)
	}
	if d := en.Time.Sub(answeredAt); d < noAck {
		t.Errorf("ended no_ack %v after the answer, want at least %v", d, noAck)
	}
	waitIdle(t, e, 3*time.Second)
}
