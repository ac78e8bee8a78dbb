package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// TestOpenAPIConformance drives every operation of the OpenAPI document
// through a real node (embedded NATS, sandbox carrier, a fake Twilio
// account) and validates each request and each response against the
// document the node serves: paths, parameters, bodies, statuses and
// content types. Response objects are checked strictly: a field the
// document does not list fails, as does a listed required field that is
// missing. The test fails when an operation of the document is never
// answered with a success.
func TestOpenAPIConformance(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{
		{PhoneNumber: "+14155550101", Voice: true, SMS: true},
		{PhoneNumber: "+14155550102", Voice: true},
	}})
	n := startConformanceNode(t, func(c *config.Config) { c.Carriers.Twilio.APIBase = fake.URL() })
	x := newConformance(t, "http://"+n.HTTPAddr())
	ws, admin := n.APIKey(), n.AdminKey()

	// Workspaces and credits (admin key).
	x.call(admin, "POST", "/v1/workspaces", `{"id":"beta","name":"Beta","credits":5000}`, want(201))
	x.call(admin, "POST", "/v1/workspaces", `{"id":"beta"}`, want(409))
	x.call(admin, "POST", "/v1/workspaces", `{"id":"Not Valid!"}`, want(400), badRequest(), wantFieldErrors())
	x.call(admin, "POST", "/v1/workspaces", `{"id":"gamma","colour":"red"}`, want(400), badRequest(), wantFieldErrors())
	x.call(admin, "POST", "/v1/workspaces", `id=gamma`, want(415), contentType("application/x-www-form-urlencoded"), badRequest())
	x.call(ws, "POST", "/v1/workspaces", `{"id":"gamma"}`, want(403))
	x.call("", "POST", "/v1/workspaces", `{"id":"gamma"}`, want(401), badRequest())
	x.call(admin, "POST", "/v1/workspaces/beta/credits", `{"amount":50,"reason":"invoice 7"}`, want(201), header("Idempotency-Key", "inv-7"))
	x.call(admin, "POST", "/v1/workspaces/beta/credits", `{"amount":60,"reason":"invoice 7"}`, want(409), header("Idempotency-Key", "inv-7"))
	x.call(admin, "POST", "/v1/workspaces/nobody/credits", `{"amount":50}`, want(404))
	x.call(admin, "POST", "/v1/workspaces/beta/credits", `{"amount":0}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "POST", "/v1/workspaces/beta/credits", `{"amount":5}`, want(403))

	// Marketplace.
	_, page := x.call(ws, "GET", "/v1/marketplace/numbers?carrier=sandbox&country=US&area_code=228&limit=3", "", want(200))
	nums := page["numbers"].([]any)
	if len(nums) < 3 {
		t.Fatalf("search: %v", page)
	}
	num := nums[0].(map[string]any)["phone_number"].(string)
	other := nums[1].(map[string]any)["phone_number"].(string)
	third := nums[2].(map[string]any)["phone_number"].(string)
	digits := strings.TrimPrefix(num, "+")
	// None available is an empty list, not null.
	if _, m := x.call(ws, "GET", "/v1/marketplace/numbers?country=US&area_code=228&type=toll_free", "", want(200)); len(m["numbers"].([]any)) != 0 {
		t.Fatalf("toll-free numbers in area code 228: %v", m)
	}
	x.call(ws, "GET", "/v1/marketplace/numbers?country=US&colour=red", "", want(400), badRequest(), wantFieldErrors())
	x.call(admin, "GET", "/v1/marketplace/numbers?country=US", "", want(403))
	x.call("", "GET", "/v1/marketplace/numbers?country=US", "", want(401), badRequest())

	// Agents.
	x.call(ws, "GET", "/v1/agents", "", want(200))
	agent := `{"id":"bot","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090;transport=udp"}],"media":"direct"}`
	x.call(ws, "POST", "/v1/agents", agent, want(201))
	x.call(ws, "POST", "/v1/agents", agent, want(409))
	x.call(ws, "POST", "/v1/agents", `{"name":"Bad","endpoints":[{"region":"us-east","uri":"http://bot"}]}`, want(400), wantFieldErrors())
	x.call(ws, "POST", "/v1/agents", agent, want(415), contentType("text/plain"), badRequest())
	x.call(ws, "GET", "/v1/agents", "", want(200))
	x.call(ws, "GET", "/v1/agents/bot", "", want(200))
	x.call(ws, "GET", "/v1/agents/nobody", "", want(404))
	x.call(ws, "PUT", "/v1/agents/bot", `{"name":"Bot 2","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090"}],"messaging_url":"https://bot.example.com/sms"}`, want(200),
		contentType("application/json; charset=utf-8"))
	x.call(ws, "PUT", "/v1/agents/nobody", `{"name":"X","endpoints":[{"region":"us-east","uri":"sip:x@127.0.0.1:5090"}]}`, want(404))
	x.call(ws, "PUT", "/v1/agents/bot", `{"name":"X","endpoints":[{"region":"us-east","uri":"sip:x@127.0.0.1:5090"}]}`, want(415), contentType("application/json; charset=latin1"), badRequest())

	// Workspace settings and agents' SIP credentials (settings.go).
	x.call(ws, "GET", "/v1/workspace", "", want(200))
	x.call(ws, "PATCH", "/v1/workspace", `{"routing_hook":{"url":"https://hooks.example.com/route"},"limits":{"max_concurrent_calls":20},"outbound":{"allowed_countries":["us","CA"]}}`, want(200))
	x.call(ws, "PATCH", "/v1/workspace", `{"routing_hook":{"url":"http://hooks.example.com/route"}}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "PATCH", "/v1/workspace", `{"outbound":{"allowed_countries":["XX"]}}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "PATCH", "/v1/workspace", `{"colour":"red"}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "PATCH", "/v1/workspace", `{"routing_hook":null}`, want(200))
	x.call(ws, "POST", "/v1/workspace/webhook-secret", "", want(201))
	x.call(admin, "GET", "/v1/workspaces/beta", "", want(200))
	x.call(admin, "GET", "/v1/workspaces/nobody", "", want(404))
	x.call(admin, "PATCH", "/v1/workspaces/beta", `{"limits":{"max_calls_per_second":5}}`, want(200))
	x.call(admin, "PATCH", "/v1/workspaces/beta", `{"limits":{"max_calls_per_second":-1}}`, want(400), badRequest(), wantFieldErrors())
	x.call(admin, "PATCH", "/v1/workspaces/nobody", `{"name":"x"}`, want(404))
	_, cred := x.call(ws, "POST", "/v1/agents/bot/sip-credentials", "", want(201))
	x.call(ws, "POST", "/v1/agents/nobody/sip-credentials", "", want(404))
	x.call(ws, "GET", "/v1/agents/bot/sip-credentials", "", want(200))
	x.call(ws, "GET", "/v1/agents/nobody/sip-credentials", "", want(404))
	x.call(ws, "DELETE", "/v1/agents/bot/sip-credentials/"+cred["username"].(string), "", want(204))
	x.call(ws, "DELETE", "/v1/agents/bot/sip-credentials/"+cred["username"].(string), "", want(404))
	x.call(ws, "POST", "/v1/agents/bot/sip-credentials", "", want(201))

	// Numbers.
	x.call(ws, "GET", "/v1/numbers", "", want(200))
	x.call(ws, "POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox","agent_id":"bot"}`, want(201), header("Idempotency-Key", "buy-1"))
	x.call(ws, "POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox","agent_id":"bot"}`, want(201), header("Idempotency-Key", "buy-1"))
	x.call(ws, "POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox"}`, want(409))
	x.call(ws, "POST", "/v1/numbers", `{"phone_number":"not a number","carrier":"sandbox"}`, want(400), wantFieldErrors())
	x.call(ws, "POST", "/v1/numbers", `{"phone_number":"`+other+`","carrier":"sandbox"}`, want(201))
	poor := x.workspaceKey(admin, "poor")
	x.call(poor, "POST", "/v1/numbers", `{"phone_number":"`+third+`","carrier":"sandbox"}`, want(402))
	x.call(ws, "GET", "/v1/numbers", "", want(200))
	x.call(ws, "GET", "/v1/numbers/"+digits, "", want(200))
	x.call(ws, "GET", "/v1/numbers/%2B"+digits, "", want(200))
	x.call(ws, "GET", "/v1/numbers/12025550123", "", want(404))
	x.call(ws, "GET", "/v1/numbers/banana", "", want(404))
	x.call(ws, "PATCH", "/v1/numbers/"+digits, `{"agent_id":""}`, want(200))
	x.call(ws, "PATCH", "/v1/numbers/"+digits, `{"agent_id":"bot","voice_region":null}`, want(200))
	x.call(ws, "PATCH", "/v1/numbers/"+digits, `{"agent_id":"nobody"}`, want(400, 404))
	x.call(ws, "PATCH", "/v1/numbers/"+digits, `{"agents":[{"agent_id":"bot","weight":3}],"sms_agent_id":"bot","fallback":[{"uri":"sip:backup@127.0.0.1:5091"},{"number":"+14155550100"}],"routing_hook":{"url":"https://hooks.example.com/n","on_failure":"reject"}}`, want(200))
	x.call(ws, "PATCH", "/v1/numbers/"+digits, `{"agents":[{"agent_id":"bot","weight":0}]}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "PATCH", "/v1/numbers/"+digits, `{"fallback":[{"agent_id":"bot","number":"+14155550100"}]}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "PATCH", "/v1/numbers/"+digits, `{"agent_id":"bot","routing_hook":null,"fallback":[]}`, want(200))
	x.call(ws, "PATCH", "/v1/numbers/"+digits, `{"agent_id":5}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "PATCH", "/v1/numbers/12025550123", `{"agent_id":""}`, want(404))
	x.call(ws, "PATCH", "/v1/numbers/"+digits, `agent_id=`, want(415), contentType("application/x-www-form-urlencoded"), badRequest())
	x.call(ws, "DELETE", "/v1/agents/bot", "", want(409))

	// Credits (with an outbound call's usage entry).
	if _, err := n.Service().ChargeUsage(context.Background(), provisioning.UsageCharge{Workspace: n.Config().Bootstrap.Workspace,
		CallID: "conformance-call", Destination: "+442079460000", Minutes: 2, Amount: 10}); err != nil {
		t.Fatalf("charge usage: %v", err)
	}
	x.call(ws, "GET", "/v1/credits", "", want(200))
	x.call(admin, "GET", "/v1/credits", "", want(403))

	// Forwarding.
	x.call(ws, "GET", "/v1/forwarding", "", want(200))
	x.call(ws, "POST", "/v1/forwarding", `{"business_number":"+12025550123","gateway_number":"`+num+`"}`, want(201))
	x.call(ws, "POST", "/v1/forwarding", `{"business_number":"+12025550123","gateway_number":"`+num+`"}`, want(409))
	x.call(ws, "POST", "/v1/forwarding", `{"business_number":"+12025550124","gateway_number":"+12025550199"}`, want(400), wantFieldErrors())
	x.call(ws, "GET", "/v1/forwarding", "", want(200))
	x.call(ws, "DELETE", "/v1/forwarding/12025550123", "", want(204))
	x.call(ws, "DELETE", "/v1/forwarding/12025550123", "", want(404))

	// Calls (sandbox number → the sandbox termination), to an agent whose
	// endpoint answers the node's OPTIONS probes (a down one is a 503).
	x.call(ws, "POST", "/v1/agents", `{"id":"caller","name":"Caller","endpoints":[{"region":"us-east","uri":"`+optionsResponder(t)+`"}]}`, want(201))
	call := `{"from":"` + num + `","to":"+12025550143","agent_id":"caller"}`
	var c1 map[string]any
	testwait.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error { // the new number and agent reach the routing table
		var code int
		code, c1 = x.call(ws, "POST", "/v1/calls", call, want(201, 403, 404), header("Idempotency-Key", "call-1"))
		if code != 201 {
			return fmt.Errorf("POST /v1/calls: %d", code)
		}
		return nil
	})
	if _, c2 := x.call(ws, "POST", "/v1/calls", call, want(201), header("Idempotency-Key", "call-1")); c1["id"] != c2["id"] {
		t.Fatalf("a retry placed another call: %v, %v", c1, c2)
	}
	x.call(ws, "POST", "/v1/calls", `{"from":"`+num+`","to":"+12025550144","agent_id":"caller"}`, want(409), header("Idempotency-Key", "call-1"))
	x.call(ws, "POST", "/v1/calls", `{"from":"+12025550177","to":"+12025550143","agent_id":"caller"}`, want(403), wantFieldErrors())
	x.call(ws, "POST", "/v1/calls", `{"from":"`+num+`","to":"+33142685300","agent_id":"caller"}`, want(403), wantFieldErrors())
	x.call(ws, "POST", "/v1/calls", `{"from":"`+num+`","to":"+12025550143","agent_id":"nobody"}`, want(404), wantFieldErrors())
	x.call(ws, "POST", "/v1/calls", `{"from":"`+num+`","to":"call me","agent_id":"bot"}`, want(400), wantFieldErrors())
	x.call(ws, "POST", "/v1/calls", `{"from":"`+num+`"}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "POST", "/v1/calls", call, want(415), contentType("text/plain"), badRequest())
	conformanceTransfer(t, x, n, ws, other) // transfer_conformance_test.go: a live call transferred

	// Regions: the agent's endpoint appears once the node probes it.
	x.call(ws, "GET", "/v1/regions", "", want(200))
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if _, m := x.call(ws, "GET", "/v1/regions", "", want(200)); len(m["regions"].([]any)) == 0 {
			return errors.New("no regions yet")
		}
		return nil
	})
	x.call(admin, "GET", "/v1/regions", "", want(200))
	x.call("", "GET", "/v1/regions", "", want(401), badRequest())

	// Integrations (the fake Twilio account).
	x.call(ws, "GET", "/v1/integrations", "", want(200))
	creds := `"credentials":{"account_sid":"` + fake.AccountSID() + `","auth_token":"` + fake.AuthToken() + `"}`
	x.call(ws, "POST", "/v1/integrations", `{"name":"acme","carrier":"twilio","credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"wrongtoken123"}}`, want(400), wantFieldErrors())
	x.call(ws, "POST", "/v1/integrations", `{"name":"acme","carrier":"sandbox",`+creds+`}`, want(400), badRequest(), wantFieldErrors())
	_, it := x.call(ws, "POST", "/v1/integrations", `{"name":"acme","carrier":"twilio",`+creds+`}`, want(201))
	id := it["id"].(string)
	x.call(ws, "GET", "/v1/integrations", "", want(200))
	x.call(ws, "GET", "/v1/integrations/"+id, "", want(200))
	x.call(ws, "GET", "/v1/integrations/nothing", "", want(404))
	x.call(ws, "PATCH", "/v1/integrations/"+id, `{"termination":{"uri":"sip:acme.pstn.twilio.com","username":"trunkuser","password":"trunk-pass-1"}}`, want(200))
	x.call(ws, "PATCH", "/v1/integrations/"+id, `{"termination":{"uri":"http://acme.pstn.twilio.com"}}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "PATCH", "/v1/integrations/"+id, `{`+creds+`}`, want(200))
	x.call(ws, "PATCH", "/v1/integrations/"+id, `{"credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"wrongtoken123"}}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "PATCH", "/v1/integrations/nothing", `{"name":"x"}`, want(404))
	x.call(ws, "GET", "/v1/integrations/"+id, "", want(200))
	x.call(ws, "GET", "/v1/integrations/"+id+"/numbers", "", want(200))
	x.call(ws, "GET", "/v1/integrations/nothing/numbers", "", want(404))
	fake.FailNext(twiliofake.Failure{Method: "GET", PathContains: "IncomingPhoneNumbers", Status: 500})
	x.call(ws, "GET", "/v1/integrations/"+id+"/numbers", "", want(502))
	fake.FailNext(twiliofake.Failure{Method: "GET", PathContains: "IncomingPhoneNumbers", Status: 401, Code: 20003, Message: "Authenticate"})
	x.call(ws, "GET", "/v1/integrations/"+id+"/numbers", "", want(422), wantFieldErrors())
	x.call(ws, "POST", "/v1/integrations/"+id+"/import", `{"phone_numbers":["+14155550101"],"agent_id":"bot"}`, want(201))
	x.call(ws, "POST", "/v1/integrations/"+id+"/import", `{"phone_numbers":["+14155550102","+14155550199"],"webhook_mode":"outbound_only"}`, want(200))
	x.call(ws, "POST", "/v1/integrations/"+id+"/import", `{"phone_numbers":["+14155550102"],"webhook_mode":"sideways"}`, want(400), badRequest(), wantFieldErrors())
	x.call(ws, "POST", "/v1/integrations/nothing/import", `{"phone_numbers":["+14155550102"]}`, want(404))
	x.call(ws, "GET", "/v1/numbers", "", want(200))
	x.call(ws, "DELETE", "/v1/integrations/"+id, "", want(409))

	// Releases and deletes.
	for _, nb := range []string{num, other, "+14155550101", "+14155550102"} {
		x.call(ws, "DELETE", "/v1/numbers/"+strings.TrimPrefix(nb, "+"), "", want(204))
	}
	x.call(ws, "DELETE", "/v1/numbers/"+digits, "", want(404))
	x.call(ws, "DELETE", "/v1/integrations/"+id, "", want(204))
	x.call(ws, "DELETE", "/v1/integrations/"+id, "", want(404))
	x.call(ws, "DELETE", "/v1/agents/bot", "", want(204))
	x.call(ws, "DELETE", "/v1/agents/bot", "", want(404))
	x.call(ws, "DELETE", "/v1/agents/caller", "", want(204))

	// Audit (admin key), after the audited operations above.
	_, recs := x.call(admin, "GET", "/v1/audit?limit=5", "", want(200))
	if recs["next_before"] == nil {
		t.Fatalf("audit: one page of 5 should not hold every record: %v", recs)
	}
	x.call(admin, "GET", "/v1/audit?action=number.purchase&workspace=beta", "", want(200))
	x.call(admin, "GET", fmt.Sprintf("/v1/audit?before=%v", recs["next_before"]), "", want(200))
	x.call(admin, "GET", "/v1/audit?limit=0", "", want(400), badRequest(), wantFieldErrors())
	x.call(ws, "GET", "/v1/audit", "", want(403))

	// Call history: a call recorded as the edges record theirs.
	conformanceCall(t, n)
	x.call(ws, "GET", "/v1/calls", "", want(200))
	x.call(ws, "GET", "/v1/calls?direction=inbound&outcome=busy&number=%2B12025550100&from=2026-01-01T00:00:00Z&limit=5", "", want(200))
	x.call(ws, "GET", "/v1/calls", "", want(200), header("Accept", "text/csv"))
	x.call(ws, "GET", "/v1/calls?outcome=great", "", want(400), badRequest(), wantFieldErrors())
	x.call(admin, "GET", "/v1/calls?workspace=default", "", want(200))
	x.call(admin, "GET", "/v1/calls", "", want(400), wantFieldErrors())
	x.call(ws, "GET", "/v1/calls/conformance-call", "", want(200))
	x.call(ws, "GET", "/v1/calls/nothing", "", want(404))
	x.call(admin, "GET", "/v1/calls/conformance-call?workspace=beta", "", want(404))

	conformanceDTMF(t, x, n, ws) // POST /v1/calls/{id}/dtmf on a running call (dtmf_conformance_test.go)

	// Every operation: no key is 401, the wrong kind of key 403, both
	// before the path or body is looked at.
	for path, item := range x.doc.Paths.Map() {
		for method, op := range item.Operations() {
			p := strings.NewReplacer("{number}", "12025550123", "{id}", "beta", "{username}", "ag_x").Replace(path)
			body := ""
			if op.RequestBody != nil {
				body = "{}"
			}
			x.call("", method, p, body, want(401), badRequest())
			if op.OperationID == "listRegions" || op.OperationID == "listCalls" || op.OperationID == "getCall" {
				continue // either key
			}
			wrong := admin
			if op.Tags[0] == "workspaces" || op.Tags[0] == "audit" {
				wrong = ws
			}
			x.call(wrong, method, p, body, want(403), badRequest())
		}
	}

	x.requireEveryOperation()
}

// conformanceCall records a busy call of the default workspace through a
// callhistory.Recorder on the node's store and waits until it is listed.
func conformanceCall(t *testing.T, n *node.Node) {
	t.Helper()
	rec, err := callhistory.NewRecorder(n.Store().NC, n.Store(), callhistory.RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	rec.Publish(calls.Event{Kind: calls.Started, CallID: "conformance-call", Time: at, Workspace: "default", Number: "+12025550100", From: "+447700900123", To: "+12025550100"})
	rec.Publish(calls.Event{Kind: calls.Ended, CallID: "conformance-call", Time: at.Add(time.Second), Workspace: "default", Number: "+12025550100", Status: 486})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec.Close(ctx)
	r := callhistory.NewReader(n.Store(), nil)
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		_, err := r.Get(context.Background(), "default", "conformance-call")
		return err
	})
}

// startConformanceNode starts a node (nodetest.Start) with fast endpoint
// probes and a public URL.
func startConformanceNode(t *testing.T, mutate func(*config.Config)) *node.Node {
	t.Helper()
	return nodetest.Start(t, nodetest.Config(func(c *config.Config) {
		c.SIP.Probe.Interval = 200 * time.Millisecond
		c.SIP.Probe.Timeout = 150 * time.Millisecond
		c.PublicURL = "https://gw.example.com"
		c.Carriers.Sandbox.TerminationURI = "sip:127.0.0.1:9" // discard: POST /v1/calls places, nobody answers
	}), nodetest.Config(mutate))
}

// conformance sends requests to a node and validates them and their
// responses against the OpenAPI document the node serves.
type conformance struct {
	t      *testing.T
	base   string
	doc    *openapi3.T
	router routers.Router
	// answered: operationId → statuses seen.
	answered map[string]map[int]bool
}

func newConformance(t *testing.T, base string) *conformance {
	t.Helper()
	resp, err := http.Get(base + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		t.Fatalf("load the served OpenAPI document: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the served OpenAPI document is not valid: %v", err)
	}
	strictResponses(doc)
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &conformance{t: t, base: base, doc: doc, router: router, answered: map[string]map[int]bool{}}
}

// strictResponses makes every object schema reachable from a response
// refuse properties it does not list (unless it says what extra properties
// may hold), so that an undocumented field in a response fails validation.
// The published document stays open to additions; this test does not.
func strictResponses(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	var walk func(ref *openapi3.SchemaRef)
	walk = func(ref *openapi3.SchemaRef) {
		if ref == nil || ref.Value == nil || seen[ref.Value] {
			return
		}
		s := ref.Value
		seen[s] = true
		if s.Type.Is("object") && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
			no := false
			s.AdditionalProperties.Has = &no
		}
		for _, p := range s.Properties {
			walk(p)
		}
		walk(s.Items)
		walk(s.AdditionalProperties.Schema)
		for _, l := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf} {
			for _, x := range l {
				walk(x)
			}
		}
	}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, r := range op.Responses.Map() {
				for _, mt := range r.Value.Content {
					walk(mt.Schema)
				}
			}
		}
	}
}

type callOpts struct {
	want        []int
	hdr         http.Header
	contentType string
	badRequest  bool // the request breaks the document on purpose
	fieldErrors bool // the answer must be a problem naming fields in errors[]
}

type callOpt func(*callOpts)

// want lists the statuses the call may answer.
func want(codes ...int) callOpt { return func(o *callOpts) { o.want = codes } }

func header(k, v string) callOpt { return func(o *callOpts) { o.hdr.Set(k, v) } }

func contentType(ct string) callOpt { return func(o *callOpts) { o.contentType = ct } }

// badRequest marks a request that does not follow the document (the
// server must refuse it); it is not validated, its response is.
func badRequest() callOpt { return func(o *callOpts) { o.badRequest = true } }

func wantFieldErrors() callOpt { return func(o *callOpts) { o.fieldErrors = true } }

// call sends one request, checks its status, validates request and
// response against the document and returns the status and JSON body.
func (x *conformance) call(key, method, path, body string, opts ...callOpt) (int, map[string]any) {
	x.t.Helper()
	o := callOpts{hdr: http.Header{}}
	if body != "" {
		o.contentType = "application/json"
	}
	for _, f := range opts {
		f(&o)
	}
	newReq := func() *http.Request {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, x.base+path, rd)
		if err != nil {
			x.t.Fatal(err)
		}
		for k, v := range o.hdr {
			req.Header[k] = v
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if o.contentType != "" {
			req.Header.Set("Content-Type", o.contentType)
		}
		return req
	}
	what := method + " " + path

	// The document must describe the request.
	vreq := newReq()
	route, params, err := x.router.FindRoute(vreq)
	if err != nil {
		x.t.Fatalf("%s: not an operation of the document: %v", what, err)
	}
	reqInput := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: bearerPresent, MultiError: true},
	}
	if !o.badRequest {
		if err := openapi3filter.ValidateRequest(context.Background(), reqInput); err != nil {
			x.t.Fatalf("%s: the request does not follow the document: %v", what, err)
		}
	}

	resp, err := http.DefaultClient.Do(newReq())
	if err != nil {
		x.t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		x.t.Fatal(err)
	}
	if len(o.want) > 0 && !containsInt(o.want, resp.StatusCode) {
		x.t.Fatalf("%s: %d %s, want %v", what, resp.StatusCode, raw, o.want)
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: reqInput,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(raw)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	})
	if err != nil {
		x.t.Fatalf("%s: the response does not follow the document:\n%d %s\n%v", what, resp.StatusCode, raw, err)
	}
	var m map[string]any
	if len(bytes.TrimSpace(raw)) > 0 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") {
		if err := json.Unmarshal(raw, &m); err != nil {
			x.t.Fatalf("%s: %d, body not a JSON object: %s", what, resp.StatusCode, raw)
		}
	}
	if resp.StatusCode >= 400 {
		if m["status"] != float64(resp.StatusCode) {
			x.t.Fatalf("%s: problem status %v, HTTP status %d", what, m["status"], resp.StatusCode)
		}
		if errs, _ := m["errors"].([]any); o.fieldErrors && len(errs) == 0 {
			x.t.Fatalf("%s: %d without errors[] naming the fields: %s", what, resp.StatusCode, raw)
		}
	}
	op := route.Operation.OperationID
	if x.answered[op] == nil {
		x.answered[op] = map[int]bool{}
	}
	x.answered[op][resp.StatusCode] = true
	return resp.StatusCode, m
}

// workspaceKey creates a workspace without credits and returns its key.
func (x *conformance) workspaceKey(admin, id string) string {
	x.t.Helper()
	_, m := x.call(admin, "POST", "/v1/workspaces", `{"id":"`+id+`"}`, want(201))
	return m["api_key"].(string)
}

// requireEveryOperation fails for an operation of the document that no
// request got a success from, and logs documented statuses never seen.
func (x *conformance) requireEveryOperation() {
	x.t.Helper()
	var missing, unseen []string
	for path, item := range x.doc.Paths.Map() {
		for method, op := range item.Operations() {
			got := x.answered[op.OperationID]
			ok := false
			for code := range got {
				ok = ok || (code >= 200 && code < 300)
			}
			if !ok {
				missing = append(missing, method+" "+path+" ("+op.OperationID+")")
			}
			for code := range op.Responses.Map() {
				if c, err := parseStatus(code); err == nil && !got[c] {
					unseen = append(unseen, op.OperationID+" "+code)
				}
			}
		}
	}
	sort.Strings(missing)
	sort.Strings(unseen)
	if len(unseen) > 0 {
		x.t.Logf("documented statuses this test does not provoke: %s", strings.Join(unseen, ", "))
	}
	if len(missing) > 0 {
		x.t.Fatalf("operations of the document never answered with a success:\n  %s", strings.Join(missing, "\n  "))
	}
}

func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if !strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
		return errors.New("no bearer key")
	}
	return nil
}

func parseStatus(s string) (int, error) {
	var c int
	_, err := fmt.Sscanf(s, "%d", &c)
	return c, err
}

func containsInt(l []int, v int) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}
