package node_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"context"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/gateway/webhook"
	"github.com/callgate/callgate/internal/testlog"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// syncBuffer is a log sink several goroutines write to.
type syncBuffer = testlog.Buffer

// startNodeWithLog starts a node (nodetest.Start) with a public URL whose
// JSON debug log goes to the returned buffer.
func startNodeWithLog(t *testing.T, mutate func(*config.Config)) (*node.Node, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	n := nodetest.Start(t, nodetest.Log(logs), nodetest.Config(func(c *config.Config) {
		c.PublicURL = "https://gw.example.com"
		c.Log.Level = "debug"
	}), nodetest.Config(mutate))
	return n, logs
}

func TestTwilioImportAndPurchase(t *testing.T) {
	owned := []twiliofake.Number{
		{PhoneNumber: "+14155550101", Voice: true, SMS: true, VoiceURL: "https://old.example.com/voice", SMSURL: "https://old.example.com/sms"},
		{PhoneNumber: "+14155550102", Voice: true, SMS: true, VoiceURL: "https://old.example.com/voice2"},
	}
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: owned, Inventory: twiliofake.GenerateInventory("415", twiliofake.TypeLocal, 5)})
	n, logs := startNodeWithLog(t, func(c *config.Config) { c.Carriers.Twilio.APIBase = fake.URL() })
	defer n.Close()
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}

	// Rejected credentials save nothing and say why.
	code, m := c.do("POST", "/v1/integrations", `{"name":"acme","carrier":"twilio","credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"wrongtoken123"}}`)
	if code != 400 || !strings.Contains(m["detail"].(string), "credentials rejected by Twilio") {
		t.Fatalf("bad credentials: %d %v", code, m)
	}
	if _, m := c.do("GET", "/v1/integrations", ""); len(m["integrations"].([]any)) != 0 {
		t.Fatalf("failed validation saved an integration: %v", m)
	}
	code, m = c.do("POST", "/v1/integrations", `{"name":"acme","carrier":"twilio","credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"`+fake.AuthToken()+`"}}`)
	if code != 201 {
		t.Fatalf("create integration: %d %v", code, m)
	}
	intID := m["id"].(string)
	raw, _ := json.Marshal(m)
	if strings.Contains(string(raw), fake.AuthToken()) {
		t.Fatalf("API returned the auth token: %s", raw)
	}
	// Encrypted at rest: the stored record does not hold the token.
	e, err := n.Store().Integrations.Get(context.Background(), intID)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(e.Value(), []byte(fake.AuthToken())) {
		t.Fatal("auth token stored in clear")
	}
	if fi, err := os.Stat(filepath.Join(n.Config().DataDir, "secret.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret.key: %v %v", fi, err)
	}

	code, m = c.do("GET", "/v1/integrations/"+intID+"/numbers", "")
	if code != 200 || len(m["numbers"].([]any)) != 2 {
		t.Fatalf("account numbers: %d %v", code, m)
	}
	// outbound_only changes nothing on the account.
	fake.ResetRequests()
	code, m = c.do("POST", "/v1/integrations/"+intID+"/import", `{"phone_numbers":["+14155550101"]}`)
	if code != 201 {
		t.Fatalf("import: %d %v", code, m)
	}
	num := m["results"].([]any)[0].(map[string]any)["number"].(map[string]any)
	if num["origin"] != "imported" || num["carrier"] != "twilio" || num["monthly_cost"].(float64) != 0 {
		t.Fatalf("imported number: %v", num)
	}
	if w := fake.Writes(); len(w) != 0 {
		t.Fatalf("outbound_only wrote to the carrier: %+v", w)
	}
	// full_control records then points the webhooks at callgate.
	code, m = c.do("POST", "/v1/integrations/"+intID+"/import", `{"phone_numbers":["+14155550102","+14155550199"],"webhook_mode":"full_control"}`)
	if code != 200 || m["imported"].(float64) != 1 || m["failed"].(float64) != 1 {
		t.Fatalf("mixed import: %d %v", code, m)
	}
	on, _ := fake.OwnedNumber("+14155550102")
	if on.VoiceURL != "https://gw.example.com/webhooks/twilio/voice" || on.SMSURL != "https://gw.example.com/webhooks/twilio/sms" {
		t.Fatalf("full_control did not point the number at callgate: %+v", on)
	}
	// Release restores the previous settings; nothing is refunded or charged.
	if code, m := c.do("DELETE", "/v1/numbers/14155550102", ""); code != 204 {
		t.Fatalf("release: %d %v", code, m)
	}
	on, _ = fake.OwnedNumber("+14155550102")
	if on.VoiceURL != "https://old.example.com/voice2" {
		t.Fatalf("release did not restore the webhooks: %+v", on)
	}
	if _, ok := fake.OwnedNumber("+14155550102"); !ok {
		t.Fatal("releasing an imported number removed it from the customer's account")
	}
	_, cr := c.do("GET", "/v1/credits", "")
	if cr["balance"].(float64) != 1000 {
		t.Fatalf("imports cost credits: %v", cr["balance"])
	}
	// Voice region on a Twilio number goes to Routes v2.
	if code, m := c.do("PATCH", "/v1/numbers/14155550101", `{"voice_region":"ie1"}`); code != 200 || m["voice_region"] != "ie1" {
		t.Fatalf("voice region: %d %v", code, m)
	}
	if code, _ := c.do("PATCH", "/v1/numbers/14155550101", `{"voice_region":"mars1"}`); code != 400 {
		t.Fatalf("bad twilio region: %d", code)
	}

	// Purchase through Twilio charges like the sandbox.
	code, m = c.do("GET", "/v1/marketplace/numbers?carrier=twilio&integration_id="+intID+"&country=US&area_code=415&limit=5", "")
	if code != 200 || len(m["numbers"].([]any)) == 0 {
		t.Fatalf("twilio search: %d %v", code, m)
	}
	avail := m["numbers"].([]any)
	first := avail[0].(map[string]any)
	code, m = c.do("POST", "/v1/numbers", `{"phone_number":"`+first["phone_number"].(string)+`","carrier":"twilio","integration_id":"`+intID+`"}`)
	if code != 201 || m["carrier"] != "twilio" || m["origin"] != "purchased" {
		t.Fatalf("twilio purchase: %d %v", code, m)
	}
	_, cr = c.do("GET", "/v1/credits", "")
	if cr["balance"].(float64) != 1000-first["monthly_cost"].(float64) {
		t.Fatalf("balance after twilio purchase: %v", cr["balance"])
	}
	// A carrier failure after the charge refunds it and frees the number.
	second := avail[1].(map[string]any)["phone_number"].(string)
	fake.FailNext(twiliofake.Failure{Method: "POST", PathContains: "IncomingPhoneNumbers", Status: 500})
	code, m = c.do("POST", "/v1/numbers", `{"phone_number":"`+second+`","carrier":"twilio","integration_id":"`+intID+`"}`)
	if code != 502 || !strings.Contains(m["title"].(string), "twilio") {
		t.Fatalf("carrier 500: %d %v", code, m)
	}
	_, cr2 := c.do("GET", "/v1/credits", "")
	if cr2["balance"] != cr["balance"] {
		t.Fatalf("failed purchase not refunded: %v -> %v", cr["balance"], cr2["balance"])
	}
	entries := cr2["entries"].([]any)
	if last := entries[len(entries)-1].(map[string]any); last["kind"] != "refund" {
		t.Fatalf("no refund entry: %v", last)
	}
	if code, _ := c.do("GET", "/v1/numbers/"+strings.TrimPrefix(second, "+"), ""); code != 404 {
		t.Fatalf("failed purchase left the number claimed: %d", code)
	}

	// No secret in any log line.
	if strings.Contains(logs.String(), fake.AuthToken()) || strings.Contains(logs.String(), "wrongtoken123") {
		t.Fatal("a credential appeared in the logs")
	}
	// An integration with numbers cannot be deleted.
	if code, _ := c.do("DELETE", "/v1/integrations/"+intID, ""); code != 409 {
		t.Fatalf("delete integration in use: %d", code)
	}
}

func TestTelnyxImportFullControlAndRegions(t *testing.T) {
	fake := telnyxfake.MustNew(t, telnyxfake.Options{Owned: []telnyxfake.Number{
		{PhoneNumber: "+13125550101", ConnectionID: "old-conn", MessagingProfileID: "old-mp", Features: []string{"voice", "sms"}},
	}})
	n, logs := startNodeWithLog(t, func(c *config.Config) { c.Carriers.Telnyx.APIBase = fake.URL() })
	defer n.Close()
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	code, m := c.do("POST", "/v1/integrations", `{"name":"tx","carrier":"telnyx","credentials":{"api_key":"KEYwrong","public_key":"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="}}`)
	if code != 400 || !strings.Contains(m["detail"].(string), "Telnyx") {
		t.Fatalf("bad key: %d %v", code, m)
	}
	code, m = c.do("POST", "/v1/integrations", `{"name":"tx","carrier":"telnyx","credentials":{"api_key":"`+fake.APIKey()+`","connection_id":"cg-conn","messaging_profile_id":"cg-mp"}}`)
	if code != 201 {
		t.Fatalf("create: %d %v", code, m)
	}
	intID := m["id"].(string)
	code, m = c.do("POST", "/v1/integrations/"+intID+"/import", `{"phone_numbers":["13125550101"],"webhook_mode":"full_control"}`)
	if code != 201 {
		t.Fatalf("import: %d %v", code, m)
	}
	on, _ := fake.OwnedNumber("+13125550101")
	if on.ConnectionID != "cg-conn" || on.MessagingProfileID != "cg-mp" {
		t.Fatalf("full_control: %+v", on)
	}
	if code, m := c.do("PATCH", "/v1/numbers/13125550101", `{"voice_region":"us1"}`); code != 400 || !strings.Contains(m["detail"].(string), "regions are configured for Twilio numbers only") {
		t.Fatalf("telnyx region: %d %v", code, m)
	}
	if code, _ := c.do("DELETE", "/v1/numbers/13125550101", ""); code != 204 {
		t.Fatalf("release: %d", code)
	}
	on, _ = fake.OwnedNumber("+13125550101")
	if on.ConnectionID != "old-conn" || on.MessagingProfileID != "old-mp" {
		t.Fatalf("release did not restore: %+v", on)
	}
	if strings.Contains(logs.String(), fake.APIKey()) {
		t.Fatal("API key in logs")
	}
}

// TestTwilioWebhookThroughNode: an imported Twilio number assigned to an
// agent; Twilio's signed voice webhook gets TwiML that dials the agent,
// verified with the integration's own auth token; a bad signature is 403.
func TestTwilioWebhookThroughNode(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+14155550101", Voice: true, SMS: true}}})
	n, _ := startNodeWithLog(t, func(c *config.Config) {
		c.Carriers.Twilio.APIBase = fake.URL()
		c.PublicURL = "https://gw.example.com"
	})
	defer n.Close()
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	_, m := c.do("POST", "/v1/integrations", `{"name":"acme","carrier":"twilio","credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"`+fake.AuthToken()+`"}}`)
	intID := m["id"].(string)
	c.do("POST", "/v1/agents", `{"id":"bot","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090"}]}`)
	if code, m := c.do("POST", "/v1/integrations/"+intID+"/import", `{"phone_numbers":["+14155550101"],"agent_id":"bot"}`); code != 201 {
		t.Fatalf("import: %d %v", code, m)
	}
	testwait.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if r, ok := n.Table().Load().Lookup("+14155550101"); !ok || r.Agent == nil {
			return io.EOF
		}
		if _, ok := n.Table().Load().Integration(intID); !ok {
			return io.EOF
		}
		return nil
	})
	form := url.Values{"CallSid": {"CA0123456789abcdef0123456789abcdef"}, "AccountSid": {fake.AccountSID()}, "From": {"+15005550006"}, "To": {"+14155550101"}, "Direction": {"inbound"}, "CallStatus": {"ringing"}}
	post := func(sig string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+n.HTTPAddr()+"/webhooks/twilio/voice", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if sig != "" {
			req.Header.Set("X-Twilio-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	sig := webhook.TwilioSignature(fake.AuthToken(), "https://gw.example.com/webhooks/twilio/voice", form)
	code, body := post(sig)
	if code != 200 || !strings.Contains(body, "<Dial") || !strings.Contains(body, "sip:bot@127.0.0.1:5090") || !strings.Contains(body, "X-Callgate-Agent=bot") {
		t.Fatalf("voice webhook: %d %s", code, body)
	}
	if code, _ := post(webhook.TwilioSignature("someothertoken", "https://gw.example.com/webhooks/twilio/voice", form)); code != 403 {
		t.Fatalf("bad signature: %d", code)
	}
	if code, _ := post(""); code != 403 {
		t.Fatalf("no signature: %d", code)
	}
}
