package sip

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// timerAgent is an agent UA that does RFC 4028 as a UAS: its 2xx to the
// INVITE carries answerHdrs, and its 2xx to a re-INVITE or UPDATE echoes
// the request's Session-Expires (refresher=uac when none was given). It
// accepts REFER (202). headers_test.go uses it too.
type timerAgent struct {
	host   string
	port   int
	dsc    *sipgo.DialogServerCache
	invite chan *sip.Request // initial INVITEs
	inDlg  chan *sip.Request // re-INVITEs and UPDATEs
	byes   chan *sip.Request
}

func newTimerAgent(t *testing.T, answerHdrs ...sip.Header) *timerAgent {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &timerAgent{host: "127.0.0.1", port: pc.LocalAddr().(*net.UDPAddr).Port,
		invite: make(chan *sip.Request, 8), inDlg: make(chan *sip.Request, 32), byes: make(chan *sip.Request, 8)}
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(a.host))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sipgo.NewServer(ua)
	cli, _ := sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(pc.LocalAddr().String()), sipgo.WithClientHostname(a.host))
	a.dsc = sipgo.NewDialogServerCache(cli, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bot", Host: a.host, Port: a.port}})
	echo := func(req *sip.Request, tx sip.ServerTransaction) {
		a.inDlg <- req.Clone()
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		if v, ok := sessionExpiresOf(req); ok {
			if !strings.Contains(v, "refresher") {
				v += ";refresher=uac"
			}
			res.AppendHeader(sip.NewHeader("Session-Expires", v))
			res.AppendHeader(sip.NewHeader("Require", "timer"))
		}
		if req.Method == sip.INVITE {
			res.SetBody([]byte(testSDP))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		_ = tx.Respond(res)
	}
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if tag, _ := req.To().Params.Get("tag"); tag != "" {
			echo(req, tx)
			return
		}
		a.invite <- req.Clone()
		ds, err := a.dsc.ReadInvite(req, tx)
		if err != nil {
			return
		}
		_ = ds.Respond(200, "OK", []byte(testSDP), append([]sip.Header{sip.NewHeader("Content-Type", "application/sdp")}, answerHdrs...)...)
	})
	srv.OnRequest(sip.UPDATE, echo)
	srv.OnRequest(sip.REFER, func(req *sip.Request, tx sip.ServerTransaction) {
		a.inDlg <- req.Clone()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 202, "Accepted", nil))
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = a.dsc.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		a.byes <- req.Clone()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go func() { _ = srv.ServeUDP(pc) }()
	checkFor(t, 2*time.Second, func() error {
		if c, err := ua.TransportLayer().GetConnection("udp", pc.LocalAddr().String()); err != nil || c == nil {
			return errors.New("agent listener not ready")
		}
		return nil
	})
	t.Cleanup(func() {
		ua.Close()
		pc.Close()
	})
	return a
}

// timerEdge is an edge whose session seconds last unit.
func timerEdge(t *testing.T, a *timerAgent, unit time.Duration, tweak func(*Config)) *testEdge {
	t.Helper()
	return runEdge(t, buildTable(endpointAt(a.host, a.port)), func(c *Config) {
		c.sessionUnit = unit
		if tweak != nil {
			tweak(c)
		}
	}, nil)
}

func endpointAt(host string, port int) routing.Endpoint {
	return routing.Endpoint{Region: "eu", URI: "sip:bot@" + host + ":" + itoa(port)}
}

func sessionCount(e *testEdge, event string) float64 {
	return testutil.ToFloat64(e.xm.Sessions.WithLabelValues(event))
}

// noRequest fails when a request arrives on ch within d.
func noRequest(t *testing.T, ch chan *sip.Request, d time.Duration, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: %s arrived", what, r.Method)
	case <-time.After(d):
	}
}

// TestSessionTimerTooSmall: an INVITE, a re-INVITE and an UPDATE whose
// Session-Expires is below min_se get 422 with our Min-SE (RFC 4028 8.1);
// a Session-Expires that does not parse gets 400.
func TestSessionTimerTooSmall(t *testing.T) {
	a := newTimerAgent(t)
	e := timerEdge(t, a, 0, func(c *Config) { c.SessionTimers.MinSE = 120 * time.Second })
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "st-422", "Session-Expires: 100;refresher=uac\r\nSupported: timer\r\n"))
	res := raw.readFinal(5 * time.Second)
	if !strings.HasPrefix(res, "SIP/2.0 422 ") || !strings.Contains(res, "\r\nMin-SE: 120\r\n") {
		t.Fatalf("INVITE with Session-Expires 100: want 422 with Min-SE: 120, got\n%s", res)
	}
	raw.send(raw.invite(e, numPurchased, "st-400", "Session-Expires: soon\r\n"))
	if res := raw.readFinal(5 * time.Second); !strings.HasPrefix(res, "SIP/2.0 400 ") || !strings.Contains(res, "Session-Expires") {
		t.Fatalf("malformed Session-Expires: want 400 naming it, got\n%s", res)
	}
	select {
	case r := <-a.invite:
		t.Fatalf("refused INVITE reached the agent: %s", r.CallID().Value())
	default:
	}

	ds, _, err := carrier.call(ctx, e, numPurchased, sip.NewHeader("Session-Expires", "120"))
	if err != nil {
		t.Fatalf("INVITE at min_se: %v", err)
	}
	_ = ds.Ack(ctx)
	recv(t, a.invite, "INVITE at the agent")
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.UPDATE} {
		re := sip.NewRequest(m, ds.InviteResponse.Contact().Address)
		re.AppendHeader(sip.NewHeader("Session-Expires", "119"))
		res, err := ds.Do(ctx, re)
		if err != nil || res.StatusCode != 422 || header2(res, "Min-SE") != "120" {
			t.Fatalf("%s with Session-Expires 119: %v %v", m, res, err)
		}
		if m == sip.INVITE {
			_ = ds.WriteRequest(sip.NewRequest(sip.ACK, ds.InviteResponse.Contact().Address))
		}
	}
	noRequest(t, a.inDlg, 200*time.Millisecond, "a refused refresh")
	if got := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("session_interval_too_small")); got != 3 {
		t.Errorf("rejected_total{reason=session_interval_too_small} = %v, want 3", got)
	}
	_ = ds.Bye(ctx)
}

// TestSessionTimerHeadersUntouched: Session-Expires, Min-SE, Supported
// and Require pass both ways as they came.
func TestSessionTimerHeadersUntouched(t *testing.T) {
	a := newTimerAgent(t, sip.NewHeader("Session-Expires", "1800;refresher=uas"), sip.NewHeader("Require", "timer"))
	e := timerEdge(t, a, 0, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, _, err := carrier.call(ctx, e, numPurchased, sip.NewHeader("Session-Expires", "1800;refresher=uac"),
		sip.NewHeader("Min-SE", "600"), sip.NewHeader("Supported", "timer, 100rel"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	inv := recv(t, a.invite, "INVITE at the agent")
	for name, want := range map[string]string{"Session-Expires": "1800;refresher=uac", "Min-SE": "600", "Supported": "timer, 100rel"} {
		if got := header(inv, name); got != want {
			t.Errorf("agent got %s %q, want %q", name, got, want)
		}
	}
	if got := header2(ds.InviteResponse, "Session-Expires"); got != "1800;refresher=uas" {
		t.Errorf("caller got Session-Expires %q in the 200, want the agent's 1800;refresher=uas", got)
	}
	if got := header2(ds.InviteResponse, "Require"); got != "timer" {
		t.Errorf("caller got Require %q", got)
	}
	if n := sessionCount(e, "negotiated"); n != 1 {
		t.Errorf("session_timers_total{event=negotiated} = %v, want 1", n)
	}
	_ = ds.Bye(ctx)
	ev := e.events.waitEvent(t, calls.Ended, ds.InviteRequest.CallID().Value())
	if ev.Reason != "bye_caller" {
		t.Errorf("ended %q, want bye_caller", ev.Reason)
	}
}

// TestSessionExpiredByesBothSides: a dialog whose 2xx set a session
// interval and that nobody refreshes is ended by callgate before the
// interval is over (interval - min(32, interval/3)): BYE to the caller
// and to the agent, ended event with reason session_expired.
func TestSessionExpiredByesBothSides(t *testing.T) {
	a := newTimerAgent(t, sip.NewHeader("Session-Expires", "90;refresher=uac"), sip.NewHeader("Require", "timer"))
	const unit = 20 * time.Millisecond // a session second: 90 s → BYE after 60 units = 1.2 s
	e := timerEdge(t, a, unit, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	t0 := time.Now()
	ds, _, err := carrier.call(ctx, e, numPurchased, sip.NewHeader("Session-Expires", "90"), sip.NewHeader("Supported", "timer"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	callID := ds.InviteRequest.CallID().Value()
	agentBye := recv(t, a.byes, "BYE at the agent")
	callerBye := recv(t, carrier.byes, "BYE at the caller")
	if el := time.Since(t0); el < 60*unit {
		t.Errorf("BYE after %v, before the session's 60 units (%v)", el, 60*unit)
	}
	if agentBye.CallID().Value() != callID || callerBye.CallID().Value() != callID {
		t.Fatal("BYEs of another call")
	}
	if tag, _ := callerBye.To().Params.Get("tag"); tag != fromTagOf(ds.InviteRequest) {
		t.Errorf("caller's BYE To tag %q, want the caller's From tag %q", tag, fromTagOf(ds.InviteRequest))
	}
	ev := e.events.waitEvent(t, calls.Ended, callID)
	if ev.Reason != "session_expired" || ev.Status != 200 {
		t.Errorf("ended event: reason %q status %d, want session_expired 200", ev.Reason, ev.Status)
	}
	if n := sessionCount(e, "expired"); n != 1 {
		t.Errorf("session_timers_total{event=expired} = %v", n)
	}
	if e.ActiveCalls() != 0 {
		t.Errorf("%d calls still active", e.ActiveCalls())
	}
}

// TestSessionRefreshKeepsCallUp: re-INVITE and UPDATE refreshes (each
// answered 2xx with Session-Expires) keep the call up well past the
// interval; once they stop, the session expires.
func TestSessionRefreshKeepsCallUp(t *testing.T) {
	a := newTimerAgent(t, sip.NewHeader("Session-Expires", "90;refresher=uac"), sip.NewHeader("Require", "timer"))
	const unit = 40 * time.Millisecond // BYE 60 units = 2.4 s after the last refresh
	e := timerEdge(t, a, unit, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ds, _, err := carrier.call(ctx, e, numPurchased, sip.NewHeader("Session-Expires", "90"), sip.NewHeader("Supported", "timer"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	recv(t, a.invite, "INVITE")
	start := time.Now()
	refreshes := 0
	for time.Since(start) < 2*60*unit { // twice the time the session would last unrefreshed
		time.Sleep(15 * unit) // a quarter of the session: far inside it even on a loaded machine
		m := sip.INVITE
		if refreshes%2 == 1 {
			m = sip.UPDATE
		}
		re := sip.NewRequest(m, ds.InviteResponse.Contact().Address)
		re.AppendHeader(sip.NewHeader("Session-Expires", "90;refresher=uac"))
		re.AppendHeader(sip.NewHeader("Supported", "timer"))
		if m == sip.INVITE {
			re.SetBody([]byte(testSDP))
			re.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		}
		res, err := ds.Do(ctx, re)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("refresh %d (%s): %v %v", refreshes, m, res, err)
		}
		if m == sip.INVITE {
			_ = ds.WriteRequest(sip.NewRequest(sip.ACK, ds.InviteResponse.Contact().Address))
		}
		refreshes++
		select {
		case b := <-a.byes:
			t.Fatalf("BYE at the agent after %d refreshes (%v): %s", refreshes, time.Since(start), b.CallID().Value())
		case b := <-carrier.byes:
			t.Fatalf("BYE at the caller after %d refreshes: %s", refreshes, b.CallID().Value())
		default:
		}
	}
	if _, ended := e.events.find(calls.Ended, ds.InviteRequest.CallID().Value()); ended {
		t.Fatal("call ended while refreshed")
	}
	if n := sessionCount(e, "refreshed"); int(n) != refreshes {
		t.Errorf("session_timers_total{event=refreshed} = %v, want %d", n, refreshes)
	}
	// refreshes stop: the session expires
	recv(t, a.byes, "BYE at the agent once refreshes stopped")
	recv(t, carrier.byes, "BYE at the caller once refreshes stopped")
	ev := e.events.waitEvent(t, calls.Ended, ds.InviteRequest.CallID().Value())
	if ev.Reason != "session_expired" {
		t.Errorf("ended %q", ev.Reason)
	}
}

// TestSessionDefaultInterval: with default_interval, an INVITE without
// Session-Expires is forwarded with one; the agent does no timers (its
// 2xx has none), the caller said Supported: timer, so callgate asks the
// caller to refresh (Session-Expires;refresher=uac, Require: timer in the
// 2xx) and ends the unrefreshed dialog. A caller without timer support
// gets no session timer at all (nobody would refresh).
func TestSessionDefaultInterval(t *testing.T) {
	agent := newUA(t, "127.0.0.1") // answers without Session-Expires
	const unit = 20 * time.Millisecond
	e := runEdge(t, buildTable(agent.endpoint("eu")), func(c *Config) {
		c.sessionUnit = unit
		c.SessionTimers.DefaultInterval = 120 * time.Second
	}, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	ds, _, err := carrier.call(ctx, e, numPurchased, sip.NewHeader("Supported", "timer"), sip.NewHeader("Min-SE", "150"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	inv := recv(t, agent.invites, "INVITE")
	if got := header(inv, "Session-Expires"); got != "150" {
		t.Errorf("agent got Session-Expires %q, want 150 (the default 120 raised to the INVITE's Min-SE)", got)
	}
	if got := header2(ds.InviteResponse, "Session-Expires"); got != "150;refresher=uac" {
		t.Errorf("caller's 200 Session-Expires %q, want 150;refresher=uac", got)
	}
	if got := header2(ds.InviteResponse, "Require"); got != "timer" {
		t.Errorf("caller's 200 Require %q, want timer", got)
	}
	recv(t, agent.byes, "BYE at the agent")
	recv(t, carrier.byes, "BYE at the caller")
	if ev := e.events.waitEvent(t, calls.Ended, ds.InviteRequest.CallID().Value()); ev.Reason != "session_expired" {
		t.Errorf("ended %q", ev.Reason)
	}

	// no Supported: timer → no timer
	ds2, _, err := carrier.call(ctx, e, numPurchased)
	if err != nil {
		t.Fatal(err)
	}
	_ = ds2.Ack(ctx)
	inv = recv(t, agent.invites, "INVITE 2")
	if got := header(inv, "Session-Expires"); got != "120" {
		t.Errorf("agent got Session-Expires %q, want the default 120", got)
	}
	if got := header2(ds2.InviteResponse, "Session-Expires"); got != "" {
		t.Errorf("caller without timer support got Session-Expires %q", got)
	}
	noRequest(t, carrier.byes, 100*unit, "a call without session timer")
	_ = ds2.Bye(ctx)
	if ev := e.events.waitEvent(t, calls.Ended, ds2.InviteRequest.CallID().Value()); ev.Reason != "bye_caller" {
		t.Errorf("second call ended %q, want bye_caller", ev.Reason)
	}
}

func TestParseSessionExpires(t *testing.T) {
	for _, tc := range []struct {
		in   string
		secs uint32
		ref  string
		ok   bool
	}{
		{"1800", 1800, "", true},
		{" 90 ;refresher=uac", 90, "uac", true},
		{"4000;refresher=UAS;x=y", 4000, "uas", true},
		{"99999999999", 1<<32 - 1, "", true},
		{"", 0, "", false},
		{"abc", 0, "", false},
		{"-5", 0, "", false},
		{"90;refresher=me", 0, "", false},
		{"90;refresher", 0, "", false},
		{"90;refresher=uac;refresher=uas", 0, "", false},
		{"90;", 0, "", false},
		{"90;a b", 0, "", false},
	} {
		secs, ref, err := parseSessionExpires(tc.in)
		if (err == nil) != tc.ok || secs != tc.secs || ref != tc.ref {
			t.Errorf("%q: %d %q %v", tc.in, secs, ref, err)
		}
	}
	if expiryAfter(90) != 60 || expiryAfter(1800) != 1768 || expiryAfter(3) != 2 {
		t.Errorf("expiryAfter: %d %d %d", expiryAfter(90), expiryAfter(1800), expiryAfter(3))
	}
}

// FuzzSessionExpires: the parser never panics, and what it accepts
// re-parses the same from its canonical form.
func FuzzSessionExpires(f *testing.F) {
	for _, s := range []string{"1800", "90;refresher=uac", " 4000 ; refresher = uas ; x", "1;;", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		secs, ref, err := parseSessionExpires(v)
		if err != nil {
			return
		}
		canon := itoa(int(secs))
		if ref != "" {
			canon += ";refresher=" + ref
		}
		s2, r2, err := parseSessionExpires(canon)
		if err != nil || s2 != secs || r2 != ref {
			t.Fatalf("%q → %q: %d %q %v", v, canon, s2, r2, err)
		}
	})
}

func fromTagOf(r *sip.Request) string {
	tag, _ := r.From().Params.Get("tag")
	return tag
}

func TestShiftedRAck(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"1 2 INVITE", "1 3 INVITE", true},
		{"  7   41 INVITE ", "7 42 INVITE", true},
		{"1 4294967295 INVITE", "", false},
		{"1 x INVITE", "", false},
		{"1 2", "", false},
		{"1 2 INV;ITE", "", false},
	} {
		got, ok := shiftedRAck(tc.in, 1)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%q: %q %v", tc.in, got, ok)
		}
	}
}

// TestProxyRequireTimer: callgate is a session-timer aware proxy, so
// Proxy-Require: timer is accepted; any other option tag still gets 420
// naming only the unsupported one.
func TestProxyRequireTimer(t *testing.T) {
	a := newTimerAgent(t)
	e := timerEdge(t, a, 0, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "pr-timer", "Proxy-Require: timer\r\nSession-Expires: 1800\r\n"))
	if res := raw.readFinal(5 * time.Second); !strings.HasPrefix(res, "SIP/2.0 200 ") {
		t.Fatalf("Proxy-Require: timer: want the agent's 200, got\n%s", res)
	}
	raw.send(raw.invite(e, numPurchased, "pr-foo", "Proxy-Require: foo, timer\r\n"))
	res := raw.readFinal(5 * time.Second)
	if !strings.HasPrefix(res, "SIP/2.0 420 ") || !strings.Contains(res, "\r\nUnsupported: foo\r\n") {
		t.Fatalf("Proxy-Require: foo, timer: want 420 with Unsupported: foo, got\n%s", res)
	}
}
