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
	msg += first(req, "From") + "\r\n" + to + "\r\n" + first(req, "Call-ID") + "\r\n" + first(req, "CSeq") + "\r\n" +
		"Contact: <sip:bot@127.0.0.1:" + strconv.Itoa(r.port()) + ">\r\n"
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
