package sip

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/routing"
)

// headersTable: numPurchased of workspace w → agent a1 at ep; w's header
// policy is hp (nil: w has no settings in the snapshot) and its routing
// hook hk (nil: none).
func headersTable(ep routing.Endpoint, hp *routing.SIPHeaders, hk *routing.Hook) *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Endpoints: []routing.Endpoint{ep}})
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	if hp != nil || hk != nil {
		ws := routing.Workspace{ID: "w", Hook: hk, WebhookSecret: hookSecret}
		if hp != nil {
			ws.Headers = *hp
		}
		b.AddWorkspace(ws)
	}
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

func dropped(e *testEdge, reason string) float64 {
	return testutil.ToFloat64(e.xm.HeadersDropped.WithLabelValues(reason))
}

func hasHeader(hs []sip.Header, name string) bool {
	for _, h := range hs {
		if strings.EqualFold(h.Name(), name) {
			return true
		}
	}
	return false
}

// TestHeadersPassBothWays: with the default allow-list (X-*, User-to-User)
// custom headers pass caller → agent on the INVITE, BYE and REFER and
// agent → caller on the 200; other non-standard headers are removed on
// the way; standard ones (Remote-Party-ID, Session-Expires) are untouched.
func TestHeadersPassBothWays(t *testing.T) {
	a := newTimerAgent(t, sip.NewHeader("X-Agent-Session", "s-77"), sip.NewHeader("Agent-Internal", "debug=1"))
	e := runEdge(t, headersTable(endpointAt(a.host, a.port), nil, nil), nil, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, _, err := carrier.call(ctx, e, numPurchased, sip.NewHeader("X-Customer", "42"),
		sip.NewHeader("User-to-User", "56a390f3d2b7310023a2;encoding=hex"), sip.NewHeader("Foo-Secret", "s3cr3t"),
		sip.NewHeader("Remote-Party-ID", "<sip:+15005550006@127.0.0.1>;party=calling"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	inv := recv(t, a.invite, "INVITE at the agent")
	if header(inv, "X-Customer") != "42" || header(inv, "User-to-User") != "56a390f3d2b7310023a2;encoding=hex" ||
		header(inv, "Remote-Party-ID") == "" {
		t.Errorf("INVITE at the agent lost headers:\n%s", inv.String())
	}
	if hasHeader(inv.Headers(), "Foo-Secret") {
		t.Error("Foo-Secret (not allowed) reached the agent")
	}
	if header2(ds.InviteResponse, "X-Agent-Session") != "s-77" {
		t.Errorf("200 at the caller lost X-Agent-Session:\n%s", ds.InviteResponse.String())
	}
	if hasHeader(ds.InviteResponse.Headers(), "Agent-Internal") {
		t.Error("Agent-Internal (not allowed) reached the caller")
	}

	ref := sip.NewRequest(sip.REFER, ds.InviteResponse.Contact().Address)
	ref.AppendHeader(sip.NewHeader("Refer-To", "<sip:+15005550007@127.0.0.1>"))
	ref.AppendHeader(sip.NewHeader("X-Transfer-Note", "vip"))
	ref.AppendHeader(sip.NewHeader("Foo-Secret", "s3cr3t"))
	if res, err := ds.Do(ctx, ref); err != nil || res.StatusCode != 202 {
		t.Fatalf("REFER: %v %v", res, err)
	}
	got := recv(t, a.inDlg, "REFER at the agent")
	if got.Method != sip.REFER || header(got, "X-Transfer-Note") != "vip" || header(got, "Refer-To") == "" ||
		hasHeader(got.Headers(), "Foo-Secret") {
		t.Errorf("REFER at the agent:\n%s", got.String())
	}

	bye := sip.NewRequest(sip.BYE, ds.InviteResponse.Contact().Address)
	bye.AppendHeader(sip.NewHeader("X-Hangup-Cause", "done"))
	bye.AppendHeader(sip.NewHeader("Foo-Secret", "s3cr3t"))
	if err := ds.WriteBye(ctx, bye); err != nil {
		t.Fatal(err)
	}
	gb := recv(t, a.byes, "BYE at the agent")
	if header(gb, "X-Hangup-Cause") != "done" || hasHeader(gb.Headers(), "Foo-Secret") {
		t.Errorf("BYE at the agent:\n%s", gb.String())
	}
	if n := dropped(e, "not_allowed"); n != 4 {
		t.Errorf("headers_dropped_total{reason=not_allowed} = %v, want 4 (INVITE, 200, REFER, BYE)", n)
	}
	ev := e.events.waitEvent(t, calls.Started, inv.CallID().Value())
	if ev.Headers != nil {
		t.Errorf("started event keeps %v: the workspace keeps none", ev.Headers)
	}
}

// TestHeadersWorkspaceAllowListAndKeep: a workspace's own allow-list
// replaces the default (X-Other and User-to-User no longer pass), and the
// headers it keeps are on the started and ended events.
func TestHeadersWorkspaceAllowListAndKeep(t *testing.T) {
	a := newTimerAgent(t, sip.NewHeader("X-Outcome", "sale"), sip.NewHeader("X-Noise", "n"))
	hp := &routing.SIPHeaders{Allow: []string{"X-Customer", "X-Outcome", "X-Hangup-*"}, Keep: []string{"x-customer", "X-Outcome", "X-Hangup-*"}}
	e := runEdge(t, headersTable(endpointAt(a.host, a.port), hp, nil), nil, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, _, err := carrier.call(ctx, e, numPurchased, sip.NewHeader("X-Customer", "42"), sip.NewHeader("X-Other", "1"),
		sip.NewHeader("User-to-User", "00"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	inv := recv(t, a.invite, "INVITE")
	if header(inv, "X-Customer") != "42" || hasHeader(inv.Headers(), "X-Other") || hasHeader(inv.Headers(), "User-to-User") {
		t.Errorf("INVITE at the agent:\n%s", inv.String())
	}
	if header2(ds.InviteResponse, "X-Outcome") != "sale" || hasHeader(ds.InviteResponse.Headers(), "X-Noise") {
		t.Errorf("200 at the caller:\n%s", ds.InviteResponse.String())
	}
	callID := inv.CallID().Value()
	st := e.events.waitEvent(t, calls.Started, callID)
	if !reflect.DeepEqual(st.Headers, map[string]string{"X-Customer": "42"}) {
		t.Errorf("started event headers %v, want X-Customer only", st.Headers)
	}
	bye := sip.NewRequest(sip.BYE, ds.InviteResponse.Contact().Address)
	bye.AppendHeader(sip.NewHeader("X-Hangup-Cause", "caller"))
	_ = ds.WriteBye(ctx, bye)
	recv(t, a.byes, "BYE")
	en := e.events.waitEvent(t, calls.Ended, callID)
	want := map[string]string{"X-Customer": "42", "X-Outcome": "sale", "X-Hangup-Cause": "caller"}
	if !reflect.DeepEqual(en.Headers, want) {
		t.Errorf("ended event headers %v, want %v", en.Headers, want)
	}
}

// TestHeadersSizeLimits: a custom value over 1 KiB is removed, and custom
// headers past 4 KiB in one message are removed (in order: the first
// ones that fit pass); standard headers do not count.
func TestHeadersSizeLimits(t *testing.T) {
	a := newTimerAgent(t)
	e := runEdge(t, headersTable(endpointAt(a.host, a.port), nil, nil), nil, nil)
	raw := newRaw(t, "127.0.0.1", net_(e)) // over the UDP MTU sipgo's client sends
	v := strings.Repeat("v", 1000)
	extra := "X-Big: " + strings.Repeat("b", maxCustomValue+1) + "\r\n"
	for _, n := range []string{"X-A", "X-B", "X-C", "X-D", "X-E"} { // 1003 bytes each: four fit in 4096
		extra += n + ": " + v + "\r\n"
	}
	extra += "Subject: " + strings.Repeat("s", 1500) + "\r\n"
	raw.send(raw.invite(e, numPurchased, "hdr-size", extra))
	inv := recv(t, a.invite, "INVITE")
	for _, n := range []string{"X-A", "X-B", "X-C", "X-D", "Subject"} {
		if !hasHeader(inv.Headers(), n) {
			t.Errorf("%s removed", n)
		}
	}
	for _, n := range []string{"X-Big", "X-E"} {
		if hasHeader(inv.Headers(), n) {
			t.Errorf("%s passed", n)
		}
	}
	if dropped(e, "too_long") != 1 || dropped(e, "over_total") != 1 {
		t.Errorf("dropped too_long %v over_total %v, want 1 and 1", dropped(e, "too_long"), dropped(e, "over_total"))
	}
}

// TestHookAddsHeaders: the routing hook's headers reach the agent when
// the workspace allows them (replacing the caller's of the same name),
// are dropped when it does not, and kept ones are on the ended event.
func TestHookAddsHeaders(t *testing.T) {
	a := newTimerAgent(t)
	hs := newHookServer(t, func(w http.ResponseWriter, _ *http.Request, _ hook.Request) {
		io.WriteString(w, `{"action":"route","headers":{"X-Ticket":"T-1","X-Forbidden":"no"}}`)
	})
	hp := &routing.SIPHeaders{Allow: []string{"X-Ticket", "X-Customer"}, Keep: []string{"X-Ticket"}}
	e := serveControlEdge(t, headersTable(endpointAt(a.host, a.port), hp, &routing.Hook{URL: hs.URL}), 0, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, _, err := carrier.call(ctx, e, numPurchased, sip.NewHeader("X-Ticket", "from-caller"), sip.NewHeader("X-Customer", "42"))
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	inv := recv(t, a.invite, "INVITE")
	if tk := inv.GetHeaders("X-Ticket"); len(tk) != 1 || tk[0].Value() != "T-1" {
		t.Errorf("X-Ticket at the agent %v, want the hook's T-1 once", tk)
	}
	if header(inv, "X-Customer") != "42" || hasHeader(inv.Headers(), "X-Forbidden") {
		t.Errorf("INVITE at the agent:\n%s", inv.String())
	}
	if n := dropped(e, "not_allowed"); n != 1 {
		t.Errorf("not_allowed %v, want 1 (the hook's X-Forbidden)", n)
	}
	_ = ds.Bye(ctx)
	en := e.events.waitEvent(t, calls.Ended, inv.CallID().Value())
	if en.Headers["X-Ticket"] != "T-1" {
		t.Errorf("ended event headers %v, want X-Ticket T-1", en.Headers)
	}
}

func TestIsStandardHeader(t *testing.T) {
	for n, want := range map[string]bool{"Via": true, "via": true, "RSeq": true, "RAck": true, "Session-Expires": true,
		"x": true, "Min-SE": true, "Refer-To": true, "P-Asserted-Identity": true, "Reason": true, "X-Customer": false,
		"User-to-User": false, "Foo": false, strings.Repeat("a", 40): false} {
		if isStandardHeader(n) != want {
			t.Errorf("%s: %v", n, !want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { isStandardHeader("Content-Type") }); n != 0 {
		t.Errorf("isStandardHeader allocates %v", n)
	}
}

// TestHeadersOutboundCall: an agent's outbound call is held to its
// workspace's policy too: allowed custom headers reach the carrier,
// others are removed (and the agent's credentials never leave).
func TestHeadersOutboundCall(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local")}.build(), sandboxURI(pstn), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := agent.dial(ctx, e, numSandboxOut, destUS, agentPass,
		sip.NewHeader("X-Campaign", "c1"), sip.NewHeader("Foo-Internal", "z"))
	if err != nil {
		t.Fatalf("outbound call: %v", err)
	}
	inv := recv(t, pstn.invites, "INVITE at the PSTN")
	if header(inv, "X-Campaign") != "c1" || hasHeader(inv.Headers(), "Foo-Internal") || hasHeader(inv.Headers(), "Proxy-Authorization") {
		t.Errorf("INVITE at the PSTN:\n%s", inv.String())
	}
	_ = ds.Ack(ctx)
	_ = ds.Bye(ctx)
	e.events.waitEvent(t, calls.Ended, ds.InviteRequest.CallID().Value())
}

// BenchmarkFilterHeaders: the header policy on a carrier INVITE with two
// allowed custom headers (the common case: nothing removed).
func BenchmarkFilterHeaders(b *testing.B) {
	s := &Server{xm: newCoreMetrics(nil, NewMetrics(nil))}
	msg := "INVITE sip:+12282001234@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-1\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:+15005550006@127.0.0.1>;tag=1\r\nTo: <sip:+12282001234@127.0.0.1>\r\n" +
		"Call-ID: bench\r\nCSeq: 1 INVITE\r\nContact: <sip:c@127.0.0.1:5099>\r\nUser-Agent: carrier\r\n" +
		"P-Asserted-Identity: <sip:+15005550006@127.0.0.1>\r\nX-Customer: 42\r\nX-Twilio-CallSid: CA123\r\n" +
		"Supported: timer, 100rel\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(msg))
	if err != nil {
		b.Fatal(err)
	}
	req := m.(*sip.Request)
	pol := &routing.SIPHeaders{}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.filterHeaders(req, pol)
	}
}
