package placer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
	"github.com/callgate/callgate/routing"
)

// telnyxSetup is a placer whose workspace number +12125550100 is on a
// Telnyx integration served by the fake.
func telnyxSetup(t *testing.T) (*telnyxfake.Server, *Placer, *events) {
	t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	fake := telnyxfake.MustNew(t, telnyxfake.Options{})
	fake.SetWebhookKey(priv)
	tc, err := telnyx.New(telnyx.Config{APIKey: fake.APIKey(), APIBase: fake.URL(), ConnectionID: "1684641123236054244"})
	if err != nil {
		t.Fatal(err)
	}
	srv, _, set := callbackServer(t)
	ev := &events{}
	tab := table("telnyx", "int_tx", agentURI, routing.Integration{ID: "int_tx", Workspace: ws, Carrier: "telnyx", PublicKey: base64.StdEncoding.EncodeToString(pub)})
	p := New(Config{PublicURL: srv.URL}, Deps{Table: tab, Events: ev, Usage: &meter{}, Limits: &limiter{}, Carriers: adapters{ws + "/int_tx": tc}})
	set(p)
	t.Cleanup(p.Close)
	return fake, p, ev
}

// TestDTMFToPlacedTelnyxCall: the API's digits for an answered Telnyx call
// placed here go to the callee's leg with Call Control's send_dtmf (w kept:
// Telnyx's w is the same 0.5 s pause); 409 before the answer; a Twilio call
// is 501 and Twilio gets no request.
func TestDTMFToPlacedTelnyxCall(t *testing.T) {
	fake, p, ev := telnyxSetup(t)
	ctx := context.Background()
	c, err := p.Place(ctx, ws, Request{From: "+12125550100", To: "+12125550199", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cmd := calls.Command{Op: calls.OpDTMF, CallID: c.ID, Workspace: ws, Digits: "12w34#"}
	if r, ok := p.controlDTMF(ctx, cmd); !ok || r.Status != 409 {
		t.Fatalf("ringing call: %+v %v, want 409", r, ok)
	}
	id := fake.Dialled()[0].CallControlID
	if code, err := fake.Answer(ctx, id); err != nil || code != 200 {
		t.Fatalf("answered webhook: %d %v", code, err)
	}
	other := cmd
	other.Workspace = "globex"
	if _, ok := p.controlDTMF(ctx, other); ok {
		t.Fatal("another workspace's command answered for this call")
	}
	r, ok := p.controlDTMF(ctx, cmd)
	if !ok || r.Status != 202 || r.Detail["via"] != "send_dtmf" {
		t.Fatalf("digits: %+v %v", r, ok)
	}
	if d := fake.Dialled()[0].DTMF; len(d) != 1 || d[0].Digits != "12w34#" {
		t.Fatalf("send_dtmf %+v, want 12w34# on the callee's leg", d)
	}
	if e := ev.last(c.ID); e.Kind != calls.DTMF || e.Digits != "1234#" || e.DTMFVia != "send_dtmf" || e.Direction != calls.Outbound {
		t.Fatalf("dtmf event %+v", e)
	}

	tfake, tp, _, _, _, _, _ := twilioSetup(t)
	tcall, err := tp.Place(ctx, ws, Request{From: "+12125550100", To: "+12125550199", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := tfake.Progress(ctx, tfake.Calls()[0].SID, "in-progress", 0); err != nil || code != 204 {
		t.Fatalf("answered callback: %d %v", code, err)
	}
	if r, ok := tp.controlDTMF(ctx, calls.Command{Op: calls.OpDTMF, CallID: tcall.ID, Workspace: ws, Digits: "1"}); !ok || r.Status != 501 {
		t.Fatalf("Twilio digits: %+v %v, want 501", r, ok)
	}
	if u := tfake.Calls()[0].Updates; len(u) != 0 {
		t.Fatalf("Twilio got updates %v", u)
	}
}

// TestWebhookCallRefusalsAndCarrierErrors: what the history says decides
// before the carrier is asked (ended, unanswered, TeXML, another
// workspace, a number without integration); the carrier's refusal is a
// failed transfer (502, or 409 when the call is gone) and the caller stays
// with the agent; two transfers at once on this node reach the carrier once.
func TestWebhookCallRefusalsAndCarrierErrors(t *testing.T) {
	fake, p, ev := telnyxSetup(t)
	ctx := context.Background()
	in, _, err := fake.Incoming(ctx, "+15005550006", "+12125550100", "conn", "")
	if err != nil {
		t.Fatal(err)
	}
	if code, err := fake.Answer(ctx, in.CallControlID); err != nil || code != 0 {
		t.Fatalf("answer: %d %v", code, err)
	}
	live := WebhookCall{ID: in.CallSessionID, Workspace: ws, Source: "telnyx_webhook", Number: "+12125550100", From: "+15005550006",
		To: "+12125550100", Agent: "bot", CarrierCallID: in.CallControlID, Answered: true}
	xfer := calls.Command{Op: calls.OpTransfer, CallID: live.ID, Workspace: ws, To: "+12125550143"}

	cases := []struct {
		name   string
		wc     func(WebhookCall) WebhookCall
		cmd    calls.Command
		status int
		why    string
	}{
		{"ended", func(w WebhookCall) WebhookCall { w.Ended = true; return w }, xfer, 409, "ended"},
		{"unanswered", func(w WebhookCall) WebhookCall { w.Answered = false; return w }, xfer, 409, "not answered"},
		{"TeXML", func(w WebhookCall) WebhookCall { w.CarrierCallID = ""; return w }, xfer, 501, "TeXML"},
		{"another workspace", func(w WebhookCall) WebhookCall { w.Workspace = "globex"; return w }, xfer, 404, ""},
		{"a SIP call", func(w WebhookCall) WebhookCall { w.Source = "sip"; return w }, xfer, 404, ""},
		{"no integration", func(w WebhookCall) WebhookCall { w.Workspace, w.Number = "globex", "+12125550199"; return w },
			calls.Command{Op: calls.OpTransfer, CallID: live.ID, Workspace: "globex", To: "+12125550143"}, 501, "integration"},
		{"bridge", func(w WebhookCall) WebhookCall { return w },
			calls.Command{Op: calls.OpTransfer, CallID: live.ID, Workspace: ws, To: "+12125550143", Mode: "bridge"}, 501, "bridge"},
		{"agent target", func(w WebhookCall) WebhookCall { return w },
			calls.Command{Op: calls.OpTransfer, CallID: live.ID, Workspace: ws, To: "agent:bot"}, 400, "to: "},
		{"country not allowed", func(w WebhookCall) WebhookCall { return w },
			calls.Command{Op: calls.OpTransfer, CallID: live.ID, Workspace: ws, To: "+33142685300"}, 422, ""},
		{"bad digits", func(w WebhookCall) WebhookCall { return w },
			calls.Command{Op: calls.OpDTMF, CallID: live.ID, Workspace: ws, Digits: "12x"}, 400, "digits"},
		{"Twilio digits", func(w WebhookCall) WebhookCall { w.Source = "twilio_webhook"; return w },
			calls.Command{Op: calls.OpDTMF, CallID: live.ID, Workspace: ws, Digits: "1"}, 501, "Twilio"},
	}
	for _, tc := range cases {
		r := p.ControlWebhookCall(ctx, tc.wc(live), tc.cmd)
		if r.Status != tc.status || !strings.Contains(r.Error, tc.why) {
			t.Errorf("%s: %+v, want %d %q", tc.name, r, tc.status, tc.why)
		}
	}
	if c := fake.Dialled()[0]; len(c.Transfers) != 0 || len(c.DTMF) != 0 {
		t.Fatalf("refused commands reached Telnyx: %+v", c)
	}

	fake.FailNext(telnyxfake.Failure{PathContains: "/actions/transfer", Status: 503})
	if r := p.ControlWebhookCall(ctx, live, xfer); r.Status != 502 || r.Detail["state"] != calls.TransferFailed {
		t.Fatalf("Telnyx 503: %+v, want 502 failed", r)
	}
	if e := ev.last(live.ID); e.Kind != calls.TransferKind || e.Transfer.State != calls.TransferFailed || e.Source != "telnyx_webhook" {
		t.Fatalf("failed transfer event %+v", e)
	}
	gone := live
	gone.CarrierCallID = "v3:unknown"
	if r := p.ControlWebhookCall(ctx, gone, xfer); r.Status != 409 {
		t.Fatalf("a call Telnyx does not know: %+v, want 409", r)
	}

	// A second request while the first is at the carrier: 409, and one
	// transfer reaches Telnyx. (The second is refused before any network
	// request, so the first's 3 s at the fake is a wide margin.)
	fake.FailNext(telnyxfake.Failure{PathContains: "/actions/transfer", Delay: 3 * time.Second})
	first := make(chan int, 1)
	go func() { first <- p.ControlWebhookCall(ctx, live, xfer).Status }()
	testwait.CheckFor(t, 5*time.Second, time.Millisecond, func() error {
		if _, busy := p.webhookXfers.Load(live.ID); !busy {
			return fmt.Errorf("the first transfer is not in flight yet")
		}
		return nil
	})
	if r := p.ControlWebhookCall(ctx, live, xfer); r.Status != 409 || !strings.Contains(r.Error, "still running") {
		t.Fatalf("second transfer while the first runs: %+v, want 409", r)
	}
	if s := <-first; s != 202 {
		t.Fatalf("first transfer: %d, want 202", s)
	}
	testwait.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if n := len(fake.Dialled()[0].Transfers); n != 1 {
			return fmt.Errorf("%d transfers reached Telnyx", n)
		}
		return nil
	})
}
