package placer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
	"github.com/callgate/callgate/routing"
)

const cutReason = "credits_exhausted"

// twilioSetup is a placer whose workspace's number is on the Twilio fake
// (real twilio-go client), its callbacks served at the public URL.
func twilioSetup(t *testing.T) (*twiliofake.Server, *Placer, *events, *meter, *limiter, func(*Placer), Deps) {
	t.Helper()
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+12125550100", Voice: true}}})
	tc, err := twilio.New(twilio.Config{AccountSID: fake.AccountSID(), AuthToken: fake.AuthToken(), APIBase: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	srv, _, set := callbackServer(t)
	ev, m, l := &events{}, &meter{}, &limiter{}
	tab := table("twilio", "int_tw", agentURI, routing.Integration{ID: "int_tw", Workspace: ws, Carrier: "twilio", AccountID: fake.AccountSID(), AuthToken: fake.AuthToken()})
	d := Deps{Table: tab, Events: ev, Usage: m, Limits: l, Carriers: adapters{ws + "/int_tw": carrier.Instrument(tc, carrier.NewMetrics(nil))},
		Metrics: NewMetrics(nil, nil)}
	p := New(Config{PublicURL: srv.URL}, d)
	set(p)
	return fake, p, ev, m, l, set, d
}

// TestEndCallHangsUpAnsweredTwilioCall: the usage meter's EndCall on an
// answered Twilio call updates it to Status=completed at Twilio; the call
// ends with credits_exhausted, metered once: Twilio's completed callback
// that follows charges nothing more.
func TestEndCallHangsUpAnsweredTwilioCall(t *testing.T) {
	fake, p, ev, m, l, _, _ := twilioSetup(t)
	ctx := context.Background()
	c, err := p.Place(ctx, ws, Request{From: "+12125550100", To: "+442079460123", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	sid := fake.Calls()[0].SID
	if code, err := fake.Progress(ctx, sid, "in-progress", 0); err != nil || code != 204 {
		t.Fatalf("answered callback: %d %v", code, err)
	}
	if !p.EndCall(c.ID, cutReason) {
		t.Fatal("EndCall of an answered Twilio call: false")
	}
	if fc := fake.Calls()[0]; !slices.Equal(fc.Updates, []string{"completed"}) || fc.Status != "completed" {
		t.Fatalf("fake call after EndCall: updates %v status %s", fc.Updates, fc.Status)
	}
	if e := ev.last(c.ID); e.Kind != calls.Ended || e.Reason != cutReason || e.Carrier != "twilio" || e.Direction != calls.Outbound {
		t.Fatalf("ended event %+v", e)
	}
	// Twilio then reports the completed call (and retries).
	for i := 0; i < 2; i++ {
		if code, err := fake.Progress(ctx, sid, "completed", 42*time.Second); err != nil || code != 204 {
			t.Fatalf("completed callback: %d %v", code, err)
		}
	}
	if _, ended := m.state(c.ID); ended != 1 || l.n() != 0 || !slices.Equal(ev.kinds(c.ID), []string{calls.Started, calls.Answered, calls.Ended}) {
		t.Fatalf("ended %d active %d events %v", ended, l.n(), ev.kinds(c.ID))
	}
	if _, kept := p.live.Load(c.ID); kept {
		t.Fatal("the ended call is still tracked")
	}
	if p.EndCall(c.ID, cutReason) || len(fake.Calls()[0].Updates) != 1 {
		t.Fatalf("EndCall of an ended call: true or another update %v", fake.Calls()[0].Updates)
	}
}

// TestEndCallTwilioRefusedLeavesTheCallRunning: when Twilio fails the
// update, EndCall is false and nothing is ended (the call still runs and
// is metered); a later EndCall ends it.
func TestEndCallTwilioRefusedLeavesTheCallRunning(t *testing.T) {
	fake, p, ev, m, _, _, _ := twilioSetup(t)
	ctx := context.Background()
	c, err := p.Place(ctx, ws, Request{From: "+12125550100", To: "+442079460123", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	sid := fake.Calls()[0].SID
	if code, err := fake.Progress(ctx, sid, "in-progress", 0); err != nil || code != 204 {
		t.Fatalf("answered callback: %d %v", code, err)
	}
	fake.FailNext(twiliofake.Failure{Method: "POST", PathContains: "/Calls/" + sid, Status: 500})
	if p.EndCall(c.ID, cutReason) {
		t.Fatal("EndCall true although Twilio answered 500")
	}
	if _, ended := m.state(c.ID); ended != 0 || fake.Calls()[0].Status != "in-progress" || len(ev.kinds(c.ID)) != 2 {
		t.Fatalf("after a refused EndCall: ended %d status %s events %v", ended, fake.Calls()[0].Status, ev.kinds(c.ID))
	}
	if !p.EndCall(c.ID, cutReason) || fake.Calls()[0].Status != "completed" || ev.last(c.ID).Reason != cutReason {
		t.Fatalf("retried EndCall: status %s event %+v", fake.Calls()[0].Status, ev.last(c.ID))
	}
	if _, ended := m.state(c.ID); ended != 1 {
		t.Fatalf("ended %d", ended)
	}
	hs := p.d.Metrics.Hangups
	if f, e := testutil.ToFloat64(hs.WithLabelValues("twilio", "failed")), testutil.ToFloat64(hs.WithLabelValues("twilio", "ended")); f != 1 || e != 1 {
		t.Fatalf("callgate_placer_hangups_total failed %v ended %v", f, e)
	}
}

// TestEndCallOnTheNodeThatGotTheAnsweredCallback: a node that did not
// place the call but received Twilio's answered callback (the call's sid
// is in it) can end it.
func TestEndCallOnTheNodeThatGotTheAnsweredCallback(t *testing.T) {
	fake, p, _, _, _, set, d := twilioSetup(t)
	ctx := context.Background()
	c, err := p.Place(ctx, ws, Request{From: "+12125550100", To: "+442079460123", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	ev2, m2 := &events{}, &meter{}
	d.Events, d.Usage = ev2, m2
	p2 := New(Config{PublicURL: p.cfg.PublicURL}, d)
	if p2.EndCall(c.ID, cutReason) {
		t.Fatal("a node that never saw the call ended it")
	}
	set(p2) // the callbacks now reach the other node
	sid := fake.Calls()[0].SID
	if code, err := fake.Progress(ctx, sid, "in-progress", 0); err != nil || code != 204 {
		t.Fatalf("answered callback: %d %v", code, err)
	}
	if !p2.EndCall(c.ID, cutReason) || !slices.Equal(fake.Calls()[0].Updates, []string{"completed"}) || ev2.last(c.ID).Reason != cutReason {
		t.Fatalf("EndCall on the answering node: updates %v event %+v", fake.Calls()[0].Updates, ev2.last(c.ID))
	}
	if _, ended := m2.state(c.ID); ended != 1 {
		t.Fatalf("ended %d", ended)
	}
}

// TestEndCallHangsUpAnsweredTelnyxCall: EndCall on an answered Telnyx
// call is a Call Control hangup of its call_control_id; the ended event
// has credits_exhausted and the call.hangup webhook that follows charges
// nothing more.
func TestEndCallHangsUpAnsweredTelnyxCall(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	fake := telnyxfake.MustNew(t, telnyxfake.Options{})
	fake.SetWebhookKey(priv)
	tc, err := telnyx.New(telnyx.Config{APIKey: fake.APIKey(), APIBase: fake.URL(), ConnectionID: "1684641123236054244"})
	if err != nil {
		t.Fatal(err)
	}
	srv, _, set := callbackServer(t)
	ev, m, l := &events{}, &meter{}, &limiter{}
	tab := table("telnyx", "int_tx", agentURI, routing.Integration{ID: "int_tx", Workspace: ws, Carrier: "telnyx", PublicKey: base64.StdEncoding.EncodeToString(pub)})
	p := New(Config{PublicURL: srv.URL}, Deps{Table: tab, Events: ev, Usage: m, Limits: l, Carriers: adapters{ws + "/int_tx": tc}})
	set(p)
	t.Cleanup(p.Close)
	c, err := p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+442079460123", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	id := fake.Dialled()[0].CallControlID
	if code, err := fake.Answer(context.Background(), id); err != nil || code != 200 {
		t.Fatalf("answered webhook: %d %v", code, err)
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if tr := fake.Dialled()[0].Transfers; len(tr) != 1 {
			return fmt.Errorf("transfers %v", tr)
		}
		return nil
	})
	if !p.EndCall(c.ID, cutReason) {
		t.Fatal("EndCall of an answered Telnyx call: false")
	}
	if d := fake.Dialled()[0]; !d.HungUp {
		t.Fatalf("fake recorded no hangup of %s: %+v", id, d)
	}
	// The fake then sends call.hangup, as Telnyx does; a retry of it is
	// delivered here and must charge nothing more.
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := fake.Dialled()[0].State; s != "hangup" {
			return errors.New("no call.hangup yet: " + s)
		}
		return nil
	})
	if code, err := fake.Hangup(context.Background(), id); err != nil || code != 200 {
		t.Fatalf("call.hangup webhook: %d %v", code, err)
	}
	if e := ev.last(c.ID); e.Kind != calls.Ended || e.Reason != cutReason || e.Carrier != "telnyx" {
		t.Fatalf("ended event %+v", e)
	}
	if _, ended := m.state(c.ID); ended != 1 || l.n() != 0 || !slices.Equal(ev.kinds(c.ID), []string{calls.Started, calls.Answered, calls.Ended}) {
		t.Fatalf("ended %d active %d events %v", ended, l.n(), ev.kinds(c.ID))
	}
	if _, kept := p.live.Load(c.ID); kept {
		t.Fatal("the ended call is still tracked")
	}
	if p.EndCall(c.ID, cutReason) {
		t.Fatal("EndCall of an ended call: true")
	}
}

// TestEndCallUnknownIsFalse: an id this placer never placed (or a
// sandbox-less placer) ends nothing.
func TestEndCallUnknownIsFalse(t *testing.T) {
	fake, p, ev, _, _, _, _ := twilioSetup(t)
	if p.EndCall("call_0123456789abcdef01234567", cutReason) {
		t.Fatal("EndCall of an unknown id: true")
	}
	if len(fake.Calls()) != 0 || len(ev.ev) != 0 {
		t.Fatalf("calls %v events %v", fake.Calls(), ev.ev)
	}
}

// TestEndCallReasonWhenTheCallbackWinsTheRace: Twilio's completed
// callback can arrive while the update request is still in flight; the
// call still ends (once) with EndCall's reason, not "completed".
func TestEndCallReasonWhenTheCallbackWinsTheRace(t *testing.T) {
	fake, p, ev, m, _, _, _ := twilioSetup(t)
	ctx := context.Background()
	c, err := p.Place(ctx, ws, Request{From: "+12125550100", To: "+442079460123", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	sid := fake.Calls()[0].SID
	if code, err := fake.Progress(ctx, sid, "in-progress", 0); err != nil || code != 204 {
		t.Fatalf("answered callback: %d %v", code, err)
	}
	// Twilio holds the update's answer while it reports the hangup.
	fake.FailNext(twiliofake.Failure{Method: "POST", PathContains: "/Calls/" + sid, Delay: 5 * time.Second})
	done := make(chan bool, 1)
	go func() { done <- p.EndCall(c.ID, cutReason) }()
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if _, ok := p.cutReason(c.ID); !ok {
			return errors.New("EndCall not in flight yet")
		}
		return nil
	})
	if code, err := fake.Progress(ctx, sid, "completed", 30*time.Second); err != nil || code != 204 {
		t.Fatalf("completed callback: %d %v", code, err)
	}
	select {
	case <-done:
		t.Fatal("the update answered before the callback was handled: the race was not exercised")
	default:
	}
	if e := ev.last(c.ID); e.Kind != calls.Ended || e.Reason != cutReason {
		t.Fatalf("ended event %+v", e)
	}
	if !<-done {
		t.Fatal("EndCall false")
	}
	if _, ended := m.state(c.ID); ended != 1 || !slices.Equal(ev.kinds(c.ID), []string{calls.Started, calls.Answered, calls.Ended}) {
		t.Fatalf("ended %d events %v", ended, ev.kinds(c.ID))
	}
}
