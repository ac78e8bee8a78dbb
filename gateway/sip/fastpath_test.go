package sip

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

// fastCall is a call set up through e by raw UAs: the caller's INVITE,
// the agent's 200 (Record-Route echoed), and what the caller's in-dialog
// requests need.
type fastCall struct {
	id, routes, agentURI string
	caller, agent        *rawUA
}

func setUpFastCall(t *testing.T, e *testEdge, caller, agent *rawUA, id string) fastCall {
	t.Helper()
	caller.send(caller.invite(e, numPurchased, id, ""))
	inv := agent.readRequest("INVITE", 5*time.Second)
	if inv == "" {
		t.Fatalf("%s: the agent got no INVITE", id)
	}
	agent.replyTo(inv, 200, "OK", "ag-"+id, testSDP)
	ok := caller.readFinal(5 * time.Second)
	if !strings.HasPrefix(ok, "SIP/2.0 200") {
		t.Fatalf("%s: caller got %q, want 200", id, statusLine(ok))
	}
	var rs []string
	for _, l := range lines(ok, "Record-Route") {
		rs = append(rs, strings.TrimSpace(l[len("Record-Route:"):]))
	}
	return fastCall{id: id, routes: strings.Join(rs, ", "), caller: caller, agent: agent,
		agentURI: "sip:bot@127.0.0.1:" + itoa(agent.port())}
}

// inDialog is a request of the caller's inside the call (extra: more headers).
func (c fastCall) inDialog(method string, cseq int, extra string) string {
	return method + " " + c.agentURI + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:" + itoa(c.caller.port()) + ";branch=z9hG4bK-" + strings.ToLower(method) + "-" + c.id + ";rport\r\n" +
		"Route: " + c.routes + "\r\nMax-Forwards: 70\r\n" +
		"From: <sip:+15005550006@127.0.0.1>;tag=caller-" + c.id + "\r\nTo: <sip:" + numPurchased + "@127.0.0.1>;tag=ag-" + c.id + "\r\n" +
		"Call-ID: " + c.id + "\r\nCSeq: " + itoa(cseq) + " " + method + "\r\nContact: <sip:caller@127.0.0.1:" + itoa(c.caller.port()) + ">\r\n" +
		extra + "Content-Length: 0\r\n\r\n"
}

// normal is a received message parsed, with what differs from call to
// call (Call-ID, tags, branches, Record-Route MACs) made the same.
var callSpecific = regexp.MustCompile(`fp-[a-z0-9]+|branch=z9hG4bKcgs[0-9a-f]+|cg=[A-Za-z0-9_-]+`)

func normal(t *testing.T, raw string) string {
	t.Helper()
	m, err := sip.NewParser().ParseSIP([]byte(raw))
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	return callSpecific.ReplaceAllString(msgLines(m), "X")
}

// TestFastPathForwardsLikeTheFullPath: the 200 to the INVITE, the ACK,
// BYE and BYE answer of a plain call go through the fast path, and the agent and the caller get
// the same messages (parsed) as through the full path, and the call ends
// the same way (bye_caller).
func TestFastPathForwardsLikeTheFullPath(t *testing.T) {
	caller := newRaw(t, "127.0.0.1", &net.UDPAddr{})
	agent := newRaw(t, "127.0.0.1", &net.UDPAddr{})
	e := runEdge(t, buildTable(routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + itoa(agent.port())}), nil, nil)
	caller.to = net_(e).(*net.UDPAddr)
	agent.to = caller.to

	got := map[bool][3]string{}
	for i, fast := range []bool{false, true} {
		e.fast.off.Store(!fast)
		before := e.fast.forwarded.Load()
		c := setUpFastCall(t, e, caller, agent, "fp-"+itoa(i))
		caller.send(c.inDialog("ACK", 1, ""))
		ack := agent.readRequest("ACK", 5*time.Second)
		caller.send(c.inDialog("BYE", 2, ""))
		bye := agent.readRequest("BYE", 5*time.Second)
		if ack == "" || bye == "" {
			t.Fatalf("fast=%v: the agent got ACK %v, BYE %v", fast, ack != "", bye != "")
		}
		agent.replyTo(bye, 200, "OK", "", "")
		res := caller.readFinal(5 * time.Second)
		if !strings.HasPrefix(res, "SIP/2.0 200") || !strings.HasSuffix(first(res, "CSeq"), "BYE") {
			t.Fatalf("fast=%v: the caller got %q, want 200 to its BYE", fast, statusLine(res))
		}
		ended := e.events.waitEvent(t, calls.Ended, c.id)
		if ended.Reason != "bye_caller" || ended.Status != 200 {
			t.Errorf("fast=%v: ended %d %q, want 200 bye_caller", fast, ended.Status, ended.Reason)
		}
		n := e.fast.forwarded.Load() - before
		if want := map[bool]int64{false: 0, true: 4}[fast]; n != want { // the 200 to the INVITE too
			t.Errorf("fast=%v: %d messages through the fast path, want %d", fast, n, want)
		}
		got[fast] = [3]string{normal(t, ack), normal(t, bye), normal(t, res)}
	}
	for i, what := range []string{"ACK at the agent", "BYE at the agent", "200 (BYE) at the caller"} {
		if got[true][i] != got[false][i] {
			t.Errorf("%s differs\nfast path:\n%s\nfull path:\n%s", what, got[true][i], got[false][i])
		}
	}
	if _, _, d := e.tableSizes(); d != 0 {
		t.Errorf("%d dialog records left after both BYEs", d)
	}
}

// TestFastPathLeavesToTheFullPath: what the fast path must not take goes
// to the full path, which decides as before: a call a feature inspects, a
// header outside the fast path's set, a target that is not a peer of the
// dialog (403), a scanner's User-Agent (dropped), Max-Forwards 0 (483). A
// plain User-Agent stays on the fast path.
func TestFastPathLeavesToTheFullPath(t *testing.T) {
	caller := newRaw(t, "127.0.0.1", &net.UDPAddr{})
	agent := newRaw(t, "127.0.0.1", &net.UDPAddr{})
	e := runEdge(t, buildTable(routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + itoa(agent.port())}), nil, nil)
	caller.to = net_(e).(*net.UDPAddr)
	agent.to = caller.to

	for _, tc := range []struct {
		name    string
		prepare func(c *fastCall) string // the BYE to send
		want    string                   // "forwarded", or the status the caller gets
	}{
		{"inspected call", func(c *fastCall) string {
			rec, ok := e.dialogs.get(c.id)
			if !ok {
				t.Fatal("no dialog record")
			}
			rec.inspect.Store(true)
			return c.inDialog("BYE", 2, "")
		}, "forwarded"},
		{"unknown header", func(c *fastCall) string {
			return c.inDialog("BYE", 2, "X-Fast-Path: no\r\n")
		}, "forwarded"},
		{"not a peer", func(c *fastCall) string {
			c2 := *c
			c2.agentURI = "sip:victim@127.0.0.99:5060"
			return c2.inDialog("BYE", 2, "")
		}, "403"},
		{"plain user agent", func(c *fastCall) string {
			return c.inDialog("BYE", 2, "User-Agent: Acme SBC 1.0\r\n")
		}, "fast"},
		{"scanner user agent", func(c *fastCall) string {
			return c.inDialog("BYE", 2, "User-Agent: friendly-scanner\r\n")
		}, "dropped"},
		{"max-forwards 0", func(c *fastCall) string {
			return strings.Replace(c.inDialog("BYE", 2, ""), "Max-Forwards: 70", "Max-Forwards: 0", 1)
		}, "483"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := setUpFastCall(t, e, caller, agent, "fp-"+strings.ReplaceAll(tc.name, " ", ""))
			caller.send(c.inDialog("ACK", 1, ""))
			if agent.readRequest("ACK", 5*time.Second) == "" {
				t.Fatal("the agent got no ACK")
			}
			before := e.fast.forwarded.Load()
			caller.send(tc.prepare(&c))
			switch tc.want {
			case "dropped": // no answer, nothing forwarded: the BYE retried without it ends the call
				if m := agent.read(300 * time.Millisecond); m != "" {
					t.Fatalf("the agent got %q", statusLine(m))
				}
				caller.send(c.inDialog("BYE", 3, ""))
				tc.want = "fast"
				fallthrough
			case "forwarded", "fast":
				bye := agent.readRequest("BYE", 5*time.Second)
				if bye == "" {
					t.Fatal("the agent got no BYE")
				}
				if strings.Contains(tc.name, "header") && first(bye, "X-Fast-Path") == "" {
					t.Error("the BYE lost its X-Fast-Path header")
				}
				agent.replyTo(bye, 200, "OK", "", "")
				if res := caller.readFinal(5 * time.Second); !strings.HasPrefix(res, "SIP/2.0 200") {
					t.Fatalf("the caller got %q, want 200", statusLine(res))
				}
			default:
				if res := caller.readFinal(5 * time.Second); !strings.HasPrefix(res, "SIP/2.0 "+tc.want) {
					t.Fatalf("the caller got %q, want %s", statusLine(res), tc.want)
				}
			}
			// the BYE never goes the fast way; the agent's answer to it does
			// (the BYE ended the dialog record: the full path too forwards
			// it statelessly, by its Via alone)
			n := e.fast.forwarded.Load() - before
			want := map[string]int64{"forwarded": 1, "fast": 2}[tc.want]
			if tc.name == "inspected call" && n == 0 {
				want = 0 // the answer overtook the end of the record: the full path again
			}
			if n != want {
				t.Errorf("%d messages through the fast path after the BYE was sent, want %d", n, want)
			}
		})
	}
}

// replyWith is rawUA.replyTo with extra header lines (before
// Content-Length) and an edit of the whole message (nil: none).
func replyWith(r *rawUA, req string, code int, reason, toTag, extra, body string, edit func(string) string) {
	r.t.Helper()
	to := first(req, "To")
	if toTag != "" && !strings.Contains(to, "tag=") {
		to += ";tag=" + toTag
	}
	msg := "SIP/2.0 " + itoa(code) + " " + reason + "\r\n" + strings.Join(lines(req, "Via"), "\r\n") + "\r\n"
	if rr := lines(req, "Record-Route"); len(rr) > 0 {
		msg += strings.Join(rr, "\r\n") + "\r\n"
	}
	msg += first(req, "From") + "\r\n" + to + "\r\n" + first(req, "Call-ID") + "\r\n" + first(req, "CSeq") + "\r\n" +
		"Contact: <sip:bot@127.0.0.1:" + itoa(r.port()) + ">\r\n" + extra
	if body != "" {
		msg += "Content-Type: application/sdp\r\n"
	}
	msg += "Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if edit != nil {
		msg = edit(msg)
	}
	v := strings.Fields(lines(req, "Via")[0])[2]
	addr, err := net.ResolveUDPAddr("udp", strings.SplitN(v, ";", 2)[0])
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.conn.WriteToUDP([]byte(msg), addr); err != nil {
		r.t.Fatal(err)
	}
}

// readStatus waits for a response with that status line prefix ("SIP/2.0
// 180"), skipping others (the proxy's own 100 Trying).
func readStatus(r *rawUA, prefix string, d time.Duration) string {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if m := r.read(time.Until(deadline)); strings.HasPrefix(m, prefix) {
			return m
		}
	}
	return ""
}

// findCall is the call whose INVITE has that Call-ID (before or after the answer).
func findCall(t *testing.T, e *testEdge, id string) *call {
	t.Helper()
	if c, ok := e.dialogs.get(id); ok {
		return c
	}
	var found *call
	e.serverTx.rangeAll(func(_ string, c *call) {
		if c.id == id {
			found = c
		}
	})
	if found == nil {
		t.Fatalf("no call %q", id)
	}
	return found
}

// TestFastPathInviteResponsesLikeTheFullPath: the agent's 100, 180, 200
// and retransmitted 200 to the INVITE of a plain call go through the fast
// path (the 100 absorbed, the others forwarded), and the caller gets the
// same messages (parsed) as through the full path, with the same state
// changes: the early dialog recorded at the 180, the answered event, the
// dialog record with the agent's tag and Contact, the direct-media answer
// kept (bridge3pcc.go), the response and setup metrics, the ring timer
// stopped, and a dialog that then works (ACK, BYE).
func TestFastPathInviteResponsesLikeTheFullPath(t *testing.T) {
	caller := newRaw(t, "127.0.0.1", &net.UDPAddr{})
	agent := newRaw(t, "127.0.0.1", &net.UDPAddr{})
	e := runEdge(t, buildTable(routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + itoa(agent.port())}),
		func(c *Config) { c.RingTimeout = 3 * time.Second }, nil)
	caller.to = net_(e).(*net.UDPAddr)
	agent.to = caller.to

	type outcome struct {
		msgs                       [3]string // 180, 200, 200 again at the caller
		agentTag, target, answerIn string
		state                      int
		noAckArmed, earlyRecord    bool
		event                      string
		responses                  [2]float64 // INVITE 180, 200
		setup                      [2]uint64  // provisional, answer observations
		fast                       [2]int64   // forwarded, absorbed
	}
	r180 := e.metrics.Responses.WithLabelValues("INVITE", codeLabel(180))
	r200 := e.metrics.Responses.WithLabelValues("INVITE", codeLabel(200))
	got := map[bool]outcome{}
	for i, fast := range []bool{false, true} {
		e.fast.off.Store(!fast)
		id := "fp-resp" + itoa(i)
		var o outcome
		fw, ab := e.fast.forwarded.Load(), e.fast.absorbed.Load()
		resp := [2]float64{testutil.ToFloat64(r180), testutil.ToFloat64(r200)}
		setup := [2]uint64{histSamples(t, e.metrics.SetupProvisional), histSamples(t, e.metrics.SetupAnswer)}

		caller.send(caller.invite(e, numPurchased, id, ""))
		inv := agent.readRequest("INVITE", 5*time.Second)
		if inv == "" {
			t.Fatalf("fast=%v: the agent got no INVITE", fast)
		}
		agent.replyTo(inv, 100, "Trying", "", "")
		agent.replyTo(inv, 180, "Ringing", "ag-"+id, "")
		ringing := readStatus(caller, "SIP/2.0 180", 5*time.Second)
		_, o.earlyRecord = e.dialogs.get(id) // an early dialog (early.go)
		agent.replyTo(inv, 200, "OK", "ag-"+id, testSDP)
		ok1 := readStatus(caller, "SIP/2.0 200", 5*time.Second)
		agent.replyTo(inv, 200, "OK", "ag-"+id, testSDP) // retransmitted: no ACK yet
		ok2 := readStatus(caller, "SIP/2.0 200", 5*time.Second)
		if ringing == "" || ok1 == "" || ok2 == "" {
			t.Fatalf("fast=%v: the caller got 180 %v, 200 %v, 200 again %v", fast, ringing != "", ok1 != "", ok2 != "")
		}
		o.msgs = [3]string{normal(t, ringing), normal(t, ok1), normal(t, ok2)}
		ev := e.events.waitEvent(t, calls.Answered, id)
		o.event = sprintf("%s %d %s %s", ev.Kind, ev.Status, ev.Region, ev.Endpoint)
		c, ok := e.dialogs.get(id)
		if !ok {
			t.Fatalf("fast=%v: no dialog record after the 200", fast)
		}
		c.mu.Lock()
		o.agentTag, o.state, o.answerIn = c.agentTag, c.state, string(c.answerIn)
		if c.agentTarget != nil {
			o.target = c.agentTarget.String()
		}
		// the ring timeout's timer, re-armed as the no-ACK timeout (onCallTimer)
		o.noAckArmed = c.ring != nil && c.ring.Stop()
		c.mu.Unlock()
		o.agentTag = strings.TrimSuffix(o.agentTag, id)
		o.responses = [2]float64{testutil.ToFloat64(r180) - resp[0], testutil.ToFloat64(r200) - resp[1]}
		o.setup = [2]uint64{histSamples(t, e.metrics.SetupProvisional) - setup[0], histSamples(t, e.metrics.SetupAnswer) - setup[1]}
		o.fast = [2]int64{e.fast.forwarded.Load() - fw, e.fast.absorbed.Load() - ab}

		// the dialog works: ACK and BYE reach the agent, the 200 the caller
		var rs []string
		for _, l := range lines(ok1, "Record-Route") {
			rs = append(rs, strings.TrimSpace(l[len("Record-Route:"):]))
		}
		fc := fastCall{id: id, routes: strings.Join(rs, ", "), caller: caller, agent: agent, agentURI: "sip:bot@127.0.0.1:" + itoa(agent.port())}
		caller.send(fc.inDialog("ACK", 1, ""))
		if agent.readRequest("ACK", 5*time.Second) == "" {
			t.Fatalf("fast=%v: no ACK at the agent", fast)
		}
		caller.send(fc.inDialog("BYE", 2, ""))
		bye := agent.readRequest("BYE", 5*time.Second)
		if bye == "" {
			t.Fatalf("fast=%v: no BYE at the agent", fast)
		}
		agent.replyTo(bye, 200, "OK", "", "")
		if res := caller.readFinal(5 * time.Second); !strings.HasPrefix(res, "SIP/2.0 200") {
			t.Fatalf("fast=%v: the caller got %q to its BYE", fast, statusLine(res))
		}
		if ended := e.events.waitEvent(t, calls.Ended, id); ended.Reason != "bye_caller" {
			t.Errorf("fast=%v: ended %q, want bye_caller", fast, ended.Reason)
		}
		got[fast] = o
	}
	full, fast := got[false], got[true]
	if full.fast != [2]int64{0, 0} || fast.fast != [2]int64{3, 1} {
		t.Errorf("through the fast path (forwarded, absorbed): full path %v, fast path %v; want [0 0] and [3 1]", full.fast, fast.fast)
	}
	for i, what := range []string{"180", "200", "retransmitted 200"} {
		if fast.msgs[i] != full.msgs[i] {
			t.Errorf("%s at the caller differs\nfast path:\n%s\nfull path:\n%s", what, fast.msgs[i], full.msgs[i])
		}
	}
	full.msgs, fast.msgs, full.fast, fast.fast = [3]string{}, [3]string{}, [2]int64{}, [2]int64{}
	if fast != full {
		t.Errorf("state after the answer differs\nfast path: %+v\nfull path: %+v", fast, full)
	}
	if full.agentTag != "ag-" || full.target != "sip:bot@127.0.0.1:"+itoa(agent.port()) || full.state != stAccepted ||
		full.answerIn != testSDP || !full.noAckArmed || !full.earlyRecord || full.responses != [2]float64{1, 2} || full.setup != [2]uint64{1, 1} {
		t.Errorf("full path's state: %+v", full)
	}
}

// TestFastPathInviteResponsesLeaveToTheFullPath: a response to the INVITE
// that the fast path must not take goes to the full path, which does
// what it always did: relayed media (SDP rewritten), an inspected call,
// CSeq renumbering (egress auth), a non-2xx final (ACK hop by hop), a
// reliable provisional (100rel), a header outside the scanner's set, a
// session timer callgate adds to the 2xx, a caller over TCP or IPv6, a
// Via not ours (dropped), a branch no longer known (a late 2xx,
// forwarded statelessly). Two plain calls (one through the agent
// listener) are the control: they are taken.
func TestFastPathInviteResponsesLeaveToTheFullPath(t *testing.T) {
	type caseT struct {
		name     string
		edge     func(t *testing.T, ep routing.Endpoint) *testEdge // nil: runEdge, direct media
		invExtra string                                            // headers of the caller's INVITE
		over     string                                            // the caller: "" (UDP, IPv4), "tcp", "v6"
		prepare  func(c *call)                                     // the call, once its INVITE reached the agent
		code     int                                               // the agent's answer (default 200)
		extra    string                                            // its extra headers
		edit     func(msg string) string                           // its edit
		want     string                                            // the status line's start at the caller ("": nothing)
		check    func(t *testing.T, got string)
		taken    bool // through the fast path
	}
	viaHost := func(host string) func(string) string {
		return func(m string) string {
			return strings.Replace(m, "Via: SIP/2.0/UDP 127.0.0.1:", "Via: SIP/2.0/UDP "+host+":", 1)
		}
	}
	for _, tc := range []caseT{
		{name: "plain", want: "SIP/2.0 200", taken: true},
		{name: "plain, agent listener", edge: func(t *testing.T, ep routing.Endpoint) *testEdge {
			return runAgentEdge(t, buildTable(ep), "", nil, nil)
		}, want: "SIP/2.0 200", taken: true},
		{name: "relayed media", edge: func(t *testing.T, ep routing.Endpoint) *testEdge {
			return runEdge(t, relayTable(ep), nil, media.Anchor[MediaSession]{M: newMediaManager(t, 32400, 32419)})
		}, want: "SIP/2.0 200", check: func(t *testing.T, got string) {
			if p := sdpPort(strings.SplitN(got, "\r\n\r\n", 2)[1]); p < 32400 || p > 32419 {
				t.Errorf("the caller's SDP names port %d, not the relay's", p)
			}
		}},
		{name: "inspected call", prepare: func(c *call) { c.inspect.Store(true) }, want: "SIP/2.0 200"},
		{name: "CSeq renumbered", prepare: func(c *call) {
			c.mu.Lock()
			c.cur.cseqAdd = 1 // as after a termination's digest challenge (egressauth.go)
			c.mu.Unlock()
		}, edit: func(m string) string { return strings.Replace(m, "CSeq: 1 INVITE", "CSeq: 2 INVITE", 1) },
			want: "SIP/2.0 200", check: func(t *testing.T, got string) {
				if cs := first(got, "CSeq"); cs != "CSeq: 1 INVITE" {
					t.Errorf("the caller got %q, want its own CSeq 1", cs)
				}
			}},
		{name: "486 busy", code: 486, want: "SIP/2.0 486"},
		{name: "reliable 180", code: 180, extra: "Require: 100rel\r\nRSeq: 1\r\n", want: "SIP/2.0 180",
			check: func(t *testing.T, got string) {
				if first(got, "RSeq") == "" {
					t.Error("the 180 lost its RSeq")
				}
			}},
		{name: "custom header", extra: "X-Agent-Note: hello\r\n", want: "SIP/2.0 200", check: func(t *testing.T, got string) {
			if first(got, "X-Agent-Note") == "" {
				t.Error("the 200 lost X-Agent-Note")
			}
		}},
		{name: "session timer added", edge: func(t *testing.T, ep routing.Endpoint) *testEdge {
			return runEdge(t, buildTable(ep), func(c *Config) { c.SessionTimers.DefaultInterval = 120 * time.Second }, nil)
		}, invExtra: "Supported: timer\r\n", want: "SIP/2.0 200", check: func(t *testing.T, got string) {
			if !strings.Contains(first(got, "Session-Expires"), "refresher=uac") {
				t.Errorf("the 200 has %q, want Session-Expires with refresher=uac", first(got, "Session-Expires"))
			}
		}},
		{name: "TCP caller", over: "tcp", want: "SIP/2.0 200"},
		{name: "IPv6 caller", over: "v6", edge: func(t *testing.T, ep routing.Endpoint) *testEdge {
			needV6(t)
			return runEdge(t, buildTable(ep), dualTweak(false), nil)
		}, want: "SIP/2.0 200"},
		{name: "Via not ours", edit: viaHost("127.0.0.99"), want: ""},
		{name: "branch not known", edit: func(m string) string {
			return regexp.MustCompile(`branch=z9hG4bKcgx[0-9a-f]+`).ReplaceAllString(m, "branch=z9hG4bKcgx0000000000")
		}, want: "SIP/2.0 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := newRaw(t, "127.0.0.1", &net.UDPAddr{})
			ep := routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + itoa(agent.port())}
			var e *testEdge
			if tc.edge != nil {
				e = tc.edge(t, ep)
			} else {
				e = runEdge(t, buildTable(ep), nil, nil)
			}
			id := "fp-" + regexp.MustCompile(`[^a-zA-Z0-9]`).ReplaceAllString(tc.name, "")
			caller := newRaw(t, "127.0.0.1", net_(e))
			inv := caller.invite(e, numPurchased, id, tc.invExtra)
			var read func(time.Duration) string
			switch tc.over {
			case "tcp":
				tc := dialTCPFrom(t, "127.0.0.1", e.TCPAddr().String())
				inv = strings.Replace(inv, "SIP/2.0/UDP 127.0.0.1:"+itoa(caller.port()), "SIP/2.0/TCP 127.0.0.1:"+itoa(tc.port()), 1)
				if _, err := tc.c.Write([]byte(inv)); err != nil {
					t.Fatal(err)
				}
				read = tc.readFinal
			case "v6":
				caller = newRaw(t, "::1", net.UDPAddrFromAddrPort(e.UDPAddr6()))
				inv = strings.Replace(caller.invite(e, numPurchased, id, tc.invExtra), "SIP/2.0/UDP 127.0.0.1:", "SIP/2.0/UDP [::1]:", 1)
				caller.send(inv)
			default:
				caller.send(inv)
			}
			if read == nil {
				read = func(d time.Duration) string {
					if tc.want == "" {
						return caller.readFinal(d)
					}
					return readStatus(caller, tc.want, d)
				}
			}
			got := agent.readRequest("INVITE", 5*time.Second)
			if got == "" {
				t.Fatalf("the agent got no INVITE (the caller: %q)", caller.read(100*time.Millisecond))
			}
			if tc.prepare != nil {
				tc.prepare(findCall(t, e, id))
			}
			code, reason := tc.code, "OK"
			switch code {
			case 0:
				code = 200
			case 180:
				reason = "Ringing"
			case 486:
				reason = "Busy Here"
			}
			body := ""
			if code == 200 {
				body = testSDP
			}
			before := e.fast.forwarded.Load() + e.fast.absorbed.Load()
			notOurs := testutil.ToFloat64(e.metrics.Dropped.WithLabelValues("not_ours"))
			replyWith(agent, got, code, reason, "ag-"+id, tc.extra, body, tc.edit)
			if tc.want == "" {
				checkFor(t, 5*time.Second, func() error {
					if n := testutil.ToFloat64(e.metrics.Dropped.WithLabelValues("not_ours")) - notOurs; n != 1 {
						return fmt.Errorf("%v responses dropped as not ours, want 1", n)
					}
					return nil
				})
				if m := caller.read(100 * time.Millisecond); strings.HasPrefix(m, "SIP/2.0 2") {
					t.Fatalf("the caller got %q", statusLine(m))
				}
			} else {
				res := read(5 * time.Second)
				if !strings.HasPrefix(res, tc.want) {
					t.Fatalf("the caller got %q, want %s", statusLine(res), tc.want)
				}
				if tc.check != nil {
					tc.check(t, res)
				}
			}
			if code == 486 && agent.readRequest("ACK", 5*time.Second) == "" {
				t.Error("the agent got no ACK for its 486 (hop by hop)")
			}
			n := e.fast.forwarded.Load() + e.fast.absorbed.Load() - before
			if want := map[bool]int64{true: 1}[tc.taken]; n != want {
				t.Errorf("%d responses through the fast path, want %d", n, want)
			}
		})
	}
}

// TestFastPathLate180NotForwarded: a 180 that arrives after the 200 (the
// agent's datagrams reordered) is taken by the fast path and, as on the
// full path, not forwarded: the caller never sees a provisional after the
// answer.
func TestFastPathLate180NotForwarded(t *testing.T) {
	caller := newRaw(t, "127.0.0.1", &net.UDPAddr{})
	agent := newRaw(t, "127.0.0.1", &net.UDPAddr{})
	e := runEdge(t, buildTable(routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + itoa(agent.port())}), nil, nil)
	caller.to = net_(e).(*net.UDPAddr)
	for i, fast := range []bool{false, true} {
		e.fast.off.Store(!fast)
		id := "fp-late" + itoa(i)
		caller.send(caller.invite(e, numPurchased, id, ""))
		inv := agent.readRequest("INVITE", 5*time.Second)
		if inv == "" {
			t.Fatalf("fast=%v: the agent got no INVITE", fast)
		}
		fw, ab := e.fast.forwarded.Load(), e.fast.absorbed.Load()
		agent.replyTo(inv, 200, "OK", "ag-"+id, testSDP)
		if readStatus(caller, "SIP/2.0 200", 5*time.Second) == "" {
			t.Fatalf("fast=%v: no 200 at the caller", fast)
		}
		agent.replyTo(inv, 180, "Ringing", "ag-"+id, "")
		agent.replyTo(inv, 200, "OK", "ag-"+id, testSDP) // after the 180: its arrival shows the 180 was handled
		if m := caller.read(5 * time.Second); !strings.HasPrefix(m, "SIP/2.0 200") {
			t.Errorf("fast=%v: after the answer the caller got %q, want only the retransmitted 200", fast, statusLine(m))
		}
		if got, want := [2]int64{e.fast.forwarded.Load() - fw, e.fast.absorbed.Load() - ab}, map[bool][2]int64{true: {2, 1}}[fast]; got != want {
			t.Errorf("fast=%v: through the fast path (forwarded, absorbed) %v, want %v", fast, got, want)
		}
	}
}

// TestFastRequestWriteAllocatesNothing: the forwarded ACK or BYE is
// written without allocating, its rport value (a port of 100 or more)
// and Max-Forwards included.
func TestFastRequestWriteAllocatesNothing(t *testing.T) {
	s := &Server{viaHost: "127.0.0.9"}
	s.fast.once.Do(func() {})
	s.fast.via = [2]string{"Via: SIP/2.0/UDP 127.0.0.9:5060;branch=", "Via: SIP/2.0/UDP 127.0.0.9:5070;branch="}
	from := peer{Proto: protoUDP, Addr: netip.MustParseAddrPort("127.0.0.2:5099")}
	var m fastMsg
	if !scanFast([]byte(fastSeeds[1]), &m) || m.viaRport != -1 || m.maxFwd < 0 { // SIPp's BYE with rport
		t.Fatal("the seed is not a BYE with rport and Max-Forwards the scanner takes")
	}
	var buf bytes.Buffer
	buf.Grow(4096)
	n := testing.AllocsPerRun(100, func() {
		buf.Reset()
		s.writeFastRequest(&buf, &m, from, sideCarrier, 1, false)
	})
	if n != 0 {
		t.Errorf("%v allocations a forwarded BYE, want 0", n)
	}
	if !strings.Contains(buf.String(), ";rport=5099;received=127.0.0.2") || !strings.Contains(buf.String(), "Max-Forwards: 69\r\n") {
		t.Errorf("rport, received or Max-Forwards not written:\n%s", buf.String())
	}
}
