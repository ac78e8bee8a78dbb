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

// TestTransferTwilioCallRedirectsToDial: an answered Twilio call placed
// here is transferred by the API's command: Twilio (the fake, as its
// published Calls API) gets an update with TwiML <Dial> to the number,
// with the call's number as caller ID. A premium-rate target is refused
// (422, no update), a call not answered is 409, another workspace's
// command is not this call's, a target that is not a number is 400.
func TestTransferTwilioCallRedirectsToDial(t *testing.T) {
	fake, p, ev, _, _, _, _ := twilioSetup(t)
	ctx := context.Background()
	c, err := p.Place(ctx, ws, Request{From: "+12125550100", To: "+12125550199", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cmd := calls.Command{Op: calls.OpTransfer, CallID: c.ID, Workspace: ws, To: "tel:+12125550143", Mode: "blind"}
	if r, ok := p.controlTransfer(ctx, cmd); !ok || r.Status != 409 {
		t.Fatalf("ringing call: %+v %v, want 409", r, ok)
	}
	sid := fake.Calls()[0].SID
	if code, err := fake.Progress(ctx, sid, "in-progress", 0); err != nil || code != 204 {
		t.Fatalf("answered callback: %d %v", code, err)
	}
	other := cmd
	other.Workspace = "someone-else"
	if _, ok := p.controlTransfer(ctx, other); ok {
		t.Fatal("another workspace's command answered for this call")
	}
	bad := cmd
	bad.To = "sip:human@pbx.example.com"
	if r, _ := p.controlTransfer(ctx, bad); r.Status != 400 || !strings.HasPrefix(r.Error, "to: ") {
		t.Fatalf("SIP target: %+v", r)
	}
	premium := cmd
	premium.To = "+19005550100"
	if r, _ := p.controlTransfer(ctx, premium); r.Status != 422 {
		t.Fatalf("premium: %+v", r)
	}
	if e := ev.last(c.ID); e.Kind != calls.TransferKind || e.Transfer == nil || e.Transfer.State != calls.TransferRefused {
		t.Fatalf("refused transfer event %+v", e)
	}
	if n := len(fake.Calls()[0].TwimlUpdates); n != 0 {
		t.Fatalf("a refused transfer reached Twilio: %v", fake.Calls()[0].TwimlUpdates)
	}
	r, ok := p.controlTransfer(ctx, cmd)
	if !ok || r.Status != 202 || r.Detail["to"] != "tel:+12125550143" {
		t.Fatalf("transfer: %+v %v", r, ok)
	}
	tw := fake.Calls()[0].TwimlUpdates
	want := `<Response><Dial callerId="+12125550100"><Number>+12125550143</Number></Dial></Response>`
	if len(tw) != 1 || !strings.HasSuffix(tw[0], want) {
		t.Fatalf("TwiML given to Twilio %q, want … %s", tw, want)
	}
	if e := ev.last(c.ID); e.Transfer == nil || e.Transfer.Mode != "carrier_verb" || e.Transfer.State != calls.TransferTrying || e.Transfer.Carrier != "twilio" {
		t.Fatalf("transfer event %+v", e)
	}
}

// TestTransferTelnyxCallUsesCallControl: an answered Telnyx call placed
// here (already transferred to its agent) is transferred by the API's
// command with Call Control's transfer action to the number, with the
// call's number as caller ID (the fake serves the action as Telnyx does).
func TestTransferTelnyxCallUsesCallControl(t *testing.T) {
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
	ctx := context.Background()
	c, err := p.Place(ctx, ws, Request{From: "+12125550100", To: "+12125550199", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	id := fake.Dialled()[0].CallControlID
	if code, err := fake.Answer(ctx, id); err != nil || code != 200 {
		t.Fatalf("answered webhook: %d %v", code, err)
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if tr := fake.Dialled()[0].Transfers; len(tr) != 1 { // to the agent
			return fmt.Errorf("transfers %v", tr)
		}
		return nil
	})
	r, ok := p.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: c.ID, Workspace: ws, To: "+12125550143", Mode: "blind"})
	if !ok || r.Status != 202 {
		t.Fatalf("transfer: %+v %v", r, ok)
	}
	tr := fake.Dialled()[0].Transfers
	if len(tr) != 2 || tr[1].To != "+12125550143" || tr[1].From != "+12125550100" {
		t.Fatalf("Telnyx transfers %+v", tr)
	}
	if e := ev.last(c.ID); e.Transfer == nil || e.Transfer.Mode != "carrier_verb" || e.Transfer.Carrier != "telnyx" {
		t.Fatalf("transfer event %+v", e)
	}
}
