package sip

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

func TestCallPurchasedNumberByeFromCaller(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ds, codes, err := carrier.call(ctx, e, numPurchased)
	if err != nil {
		t.Fatalf("call: %v (codes %v)", err, codes)
	}
	inv := recv(t, agent.invites, "INVITE at agent")
	if got := header(inv, "X-Callgate-Number"); got != numPurchased {
		t.Errorf("X-Callgate-Number = %q", got)
	}
	if got := header(inv, "X-Callgate-Agent"); got != "a1" {
		t.Errorf("X-Callgate-Agent = %q", got)
	}
	if got := header(inv, "X-Callgate-Region"); got != "eu" {
		t.Errorf("X-Callgate-Region = %q", got)
	}
	if rr := inv.RecordRoute(); rr == nil || rr.Address.Port != int(e.UDPAddr().Port()) {
		t.Errorf("Record-Route = %v", rr)
	}
	if mf := inv.MaxForwards(); mf == nil || *mf != 69 {
		t.Errorf("Max-Forwards = %v, want 69", mf)
	}
	if len(inv.GetHeaders("Via")) != 2 {
		t.Errorf("agent sees %d Via, want 2", len(inv.GetHeaders("Via")))
	}
	if err := ds.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, agent.acks, "ACK at agent")
	if e.ActiveCalls() != 1 {
		t.Errorf("ActiveCalls = %d, want 1", e.ActiveCalls())
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	recv(t, agent.byes, "BYE at agent")
	callID := inv.CallID().Value()
	st := e.events.waitEvent(t, calls.Started, callID)
	an := e.events.waitEvent(t, calls.Answered, callID)
	en := e.events.waitEvent(t, calls.Ended, callID)
	if st.Number != numPurchased || st.Agent != "a1" || st.Origin != "purchased" || st.Carrier != "twilio" || st.Region != "eu" {
		t.Errorf("started = %+v", st)
	}
	if an.SetupMillis <= 0 {
		t.Errorf("answered setup = %v", an.SetupMillis)
	}
	if en.Status != 200 || en.Reason != "bye_caller" {
		t.Errorf("ended = %+v", en)
	}
	checkFor(t, 2*time.Second, func() error {
		if e.ActiveCalls() != 0 {
			return errorf("active %d", e.ActiveCalls())
		}
		return nil
	})
	if n := testutil.ToFloat64(e.metrics.Calls.WithLabelValues("2xx")); n != 1 {
		t.Errorf("calls_total{2xx} = %v", n)
	}
	if n := histSamples(t, e.metrics.SetupAnswer); n != 1 {
		t.Errorf("setup_answer observations = %d, want 1", n)
	}
}

func TestCallImportedNationalFormatByeFromAgent(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("us")), nil, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, _, err := carrier.call(ctx, e, "2282001235") // national format, trunk country US
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	inv := recv(t, agent.invites, "INVITE")
	recv(t, agent.acks, "ACK")
	callID := inv.CallID().Value()
	sess := agent.session(callID)
	if sess == nil {
		t.Fatal("no agent session")
	}
	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("agent BYE: %v", err)
	}
	recv(t, carrier.byes, "BYE at carrier")
	en := e.events.waitEvent(t, calls.Ended, callID)
	if en.Reason != "bye_agent" || en.Origin != "imported" || en.Carrier != "telnyx" || en.Number != numImported {
		t.Errorf("ended = %+v", en)
	}
}

func errorf(f string, a ...any) error { return &simpleErr{s: sprintf(f, a...)} }

type simpleErr struct{ s string }

func (e *simpleErr) Error() string { return e.s }

func TestForwardedDiversionAndHistoryInfo(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	carrier := newUA(t, "127.0.0.1")
	for _, tc := range []struct {
		name string
		hdrs []sip.Header
		orig string
	}{
		{"diversion", []sip.Header{
			sip.NewHeader("Diversion", "<sip:+14155550199@pbx.example>;reason=unconditional, <sip:+14155550100@carrier.example>;reason=no-answer;counter=1"),
			sip.NewHeader("Diversion", "<tel:+14155550111>;reason=user-busy"),
		}, "+14155550111"},
		{"history-info", []sip.Header{
			sip.NewHeader("History-Info", "<sip:+14155550100@carrier.example?Reason=SIP%3Bcause%3D302>;index=1"),
			sip.NewHeader("History-Info", "<sip:+12282001234@callgate.example>;index=1.1"),
		}, numBusiness},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ds, _, err := carrier.call(ctx, e, numPurchased, tc.hdrs...)
			if err != nil {
				t.Fatal(err)
			}
			_ = ds.Ack(ctx)
			inv := recv(t, agent.invites, "INVITE")
			if got := header(inv, "X-Callgate-Forwarded-From"); got != numBusiness {
				t.Errorf("X-Callgate-Forwarded-From = %q", got)
			}
			if got := header(inv, "X-Callgate-Original-Called"); got != tc.orig {
				t.Errorf("X-Callgate-Original-Called = %q, want %q", got, tc.orig)
			}
			if inv.GetHeader(tc.hdrs[0].Name()) == nil {
				t.Errorf("%s not passed to the agent", tc.hdrs[0].Name())
			}
			st := e.events.waitEvent(t, calls.Started, inv.CallID().Value())
			if st.Origin != "forwarded" {
				t.Errorf("origin = %q", st.Origin)
			}
			if st.ForwardedFrom != numBusiness {
				t.Errorf("event forwarded_from = %q, want %s", st.ForwardedFrom, numBusiness)
			}
			_ = ds.Bye(ctx)
			recv(t, agent.byes, "BYE")
		})
	}
}

func TestCancelBeforeAnswer(t *testing.T) {
	agent := newUA(t, "127.0.0.1", ringForever)
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	callID := "cancel-1"
	inv := raw.invite(e, numPurchased, callID, "")
	raw.send(inv)
	// wait for 180 at the caller
	checkFor(t, 5*time.Second, func() error {
		if m := raw.read(time.Second); strings.HasPrefix(m, "SIP/2.0 180") {
			return nil
		}
		return errorf("no 180")
	})
	fwd := recv(t, agent.invites, "INVITE")
	raw.send(cancelFor(inv))
	var got200, got487 bool
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && !(got200 && got487) {
		m := raw.read(time.Second)
		switch {
		case strings.HasPrefix(m, "SIP/2.0 200") && strings.Contains(m, "CANCEL"):
			got200 = true
		case strings.HasPrefix(m, "SIP/2.0 487"):
			got487 = true
		}
	}
	if !got200 || !got487 {
		t.Fatalf("caller: 200 to CANCEL %v, 487 %v", got200, got487)
	}
	c := recv(t, agent.cancels, "CANCEL at agent")
	if c.CSeq().SeqNo != fwd.CSeq().SeqNo || c.CSeq().MethodName != sip.CANCEL {
		t.Errorf("CANCEL CSeq %v, INVITE CSeq %v", c.CSeq(), fwd.CSeq())
	}
	cb, _ := c.Via().Params.Get("branch")
	ib, _ := fwd.Via().Params.Get("branch")
	if cb != ib {
		t.Errorf("CANCEL branch %q, forwarded INVITE branch %q", cb, ib)
	}
	en := e.events.waitEvent(t, calls.Ended, callID)
	if en.Status != 487 || en.Reason != "cancel" {
		t.Errorf("ended = %+v", en)
	}
}

func TestFailover(t *testing.T) {
	dead := newRaw(t, "127.0.0.1", &netUDPAddrLoop) // never answers
	busy503 := newUA(t, "127.0.0.1", reject(503))
	live := newUA(t, "127.0.0.1")
	table := buildTable(
		routing.Endpoint{Region: "ap", URI: "sip:bot@127.0.0.1:" + itoa(dead.port())},
		busy503.endpoint("eu"),
		live.endpoint("us"),
	)
	e := runEdge(t, table, nil, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e)
	if m := dead.read(time.Second); !strings.HasPrefix(m, "INVITE") {
		t.Errorf("dead endpoint got %q", statusLine(m))
	}
	recv(t, busy503.invites, "INVITE at 503 endpoint")
	inv := recv(t, live.invites, "INVITE at live endpoint")
	if header(inv, "X-Callgate-Region") != "us" {
		t.Errorf("region %q", header(inv, "X-Callgate-Region"))
	}
	_ = ds.Bye(ctx)
	recv(t, live.byes, "BYE")
	if n := testutil.ToFloat64(e.metrics.Failovers.WithLabelValues("ap")); n != 1 {
		t.Errorf("failovers{ap} = %v", n)
	}
}

func TestNoFailoverAfterBusy(t *testing.T) {
	for _, code := range []int{486, 603} {
		busy := newUA(t, "127.0.0.1", reject(code))
		other := newUA(t, "127.0.0.1")
		e := runEdge(t, buildTable(busy.endpoint("a"), other.endpoint("b")), nil, nil)
		carrier := newUA(t, "127.0.0.1")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, _, err := carrier.call(ctx, e, numPurchased)
		cancel()
		if got := statusOf(err); got != code {
			t.Fatalf("caller got %d (%v), want %d", got, err, code)
		}
		select {
		case <-other.invites:
			t.Fatalf("failed over after %d", code)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestRejections(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	for _, tc := range []struct {
		name, user, extra, want string
	}{
		{"unknown", "+19995550100", "", "SIP/2.0 404"},
		{"unassigned", numUnassigned, "", "SIP/2.0 480"},
		{"suspended", numSuspended, "", "SIP/2.0 480"},
		{"hops", numPurchased, "Max-Forwards: 0\r\n", "SIP/2.0 483"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := raw.invite(e, tc.user, "rej-"+tc.name, "")
			if tc.extra != "" {
				msg = strings.Replace(msg, "Max-Forwards: 70\r\n", tc.extra, 1)
			}
			raw.send(msg)
			m := raw.readFinal(3 * time.Second)
			if !strings.HasPrefix(m, tc.want) {
				t.Fatalf("got %q, want %s", statusLine(m), tc.want)
			}
		})
	}
	// no healthy endpoint: 503 with Retry-After
	down := buildTable()
	e2 := runEdge(t, down, nil, nil)
	raw2 := newRaw(t, "127.0.0.1", net_(e2))
	raw2.send(raw2.invite(e2, numPurchased, "rej-503", ""))
	m := raw2.readFinal(3 * time.Second)
	if !strings.HasPrefix(m, "SIP/2.0 503") || !strings.Contains(m, "Retry-After: 30") {
		t.Fatalf("no endpoint: got %q", m)
	}
	if n := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("unknown_number")); n != 1 {
		t.Errorf("rejected{unknown_number} = %v", n)
	}
}

func TestOptions(t *testing.T) {
	e := runEdge(t, buildTable(), nil, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:" + itoa(raw.port()) + ";branch=z9hG4bK-opt\r\n" +
		"From: <sip:carrier@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt-1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
	if m := raw.read(2 * time.Second); !strings.HasPrefix(m, "SIP/2.0 200") {
		t.Fatalf("OPTIONS: %q", statusLine(m))
	}
}

func TestUnlistedSource(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	for _, silent := range []bool{false, true} {
		e := runEdge(t, buildTable(agent.endpoint("eu")), func(c *Config) {
			c.Trunks = []Trunk{{Name: "carrier", Carrier: "twilio", CIDRs: []string{"127.0.0.5/32"}}}
			c.SilentReject = silent
		}, nil)
		raw := newRaw(t, "127.0.0.9", net_(e))
		raw.send(raw.invite(e, numPurchased, "unlisted", ""))
		m := raw.read(500 * time.Millisecond)
		if silent && m != "" {
			t.Fatalf("silent_reject: got %q", statusLine(m))
		}
		if !silent && !strings.HasPrefix(m, "SIP/2.0 403") {
			t.Fatalf("got %q, want 403", statusLine(m))
		}
		select {
		case <-agent.invites:
			t.Fatal("unlisted source reached the agent")
		default:
		}
		if n := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("unknown_source")); n != 1 {
			t.Errorf("rejected{unknown_source} = %v", n)
		}
	}
}

func TestLargeInvite(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	extra := ""
	for i := 0; i < 12; i++ {
		extra += "X-Carrier-Info-" + itoa(i) + ": " + strings.Repeat("abcdefgh", 16) + "\r\n"
	}
	msg := raw.invite(e, numPurchased, "large-1", extra)
	if len(msg) < 2000 {
		t.Fatalf("test INVITE is only %d bytes", len(msg))
	}
	raw.send(msg)
	m := raw.readFinal(5 * time.Second)
	if !strings.HasPrefix(m, "SIP/2.0 200") {
		t.Fatalf("large INVITE (%d bytes): got %q", len(msg), statusLine(m))
	}
	inv := recv(t, agent.invites, "large INVITE")
	if inv.GetHeader("X-Carrier-Info-11") == nil {
		t.Error("headers lost")
	}
}

func TestReInviteAndUpdateInDialog(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e)
	recv(t, agent.invites, "INVITE")
	re := sip.NewRequest(sip.INVITE, ds.InviteResponse.Contact().Address)
	re.SetBody([]byte(testSDP))
	re.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res, err := ds.Do(ctx, re)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("re-INVITE: %v %v", res, err)
	}
	reinv := recv(t, agent.invites, "re-INVITE at agent")
	if tag, _ := reinv.To().Params.Get("tag"); tag == "" {
		t.Error("re-INVITE without To tag")
	}
	ack := sip.NewRequest(sip.ACK, ds.InviteResponse.Contact().Address)
	if err := ds.WriteRequest(ack); err != nil {
		t.Fatal(err)
	}
	up := sip.NewRequest(sip.UPDATE, ds.InviteResponse.Contact().Address)
	res, err = ds.Do(ctx, up)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("UPDATE: %v %v", res, err)
	}
	recv(t, agent.others, "UPDATE at agent")
	_ = ds.Bye(ctx)
	recv(t, agent.byes, "BYE")
}
