package node_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
)

// agentBody is a POST/PUT /v1/agents body with one endpoint.
func agentBody(id, uri string) string {
	b, _ := json.Marshal(map[string]any{"id": id, "name": "Bot", "endpoints": []any{map[string]string{"region": "us-east", "uri": uri}}})
	return string(b)
}

// fieldNamed reports whether a problem's errors[] name field.
func fieldNamed(m map[string]any, field string) bool {
	errs, _ := m["errors"].([]any)
	for _, e := range errs {
		if e.(map[string]any)["field"] == field {
			return true
		}
	}
	return false
}

// newWorkspaceClient creates workspace id through the admin key and
// returns a client with its API key.
func newWorkspaceClient(t *testing.T, n *node.Node, id string, credits int) httpClient {
	t.Helper()
	admin := httpClient{t: t, base: n.HTTPAddr(), key: n.AdminKey()}
	code, m := admin.do("POST", "/v1/workspaces", fmt.Sprintf(`{"id":%q,"credits":%d}`, id, credits))
	if code != 201 {
		t.Fatalf("create workspace %s: %d %v", id, code, m)
	}
	return httpClient{t: t, base: n.HTTPAddr(), key: m["api_key"].(string)}
}

// Endpoint URIs go onto the wire (the INVITE's Request-URI, TwiML's
// <Sip>): anything that does not parse cleanly into a SIP URI with a
// host, a port in range and a transport we speak is a 400 naming the
// endpoint, on create and on update, and nothing is stored.
func TestEndpointURIsAreValidatedStrictly(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	if code, m := c.do("POST", "/v1/agents", agentBody("bot", "sip:bot@127.0.0.1:5090;transport=udp")); code != 201 {
		t.Fatalf("create agent: %d %v", code, m)
	}
	udp := n.SIP().UDPAddr()
	bad := []struct{ name, uri, want string }{
		{"CRLF in a parameter", "sip:bot@127.0.0.1:5090;transport=udp\r\nX-Injected: yes", "control"},
		{"LF in a parameter", "sip:bot@127.0.0.1:5090;x=1\nVia: SIP/2.0/UDP evil", "control"},
		{"CR in the user", "sip:b\rot@127.0.0.1:5090", "control"},
		{"NUL", "sip:bot@127.0.0.1:5090\x00", "control"},
		{"tab", "sip:bot@127.0.0.1:5090;\ttransport=udp", "control"},
		{"port too large", "sip:bot@127.0.0.1:99999", "port"},
		{"negative port", "sip:bot@127.0.0.1:-1", "port"},
		{"port zero", "sip:bot@127.0.0.1:0", "port"},
		{"port not a number", "sip:bot@127.0.0.1:50a0", "port"},
		{"space in the host", "sip:bot@127.0.0 .1:5090", "space"},
		{"transport ws", "sip:bot@127.0.0.1:5090;transport=ws", "transport"},
		{"transport sctp", "sip:bot@127.0.0.1:5090;transport=sctp", "transport"},
		{"empty user", "sip:@127.0.0.1:5090", "user"},
		{"password", "sip:bot:hunter2@127.0.0.1:5090", "password"},
		{"URI headers", "sip:bot@127.0.0.1:5090?Subject=hi", "header"},
		{"maddr", "sip:bot@127.0.0.1:5090;maddr=10.0.0.1", "parameter"},
		{"no host", "sip:bot@", "host"},
		{"bad host", "sip:bot@exa_mple..com", "host"},
		{"unspecified address", "sip:bot@0.0.0.0:5090", "host"},
		{"escaped CRLF", "sip:b%0D%0Aot@127.0.0.1:5090", "control"},
		{"the gateway itself", "sip:bot@" + udp.String(), "gateway"},
		{"the gateway itself over TCP", "sip:bot@" + n.SIP().TCPAddr().String() + ";transport=tcp", "gateway"},
		{"the gateway by name", fmt.Sprintf("sip:bot@localhost:%d", udp.Port()), "gateway"},
		{"not sip", "http://127.0.0.1:5090", "sip"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			for _, req := range []struct{ method, path, id string }{{"POST", "/v1/agents", "new"}, {"PUT", "/v1/agents/bot", "bot"}} {
				code, m := c.do(req.method, req.path, agentBody(req.id, tc.uri))
				if code != 400 || !fieldNamed(m, "endpoints[0].uri") {
					t.Fatalf("%s %s with %q: %d %v, want 400 naming endpoints[0].uri", req.method, req.path, tc.uri, code, m)
				}
				if !strings.Contains(strings.ToLower(fmt.Sprint(m["errors"])), tc.want) {
					t.Errorf("%s %q: errors %v do not mention %q", req.method, tc.uri, m["errors"], tc.want)
				}
			}
		})
	}
	// Nothing bad was stored: the agent keeps its endpoint, no new agent.
	code, m := c.do("GET", "/v1/agents", "")
	if code != 200 || fmt.Sprint(m["agents"]) == "" || len(m["agents"].([]any)) != 1 {
		t.Fatalf("agents after bad requests: %d %v", code, m)
	}
	if got := m["agents"].([]any)[0].(map[string]any)["endpoints"].([]any)[0].(map[string]any)["uri"]; got != "sip:bot@127.0.0.1:5090;transport=udp" {
		t.Fatalf("endpoint after bad updates: %v", got)
	}
	// Good URIs are accepted and stored in one canonical form.
	good := []struct{ uri, stored string }{
		{"sip:bot@127.0.0.1:5090;transport=udp", "sip:bot@127.0.0.1:5090;transport=udp"},
		{"SIP:bot@127.0.0.1:5090;Transport=TCP", "sip:bot@127.0.0.1:5090;transport=tcp"},
		{"sips:bot@agent.example.com;transport=tls", "sips:bot@agent.example.com;transport=tls"},
		{"sip:127.0.0.1:5091", "sip:127.0.0.1:5091"},
		{"sip:bot@[::1]:5090", "sip:bot@[::1]:5090"},
		{"sip:%2B14155550100@127.0.0.1:5090", "sip:%2B14155550100@127.0.0.1:5090"},
	}
	for _, tc := range good {
		code, m := c.do("PUT", "/v1/agents/bot", agentBody("bot", tc.uri))
		if code != 200 {
			t.Errorf("PUT %q: %d %v, want 200", tc.uri, code, m)
			continue
		}
		if got := m["endpoints"].([]any)[0].(map[string]any)["uri"]; got != tc.stored {
			t.Errorf("PUT %q stored %v, want %q", tc.uri, got, tc.stored)
		}
	}
}

// GET /v1/regions shows a workspace only its own agents' endpoints; the
// admin key sees every workspace's.
func TestRegionsShowOnlyTheCallersEndpoints(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	a := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	b := newWorkspaceClient(t, n, "b", 0)
	admin := httpClient{t: t, base: n.HTTPAddr(), key: n.AdminKey()}
	const uriA, uriB = "sip:alpha@127.0.0.1:5090", "sip:beta@127.0.0.2:5090"
	if code, m := a.do("POST", "/v1/agents", agentBody("bot", uriA)); code != 201 {
		t.Fatalf("a: %d %v", code, m)
	}
	if code, m := b.do("POST", "/v1/agents", `{"id":"bot","name":"B","endpoints":[{"region":"eu-west","uri":"`+uriB+`"}]}`); code != 201 {
		t.Fatalf("b: %d %v", code, m)
	}
	uris := func(c httpClient) (map[string]bool, []string) {
		code, m := c.do("GET", "/v1/regions", "")
		if code != 200 {
			t.Fatalf("regions: %d %v", code, m)
		}
		got := map[string]bool{}
		var names []string
		for _, r := range m["regions"].([]any) {
			names = append(names, r.(map[string]any)["name"].(string))
			for _, e := range r.(map[string]any)["endpoints"].([]any) {
				got[e.(map[string]any)["uri"].(string)] = true
			}
		}
		return got, names
	}
	testwait.CheckFor(t, 20*time.Second, 10*time.Millisecond, func() error {
		if got, _ := uris(admin); !got[uriA] || !got[uriB] {
			return fmt.Errorf("admin sees %v, want both workspaces' endpoints", got)
		}
		return nil
	})
	if got, names := uris(a); !got[uriA] || got[uriB] || len(got) != 1 || fmt.Sprint(names) != "[us-east]" {
		t.Errorf("workspace a sees %v in regions %v, want only %s in us-east", got, names, uriA)
	}
	if got, names := uris(b); !got[uriB] || got[uriA] || len(got) != 1 || fmt.Sprint(names) != "[eu-west]" {
		t.Errorf("workspace b sees %v in regions %v, want only %s in eu-west", got, names, uriB)
	}
	c := newWorkspaceClient(t, n, "c", 0)
	if got, names := uris(c); len(got) != 0 || len(names) != 0 {
		t.Errorf("a workspace without agents sees %v in %v", got, names)
	}
}

// A workspace cannot register another workspace's number as its business
// line, nor forward to a gateway number it does not hold.
func TestForwardingCannotSquatAnotherWorkspacesNumbers(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	a := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	b := newWorkspaceClient(t, n, "b", 1000)
	numA := firstAvailable(t, a, "228")
	if code, m := a.do("POST", "/v1/numbers", `{"phone_number":"`+numA+`"}`); code != 201 {
		t.Fatalf("a buys: %d %v", code, m)
	}
	numB := firstAvailable(t, b, "229")
	if code, m := b.do("POST", "/v1/numbers", `{"phone_number":"`+numB+`"}`); code != 201 {
		t.Fatalf("b buys: %d %v", code, m)
	}
	// b registers a's gateway number as its business line.
	code, m := b.do("POST", "/v1/forwarding", `{"business_number":"`+numA+`","gateway_number":"`+numB+`"}`)
	if code != 400 || !fieldNamed(m, "business_number") || !strings.Contains(fmt.Sprint(m["errors"]), "another workspace") {
		t.Fatalf("b registers a's number as a business line: %d %v, want 400 on business_number", code, m)
	}
	// b forwards its line to a's gateway number.
	code, m = b.do("POST", "/v1/forwarding", `{"business_number":"+14155550199","gateway_number":"`+numA+`"}`)
	if code != 400 || !fieldNamed(m, "gateway_number") {
		t.Fatalf("b forwards to a's number: %d %v, want 400 on gateway_number", code, m)
	}
	if _, m := b.do("GET", "/v1/forwarding", ""); len(m["forwarding"].([]any)) != 0 {
		t.Fatalf("refused registrations were stored: %v", m)
	}
	// A line no one holds in callgate is fine, and then it is taken.
	if code, m := b.do("POST", "/v1/forwarding", `{"business_number":"+14155550199","gateway_number":"`+numB+`"}`); code != 201 {
		t.Fatalf("b registers its own line: %d %v", code, m)
	}
	if code, m := a.do("POST", "/v1/forwarding", `{"business_number":"+14155550199","gateway_number":"`+numA+`"}`); code != 409 {
		t.Fatalf("a registers b's line: %d %v, want 409", code, m)
	}
	// a's registration of its own line still works.
	if code, m := a.do("POST", "/v1/forwarding", `{"business_number":"+14155550123","gateway_number":"`+numA+`"}`); code != 201 {
		t.Fatalf("a registers its own line: %d %v", code, m)
	}
}

// Path ids that cannot name anything (not valid NATS keys among them) are
// 404s, never a 500 with an ERROR line.
func TestPathIDsThatCannotExistAre404(t *testing.T) {
	n, logs := startNodeWithLog(t, nil)
	defer n.Close()
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	admin := httpClient{t: t, base: n.HTTPAddr(), key: n.AdminKey()}
	ids := []string{"%00", "a:b", "$KV", "a.b", "a*", ">", "A", "a%2Fb", "%E2%82%AC", strings.Repeat("a", 300), "a%20b", "%2E"}
	type req struct {
		client       httpClient
		method, path string
		body         string
	}
	var reqs []req
	for _, id := range ids {
		reqs = append(reqs,
			req{c, "GET", "/v1/integrations/" + id, ""},
			req{c, "DELETE", "/v1/integrations/" + id, ""},
			req{c, "GET", "/v1/integrations/" + id + "/numbers", ""},
			req{c, "POST", "/v1/integrations/" + id + "/import", `{"phone_numbers":["+14155550101"]}`},
			req{c, "GET", "/v1/agents/" + id, ""},
			req{c, "PUT", "/v1/agents/" + id, `{"name":"x","endpoints":[{"region":"us-east","uri":"sip:x@127.0.0.1:5090"}]}`},
			req{c, "DELETE", "/v1/agents/" + id, ""},
			req{admin, "POST", "/v1/workspaces/" + id + "/credits", `{"amount":5}`},
			req{c, "GET", "/v1/numbers/" + id, ""},
			req{c, "PATCH", "/v1/numbers/" + id, `{"voice_region":"us-east"}`},
			req{c, "DELETE", "/v1/numbers/" + id, ""},
			req{c, "DELETE", "/v1/forwarding/" + id, ""},
		)
	}
	for _, r := range reqs {
		code, m := r.client.do(r.method, r.path, r.body)
		if code != 404 {
			u, _ := url.PathUnescape(r.path)
			t.Errorf("%s %s (%q): %d %v, want 404", r.method, r.path, u, code, m)
		}
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Fatalf("bad path ids logged errors:\n%s", logs.String())
	}
}
