package node_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/gateway/webhook"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// Calls that reach an agent through a carrier's webhook are held by no
// node: the API node reads the call's history and acts with the carrier's
// own verb (api/webhookcalls.go, gateway/placer/webhookcalls.go).

// importForAgent creates integration body in c's workspace, an agent bot
// and imports number assigned to it; it waits until the routing table has
// both.
func importForAgent(t *testing.T, n *node.Node, c httpClient, integration, number string) string {
	t.Helper()
	code, m := c.do("POST", "/v1/integrations", integration)
	if code != 201 {
		t.Fatalf("integration: %d %v", code, m)
	}
	intID := m["id"].(string)
	if code, m := c.do("POST", "/v1/agents", `{"id":"bot","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090"}]}`); code != 201 {
		t.Fatalf("agent: %d %v", code, m)
	}
	if code, m := c.do("POST", "/v1/integrations/"+intID+"/import", `{"phone_numbers":["`+number+`"],"agent_id":"bot"}`); code != 201 {
		t.Fatalf("import: %d %v", code, m)
	}
	testwait.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		r, ok := n.Table().Load().Lookup(number)
		if !ok || r.Agent == nil {
			return fmt.Errorf("%s not routed yet", number)
		}
		if _, ok := n.Table().Load().Integration(intID); !ok {
			return fmt.Errorf("integration %s not in the table yet", intID)
		}
		return nil
	})
	return intID
}

// waitRecord polls GET /v1/calls/{id} until ok accepts the record.
func waitRecord(t *testing.T, c httpClient, id string, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	var m map[string]any
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		var code int
		code, m = c.do("GET", "/v1/calls/"+url.PathEscape(id), "")
		if code != 200 || !ok(m) {
			return fmt.Errorf("call %s not %s yet: %d %v", id, what, code, m)
		}
		return nil
	})
	return m
}

// postTwilio sends a form to the node signed as Twilio signs it for
// publicURL (the URL Twilio was given).
func postTwilio(t *testing.T, n *node.Node, token, publicURL string, form url.Values) (int, string) {
	t.Helper()
	u, err := url.Parse(publicURL)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+n.HTTPAddr()+u.RequestURI(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", webhook.TwilioSignature(token, publicURL, form))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var statusCallbackRE = regexp.MustCompile(`statusCallback="([^"]+)"`)

// TestTransferOfTwilioWebhookCall: a caller reaches the agent through the
// Twilio voice webhook (<Dial><Sip>); the API transfers the live call by
// redirecting the caller's (parent) call to <Dial callerId><Number>, once,
// on the node that took the request. Unanswered and ended calls are 409,
// another workspace's call 404, bad and forbidden targets 400/422, digits
// 501 (Twilio has no verb for them).
func TestTransferOfTwilioWebhookCall(t *testing.T) {
	const number, caller = "+14155550101", "+15005550006"
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: number, Voice: true}}})
	n, _ := startNodeWithLog(t, func(c *config.Config) { c.Carriers.Twilio.APIBase = fake.URL() })
	defer n.Close()
	acme := newWorkspaceClient(t, n, "acme", 1000)
	other := newWorkspaceClient(t, n, "other", 1000)
	importForAgent(t, n, acme, `{"name":"acme","carrier":"twilio","credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"`+fake.AuthToken()+`"}}`, number)

	sid := fake.Inbound(caller, number)
	code, twiml := postTwilio(t, n, fake.AuthToken(), "https://gw.example.com/webhooks/twilio/voice", url.Values{
		"CallSid": {sid}, "AccountSid": {fake.AccountSID()}, "From": {caller}, "To": {number}, "Direction": {"inbound"}, "CallStatus": {"ringing"}})
	if code != 200 || !strings.Contains(twiml, "<Sip") {
		t.Fatalf("voice webhook: %d %s", code, twiml)
	}
	mm := statusCallbackRE.FindStringSubmatch(twiml)
	if mm == nil {
		t.Fatalf("no <Sip statusCallback> in %s", twiml)
	}
	statusURL := html.UnescapeString(mm[1])
	waitRecord(t, acme, sid, "started", func(m map[string]any) bool { return m["source"] == "twilio_webhook" })
	if _, ok := waitRecord(t, acme, sid, "started", func(map[string]any) bool { return true })["carrier_call_id"]; ok {
		t.Fatal("the carrier call id is shown in the call's record")
	}

	transfer := `{"to":"tel:+12125550143"}`
	path := "/v1/calls/" + sid + "/transfer"
	if code, m := acme.do("POST", path, transfer); code != 409 || !strings.Contains(fmt.Sprint(m["detail"]), "not answered") {
		t.Fatalf("ringing call: %d %v", code, m)
	}

	// The agent answers: Twilio reports the <Sip> child leg with the parent's sid.
	child := "CA" + strings.Repeat("c", 32)
	answered := url.Values{"CallSid": {child}, "ParentCallSid": {sid}, "AccountSid": {fake.AccountSID()}, "From": {caller},
		"To": {"sip:bot@127.0.0.1:5090"}, "CallStatus": {"in-progress"}, "Direction": {"outbound-dial"}}
	if code, body := postTwilio(t, n, fake.AuthToken(), statusURL, answered); code != 200 {
		t.Fatalf("answered callback: %d %s", code, body)
	}
	waitRecord(t, acme, sid, "answered", func(m map[string]any) bool { return m["answered_at"] != nil })

	if code, m := other.do("POST", path, transfer); code != 404 {
		t.Fatalf("another workspace's call: %d %v", code, m)
	}
	if code, m := acme.do("POST", path, `{"to":"sip:human@example.com"}`); code != 400 || !fieldNamed(m, "to") {
		t.Fatalf("SIP target: %d %v", code, m)
	}
	if code, m := acme.do("POST", path, `{"to":"+19005550100"}`); code != 422 {
		t.Fatalf("premium-rate target: %d %v", code, m)
	}
	if code, m := acme.do("POST", "/v1/calls/"+sid+"/dtmf", `{"digits":"12#"}`); code != 501 || !strings.Contains(fmt.Sprint(m["detail"]), "Twilio") {
		t.Fatalf("digits to a Twilio call: %d %v", code, m)
	}
	if got := fake.Calls()[0].TwimlUpdates; len(got) != 0 {
		t.Fatalf("refused requests reached Twilio: %v", got)
	}

	start := time.Now()
	code, m := acme.do("POST", path, transfer)
	t.Logf("transfer of a webhook call answered in %v", time.Since(start))
	if code != 202 || m["state"] != "trying" || m["to"] != "tel:+12125550143" {
		t.Fatalf("transfer: %d %v", code, m)
	}
	calls := fake.Calls()
	if len(calls) != 1 || calls[0].SID != sid || len(calls[0].TwimlUpdates) != 1 {
		t.Fatalf("Twilio got %+v, want one redirect of the parent call %s", calls, sid)
	}
	want := `<Dial callerId="` + number + `"><Number>+12125550143</Number></Dial>`
	if tw := calls[0].TwimlUpdates[0]; !strings.Contains(tw, want) {
		t.Fatalf("redirect TwiML %s, want %s", tw, want)
	}
	// the refused (premium) attempt is on the record first: wait for this one
	rec := waitRecord(t, acme, sid, "transferred", func(m map[string]any) bool {
		x, _ := m["transfer"].(map[string]any)
		return x != nil && x["state"] != "refused"
	})
	tr := rec["transfer"].(map[string]any)
	if tr["mode"] != "carrier_verb" || tr["via"] != "api" || tr["state"] != "trying" || tr["carrier"] != "twilio" || tr["to"] != "tel:+12125550143" {
		t.Fatalf("transfer in history: %v", tr)
	}

	// The redirected parent leaves its <Dial>: the agent's leg completes.
	done := url.Values{"CallSid": {child}, "ParentCallSid": {sid}, "AccountSid": {fake.AccountSID()}, "From": {caller},
		"To": {"sip:bot@127.0.0.1:5090"}, "CallStatus": {"completed"}, "CallDuration": {"7"}, "Direction": {"outbound-dial"}}
	if code, body := postTwilio(t, n, fake.AuthToken(), statusURL, done); code != 200 {
		t.Fatalf("completed callback: %d %s", code, body)
	}
	waitRecord(t, acme, sid, "ended", func(m map[string]any) bool { return m["ended_at"] != nil })
	if code, m := acme.do("POST", path, transfer); code != 409 {
		t.Fatalf("ended call: %d %v", code, m)
	}
	if got := fake.Calls()[0].TwimlUpdates; len(got) != 1 {
		t.Fatalf("Twilio got %d redirects, want 1", len(got))
	}
}

// TestTransferAndDigitsOfTelnyxCallControlCall: a caller reaches the agent
// through Telnyx Call Control (call.initiated → transfer to the agent);
// the API plays digits to the caller with send_dtmf and transfers the
// caller's leg with Call Control's transfer, both on the caller's
// call_control_id; refused before the answer and after the hangup.
func TestTransferAndDigitsOfTelnyxCallControlCall(t *testing.T) {
	const number, caller = "+13125550101", "+15005550006"
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	fake := telnyxfake.MustNew(t, telnyxfake.Options{Owned: []telnyxfake.Number{{PhoneNumber: number, Features: []string{"voice"}}}})
	fake.SetWebhookKey(priv)
	n, _ := startNodeWithLog(t, func(c *config.Config) { c.Carriers.Telnyx.APIBase = fake.URL() })
	defer n.Close()
	acme := newWorkspaceClient(t, n, "acme", 1000)
	other := newWorkspaceClient(t, n, "other", 1000)
	importForAgent(t, n, acme, `{"name":"tx","carrier":"telnyx","credentials":{"api_key":"`+fake.APIKey()+`","public_key":"`+
		base64.StdEncoding.EncodeToString(pub)+`","connection_id":"cc-conn"}}`, number)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	in, code, err := fake.Incoming(ctx, caller, number, "cc-conn", "http://"+n.HTTPAddr()+"/webhooks/telnyx/call-control")
	if err != nil || code != 200 {
		t.Fatalf("call.initiated: %d %v", code, err)
	}
	id := in.CallSessionID // the call's id in callgate
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if tr := fake.Dialled()[0].Transfers; len(tr) != 1 || !strings.HasPrefix(tr[0].To, "sip:bot@") {
			return fmt.Errorf("not transferred to the agent yet: %+v", tr)
		}
		return nil
	})
	waitRecord(t, acme, id, "started", func(m map[string]any) bool { return m["source"] == "telnyx_webhook" })
	if code, m := acme.do("POST", "/v1/calls/"+id+"/dtmf", `{"digits":"1"}`); code != 409 {
		t.Fatalf("digits before the answer: %d %v", code, m)
	}

	if code, err := fake.Answer(ctx, in.CallControlID); err != nil || code != 200 {
		t.Fatalf("call.answered: %d %v", code, err)
	}
	waitRecord(t, acme, id, "answered", func(m map[string]any) bool { return m["answered_at"] != nil })

	if code, m := other.do("POST", "/v1/calls/"+id+"/dtmf", `{"digits":"1"}`); code != 404 {
		t.Fatalf("another workspace's call: %d %v", code, m)
	}
	start := time.Now()
	code, m := acme.do("POST", "/v1/calls/"+id+"/dtmf", `{"digits":"12w34#"}`)
	t.Logf("digits to a webhook call answered in %v", time.Since(start))
	if code != 202 || m["via"] != "send_dtmf" {
		t.Fatalf("digits: %d %v", code, m)
	}
	if d := fake.Dialled()[0].DTMF; len(d) != 1 || d[0].Digits != "12w34#" {
		t.Fatalf("send_dtmf got %+v, want 12w34# once on the caller's leg", d)
	}
	rec := waitRecord(t, acme, id, "with digits", func(m map[string]any) bool { return m["dtmf"] != nil })
	if d := rec["dtmf"].([]any)[0].(map[string]any); d["digits"] != "1234#" || d["via"] != "send_dtmf" {
		t.Fatalf("digits in history: %v", d)
	}

	if code, m := acme.do("POST", "/v1/calls/"+id+"/transfer", `{"to":"+19005550100"}`); code != 422 {
		t.Fatalf("premium-rate target: %d %v", code, m)
	}
	code, m = acme.do("POST", "/v1/calls/"+id+"/transfer", `{"to":"+12125550143","mode":"blind"}`)
	if code != 202 || m["state"] != "trying" {
		t.Fatalf("transfer: %d %v", code, m)
	}
	tr := fake.Dialled()[0].Transfers
	if len(tr) != 2 || tr[1].To != "+12125550143" || tr[1].From != number {
		t.Fatalf("Call Control transfers %+v, want the second to +12125550143 from %s", tr, number)
	}
	// the refused (premium) attempt is on the record first: wait for this one
	rec = waitRecord(t, acme, id, "transferred", func(m map[string]any) bool {
		x, _ := m["transfer"].(map[string]any)
		return x != nil && x["state"] != "refused"
	})
	if x := rec["transfer"].(map[string]any); x["mode"] != "carrier_verb" || x["state"] != "trying" || x["carrier"] != "telnyx" {
		t.Fatalf("transfer in history: %v", x)
	}

	if code, err := fake.Hangup(ctx, in.CallControlID); err != nil || code != 200 {
		t.Fatalf("call.hangup: %d %v", code, err)
	}
	waitRecord(t, acme, id, "ended", func(m map[string]any) bool { return m["ended_at"] != nil })
	if code, m := acme.do("POST", "/v1/calls/"+id+"/dtmf", `{"digits":"1"}`); code != 409 {
		t.Fatalf("digits after the hangup: %d %v", code, m)
	}
	if code, m := acme.do("POST", "/v1/calls/"+id+"/transfer", `{"to":"+12125550143"}`); code != 409 {
		t.Fatalf("transfer after the hangup: %d %v", code, m)
	}
	if c := fake.Dialled()[0]; len(c.DTMF) != 1 || len(c.Transfers) != 2 {
		t.Fatalf("refused requests reached Telnyx: %+v", c)
	}
}
