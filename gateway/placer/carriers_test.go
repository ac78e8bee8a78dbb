package placer

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
	"github.com/callgate/callgate/routing"
)

// adapters are the real carrier adapters, pointed at the fakes.
type adapters map[string]carrier.Carrier

func (a adapters) Carrier(ctx context.Context, w, id string) (carrier.Carrier, error) {
	c, ok := a[w+"/"+id]
	if !ok {
		return nil, errors.New("not found")
	}
	return c, nil
}

// callbackServer serves the placer's callbacks; its URL is the public URL.
func callbackServer(t *testing.T) (*httptest.Server, *Placer, func(*Placer)) {
	var p *Placer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.Handler().ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	return srv, p, func(x *Placer) { p = x }
}

const agentURI = "sip:bot@127.0.0.1:5999;transport=udp"

// TestTwilioCallDialsTheAgentWithTwiMLAndMetersFromStatusCallbacks:
// twilio-go CreateCall against the fake; the TwiML dials the agent's SIP
// URI with X-Callgate headers; Twilio's signed status callbacks drive the
// answered/ended events, metering and limits; an unsigned one is refused.
func TestTwilioCallDialsTheAgentWithTwiMLAndMetersFromStatusCallbacks(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+12125550100", Voice: true}}})
	tc, err := twilio.New(twilio.Config{AccountSID: fake.AccountSID(), AuthToken: fake.AuthToken(), APIBase: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	srv, _, set := callbackServer(t)
	ev, m, l := &events{}, &meter{}, &limiter{}
	tab := table("twilio", "int_tw", agentURI, routing.Integration{ID: "int_tw", Workspace: ws, Carrier: "twilio", AccountID: fake.AccountSID(), AuthToken: fake.AuthToken()})
	p := New(Config{PublicURL: srv.URL}, Deps{Table: tab, Events: ev, Usage: m, Limits: l, Carriers: adapters{ws + "/int_tw": carrier.Instrument(tc, carrier.NewMetrics(nil))}})
	set(p)
	c, err := p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+442079460123", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Carrier != "twilio" || c.Status != "queued" {
		t.Fatalf("call %+v", c)
	}
	fc := fake.Calls()
	if len(fc) != 1 || fc[0].From != "+12125550100" || fc[0].To != "+442079460123" {
		t.Fatalf("fake calls %+v", fc)
	}
	tw := fc[0].Twiml
	for _, want := range []string{"<Dial", "<Sip>sip:bot@127.0.0.1:5999;transport=udp?X-Callgate-Number=%2B12125550100&amp;X-Callgate-Agent=bot", "X-Callgate-Call-Id=" + c.ID} {
		if !strings.Contains(tw, want) {
			t.Fatalf("twiml %s lacks %s", tw, want)
		}
	}
	if !strings.HasPrefix(fc[0].StatusCallback, srv.URL+"/webhooks/calls/twilio/status?") || !slices.Equal(fc[0].StatusCallbackEvents, []string{"answered", "completed"}) {
		t.Fatalf("status callback %q %v", fc[0].StatusCallback, fc[0].StatusCallbackEvents)
	}
	// A forged callback (no signature) changes nothing.
	resp, err := http.PostForm(fc[0].StatusCallback, url.Values{"CallStatus": {"completed"}, "CallSid": {fc[0].SID}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || len(ev.kinds(c.ID)) != 1 {
		t.Fatalf("forged callback: %d, events %v", resp.StatusCode, ev.kinds(c.ID))
	}
	ctx := context.Background()
	if code, err := fake.Progress(ctx, fc[0].SID, "in-progress", 0); err != nil || code != 204 {
		t.Fatalf("answered callback: %d %v", code, err)
	}
	if answered, _ := m.state(c.ID); !answered || !slices.Equal(ev.kinds(c.ID), []string{calls.Started, calls.Answered}) {
		t.Fatalf("after answered: meter %v events %v", answered, ev.kinds(c.ID))
	}
	for i := 0; i < 2; i++ { // Twilio retries: counted once
		if code, err := fake.Progress(ctx, fc[0].SID, "completed", 65*time.Second); err != nil || code != 204 {
			t.Fatalf("completed callback: %d %v", code, err)
		}
	}
	if _, ended := m.state(c.ID); ended != 1 || l.n() != 0 || !slices.Equal(ev.kinds(c.ID), []string{calls.Started, calls.Answered, calls.Ended}) {
		t.Fatalf("after completed: ended %d active %d events %v", ended, l.n(), ev.kinds(c.ID))
	}
	if e := ev.last(c.ID); e.Direction != calls.Outbound || e.Source != "api" || e.Carrier != "twilio" || e.Reason != "completed" {
		t.Fatalf("ended %+v", e)
	}
}

// TestTwilioRefusalIsA422AndReleasesTheSlot: Twilio's 21210 (From not on
// the account) comes back as 422 with Twilio's message; nothing is left.
func TestTwilioRefusalIsA422AndReleasesTheSlot(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{})
	tc, _ := twilio.New(twilio.Config{AccountSID: fake.AccountSID(), AuthToken: fake.AuthToken(), APIBase: fake.URL()})
	ev, l := &events{}, &limiter{}
	p := New(Config{PublicURL: "http://127.0.0.1:1"}, Deps{Table: table("twilio", "int_tw", agentURI), Events: ev, Limits: l, Carriers: adapters{ws + "/int_tw": tc}})
	_, err := p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+442079460123", AgentID: "bot"}, "")
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 422 || !strings.Contains(pe.Detail, "21210") || l.n() != 0 || len(ev.ev) != 0 {
		t.Fatalf("err %v active %d events %d", err, l.n(), len(ev.ev))
	}
}

// TestTelnyxCallDialsThenTransfersOnAnswered: Call Control dial against
// the fake with the integration's connection; the fake's signed
// call.answered makes callgate transfer the callee to the agent's URI with
// X-Callgate headers; call.hangup ends it; a forged webhook is refused.
func TestTelnyxCallDialsThenTransfersOnAnswered(t *testing.T) {
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
	d := fake.Dialled()
	if len(d) != 1 || d[0].From != "+12125550100" || d[0].To != "+442079460123" || d[0].ConnectionID != "1684641123236054244" ||
		d[0].WebhookURL != srv.URL+"/webhooks/calls/telnyx/events" || d[0].CommandID != c.ID {
		t.Fatalf("dialled %+v", d)
	}
	// Forged: right shape, wrong key.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	fake.SetWebhookKey(other)
	if code, _ := fake.Answer(context.Background(), d[0].CallControlID); code != 403 || len(ev.kinds(c.ID)) != 1 {
		t.Fatalf("forged webhook: %d, events %v", code, ev.kinds(c.ID))
	}
	fake.SetWebhookKey(priv)
	if code, err := fake.Answer(context.Background(), d[0].CallControlID); err != nil || code != 200 {
		t.Fatalf("answered webhook: %d %v", code, err)
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if tr := fake.Dialled()[0].Transfers; len(tr) != 1 {
			return fmt.Errorf("transfers %v", tr)
		}
		return nil
	})
	tr := fake.Dialled()[0].Transfers[0]
	hs := map[string]string{}
	for _, h := range tr.CustomHeaders {
		hs[h["name"]] = h["value"]
	}
	if tr.To != agentURI || hs["X-Callgate-Number"] != "+12125550100" || hs["X-Callgate-Call-Id"] != c.ID {
		t.Fatalf("transfer %+v", tr)
	}
	if answered, _ := m.state(c.ID); !answered {
		t.Fatal("not metered as answered")
	}
	if code, err := fake.Hangup(context.Background(), d[0].CallControlID); err != nil || code != 200 {
		t.Fatalf("hangup webhook: %d %v", code, err)
	}
	if _, ended := m.state(c.ID); ended != 1 || l.n() != 0 || !slices.Equal(ev.kinds(c.ID), []string{calls.Started, calls.Answered, calls.Ended}) {
		t.Fatalf("ended %d active %d events %v", ended, l.n(), ev.kinds(c.ID))
	}
}

// TestTelnyxWithoutConnectionIsAFieldError: an integration without a
// connection_id cannot place calls: 400 naming from, nothing sent.
func TestTelnyxWithoutConnectionIsAFieldError(t *testing.T) {
	fake := telnyxfake.MustNew(t, telnyxfake.Options{})
	tc, _ := telnyx.New(telnyx.Config{APIKey: fake.APIKey(), APIBase: fake.URL()})
	p := New(Config{PublicURL: "http://127.0.0.1:1"}, Deps{Table: table("telnyx", "int_tx", agentURI), Carriers: adapters{ws + "/int_tx": tc}})
	_, err := p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+442079460123", AgentID: "bot"}, "")
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 400 || pe.Field != "from" || len(fake.Dialled()) != 0 {
		t.Fatalf("err %v dialled %d", err, len(fake.Dialled()))
	}
}

// TestTelnyxTransferFailureHangsUp: when Telnyx refuses the transfer to
// the agent, the callee is hung up (not left in silence) and the call
// ends once with agent_transfer_failed.
func TestTelnyxTransferFailureHangsUp(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	fake := telnyxfake.MustNew(t, telnyxfake.Options{})
	fake.SetWebhookKey(priv)
	tc, _ := telnyx.New(telnyx.Config{APIKey: fake.APIKey(), APIBase: fake.URL(), ConnectionID: "1684641123236054244"})
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
	fake.FailNext(telnyxfake.Failure{Method: "POST", PathContains: "/actions/transfer", Status: 500})
	if code, err := fake.Answer(context.Background(), id); err != nil || code != 200 {
		t.Fatalf("answered: %d %v", code, err)
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !fake.Dialled()[0].HungUp {
			return errors.New("not hung up")
		}
		if k := ev.kinds(c.ID); !slices.Equal(k, []string{calls.Started, calls.Answered, calls.Ended}) {
			return fmt.Errorf("events %v", k)
		}
		return nil
	})
	if e := ev.last(c.ID); e.Reason != "agent_transfer_failed" {
		t.Fatalf("ended %+v", e)
	}
	if _, ended := m.state(c.ID); ended != 1 || l.n() != 0 {
		t.Fatalf("ended %d active %d", ended, l.n())
	}
}
