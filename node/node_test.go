package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

// startNode starts a node on dataDir (nodetest.Start), closed when the
// test ends.
func startNode(t *testing.T, dataDir string, mutate func(*config.Config)) *node.Node {
	t.Helper()
	return nodetest.Start(t, nodetest.DataDir(dataDir), nodetest.Config(mutate))
}

type httpClient struct {
	t    *testing.T
	base string
	key  string
}

func (c httpClient) do(method, path, body string, hdr ...string) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://"+c.base+path, rd)
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			c.t.Fatalf("%s %s: %d, not JSON: %s", method, path, resp.StatusCode, b)
		}
	}
	if resp.StatusCode >= 400 && strings.HasPrefix(path, "/v1/") && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		c.t.Fatalf("%s %s: %d with Content-Type %q, want application/problem+json", method, path, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, m
}

func firstAvailable(t *testing.T, c httpClient, area string) string {
	t.Helper()
	code, m := c.do("GET", "/v1/marketplace/numbers?carrier=sandbox&country=US&area_code="+area+"&limit=1", "")
	if code != 200 {
		t.Fatalf("search: %d %v", code, m)
	}
	return m["numbers"].([]any)[0].(map[string]any)["phone_number"].(string)
}

func TestFirstStartThenRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, nil)
	for _, f := range []string{"api-key", "admin-key"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	if code, _ := c.do("GET", "/healthz", ""); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, _ := c.do("GET", "/readyz", ""); code != 200 {
		t.Fatalf("readyz %d", code)
	}
	num := firstAvailable(t, c, "228")
	if code, m := c.do("POST", "/v1/agents", `{"id":"bot","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090;transport=udp"}]}`); code != 201 {
		t.Fatalf("agent: %d %v", code, m)
	}
	code, m := c.do("POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox"}`)
	if code != 201 || m["region"] != "Mississippi" || m["status"] != "active" {
		t.Fatalf("buy: %d %v", code, m)
	}
	if code, m := c.do("PATCH", "/v1/numbers/"+strings.TrimPrefix(num, "+"), `{"agent_id":"bot"}`); code != 200 || m["agent_id"] != "bot" {
		t.Fatalf("assign: %d %v", code, m)
	}
	_, before := c.do("GET", "/v1/credits", "")
	apiKey, adminKey := n.APIKey(), n.AdminKey()
	n.Close()

	n2 := startNode(t, dir, nil)
	defer n2.Close()
	if n2.APIKey() != apiKey || n2.AdminKey() != adminKey {
		t.Fatal("keys changed on restart")
	}
	c2 := httpClient{t: t, base: n2.HTTPAddr(), key: apiKey}
	code, got := c2.do("GET", "/v1/numbers/%2B"+strings.TrimPrefix(num, "+"), "")
	if code != 200 || got["agent_id"] != "bot" {
		t.Fatalf("number after restart: %d %v", code, got)
	}
	if code, _ := c2.do("GET", "/v1/agents/bot", ""); code != 200 {
		t.Fatalf("agent after restart: %d", code)
	}
	_, after := c2.do("GET", "/v1/credits", "")
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("ledger changed on restart:\nbefore %v\nafter  %v", before, after)
	}
	if after["balance"].(float64) != 900 {
		t.Fatalf("balance %v, want 900 (1000 - 100): credits re-created?", after["balance"])
	}
	// The routing table was rebuilt from NATS.
	if r, ok := n2.Table().Load().Lookup(num); !ok || r.Agent == nil || r.Agent.ID != "bot" {
		t.Fatalf("route after restart: %+v %v", r, ok)
	}
}

func TestTwoEmbeddedNodesSideBySide(t *testing.T) {
	a := startNode(t, t.TempDir(), nil)
	defer a.Close()
	b := startNode(t, t.TempDir(), nil)
	defer b.Close()
	if a.HTTPAddr() == b.HTTPAddr() || a.APIKey() == b.APIKey() {
		t.Fatal("nodes share an address or key")
	}
}

func TestExternalNATS(t *testing.T) {
	srv := storetest.RunJetStreamServer(t)
	env := map[string]string{"CALLGATE_NATS_URL": srv.ClientURL(), "CALLGATE_DATA_DIR": t.TempDir(), "CALLGATE_HTTP_ADDR": "127.0.0.1:0"}
	cfg, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, cfg.DataDir, func(c *config.Config) { c.NATS = cfg.NATS })
	defer n.Close()
	if n.Store().Embedded() {
		t.Fatal("node started an embedded server despite CALLGATE_NATS_URL")
	}
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	num := firstAvailable(t, c, "601")
	if code, m := c.do("POST", "/v1/numbers", `{"phone_number":"`+num+`"}`); code != 201 {
		t.Fatalf("buy: %d %v", code, m)
	}
	// The number is in the external server's KV.
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	kv, err := js.KeyValue(context.Background(), store.BucketNumbers)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), strings.TrimPrefix(num, "+")); err != nil {
		t.Fatalf("number not in external NATS: %v", err)
	}
}

func TestBadInputIs400AndChangesNothing(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	num := firstAvailable(t, c, "228")
	c.do("POST", "/v1/agents", `{"id":"bot","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090"}]}`)
	_, credits := c.do("GET", "/v1/credits", "")
	cases := []struct {
		method, path, body, field string
	}{
		{"POST", "/v1/numbers", `{"phone_number":`, "body"},
		{"POST", "/v1/numbers", `{"phone_number":12282001234}`, "phone_number"},
		{"POST", "/v1/numbers", `{"phone_number":"` + num + `","colour":"red"}`, "colour"},
		{"POST", "/v1/numbers", `{"phone_number":"+1228abc"}`, "phone_number"},
		{"POST", "/v1/numbers", `{"phone_number":"+99912345"}`, "phone_number"},
		{"POST", "/v1/numbers", `{"phone_number":"` + num + `","carrier":"acme"}`, "carrier"},
		{"POST", "/v1/numbers", `{"phone_number":"` + num + `"} {"x":1}`, "body"},
		{"POST", "/v1/numbers", ``, "body"},
		{"POST", "/v1/numbers", `[]`, "body"},
		{"POST", "/v1/agents", `{"id":"a b","name":"x","endpoints":[{"region":"us-east","uri":"sip:x@127.0.0.1"}]}`, "id"},
		{"POST", "/v1/agents", `{"id":"a","name":"x","endpoints":[{"region":"us-east","uri":"http://x"}]}`, "endpoints[0].uri"},
		{"POST", "/v1/agents", `{"id":"a","name":"x","endpoints":"sip:x@h"}`, "endpoints"},
		{"POST", "/v1/agents", `{"id":"a","name":"x","endpoints":[]}`, "endpoints"},
		{"PATCH", "/v1/numbers/" + num[1:], `{"agent_id":7}`, "agent_id"},
		{"GET", "/v1/marketplace/numbers?country=US&area_code=12a", "", "area_code"},
		{"GET", "/v1/marketplace/numbers?country=US&area_code=123", "", "area_code"},
		{"GET", "/v1/marketplace/numbers?country=USA", "", "country"},
		{"GET", "/v1/marketplace/numbers?country=US&limit=1000", "", "limit"},
		{"GET", "/v1/marketplace/numbers?country=US&type=landline", "", "type"},
		{"GET", "/v1/marketplace/numbers?country=US&features=fax", "", "features"},
		{"GET", "/v1/marketplace/numbers?country=US&page_token=garbage", "", "page_token"},
		{"POST", "/v1/forwarding", `{"business_number":"+1","gateway_number":"` + num + `"}`, "business_number"},
	}
	for _, tc := range cases {
		code, m := c.do(tc.method, tc.path, tc.body)
		if code != 400 {
			t.Errorf("%s %s %s: %d %v, want 400", tc.method, tc.path, tc.body, code, m)
			continue
		}
		errs, _ := m["errors"].([]any)
		found := false
		for _, e := range errs {
			if e.(map[string]any)["field"] == tc.field {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %s %s: errors %v do not name field %q", tc.method, tc.path, tc.body, errs, tc.field)
		}
	}
	if code, m := c.do("PATCH", "/v1/numbers/"+num[1:], `{"agent_id":"bot"}`); code != 404 {
		t.Fatalf("patch of an unowned number: %d %v", code, m)
	}
	if _, after := c.do("GET", "/v1/credits", ""); fmt.Sprint(after) != fmt.Sprint(credits) {
		t.Fatalf("credits changed by bad requests")
	}
	if _, m := c.do("GET", "/v1/numbers", ""); len(m["numbers"].([]any)) != 0 {
		t.Fatalf("bad requests created numbers: %v", m)
	}
	// An area code with no numbers is an empty list, not an error.
	code, m := c.do("GET", "/v1/marketplace/numbers?country=US&area_code=999", "")
	if code != 200 || len(m["numbers"].([]any)) != 0 {
		t.Fatalf("area code with no numbers: %d %v", code, m)
	}
}

func TestWorkspaceIsolationAndAdmin(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	a := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	admin := httpClient{t: t, base: n.HTTPAddr(), key: n.AdminKey()}
	if code, _ := a.do("POST", "/v1/workspaces", `{"id":"b","credits":500}`); code != 403 {
		t.Fatalf("workspace key created a workspace: %d", code)
	}
	if code, _ := (httpClient{t: t, base: n.HTTPAddr(), key: "nope"}).do("GET", "/v1/numbers", ""); code != 401 {
		t.Fatalf("bad key: %d", code)
	}
	if code, _ := (httpClient{t: t, base: n.HTTPAddr()}).do("GET", "/v1/numbers", ""); code != 401 {
		t.Fatalf("no key: %d", code)
	}
	code, m := admin.do("POST", "/v1/workspaces", `{"id":"b","credits":500}`)
	if code != 201 {
		t.Fatalf("create workspace: %d %v", code, m)
	}
	b := httpClient{t: t, base: n.HTTPAddr(), key: m["api_key"].(string)}
	if code, _ := admin.do("POST", "/v1/workspaces", `{"id":"b"}`); code != 409 {
		t.Fatalf("duplicate workspace: %d", code)
	}
	num := firstAvailable(t, a, "228")
	a.do("POST", "/v1/numbers", `{"phone_number":"`+num+`"}`)
	a.do("POST", "/v1/agents", `{"id":"bot","name":"Bot","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:5090"}]}`)
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/numbers/" + num[1:], ""},
		{"PATCH", "/v1/numbers/" + num[1:], `{"voice_region":"us-east"}`},
		{"DELETE", "/v1/numbers/" + num[1:], ""},
		{"GET", "/v1/agents/bot", ""},
		{"DELETE", "/v1/agents/bot", ""},
	} {
		if code, m := b.do(r.method, r.path, r.body); code != 404 {
			t.Errorf("workspace b %s %s: %d %v, want 404", r.method, r.path, code, m)
		}
	}
	if _, m := b.do("GET", "/v1/numbers", ""); len(m["numbers"].([]any)) != 0 {
		t.Fatal("workspace b lists a's numbers")
	}
	if _, m := b.do("GET", "/v1/credits", ""); m["balance"].(float64) != 500 {
		t.Fatalf("b credits: %v", m)
	}
	// b cannot buy a's number: it is taken.
	if code, m := b.do("POST", "/v1/numbers", `{"phone_number":"`+num+`"}`); code != 409 || !strings.Contains(m["detail"].(string), "purchased by another user") {
		t.Fatalf("b buys a's number: %d %v", code, m)
	}
	// Top-up by admin.
	if code, m := admin.do("POST", "/v1/workspaces/b/credits", `{"amount":250,"reason":"promo"}`); code != 201 || m["balance"].(float64) != 750 {
		t.Fatalf("top-up: %d %v", code, m)
	}
	if code, _ := admin.do("POST", "/v1/workspaces/zz/credits", `{"amount":250}`); code != 404 {
		t.Fatalf("top-up unknown workspace: %d", code)
	}
	// 402 when short.
	code, m = admin.do("POST", "/v1/workspaces", `{"id":"poor","credits":5}`)
	p := httpClient{t: t, base: n.HTTPAddr(), key: m["api_key"].(string)}
	if code, m := p.do("POST", "/v1/numbers", `{"phone_number":"`+firstAvailable(t, p, "228")+`"}`); code != 402 {
		t.Fatalf("short of credits: %d %v", code, m)
	}
}

func TestIdempotencyKeyOverHTTP(t *testing.T) {
	n := startNode(t, t.TempDir(), nil)
	defer n.Close()
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	num := firstAvailable(t, c, "228")
	body := `{"phone_number":"` + num + `"}`
	code1, m1 := c.do("POST", "/v1/numbers", body, "Idempotency-Key", "abc")
	code2, m2 := c.do("POST", "/v1/numbers", body, "Idempotency-Key", "abc")
	if code1 != 201 || code2 != 201 || m1["phone_number"] != m2["phone_number"] {
		t.Fatalf("idempotent replay: %d %v / %d %v", code1, m1, code2, m2)
	}
	_, cr := c.do("GET", "/v1/credits", "")
	if cr["balance"].(float64) != 900 {
		t.Fatalf("charged twice: %v", cr["balance"])
	}
}

// TestReadyzWaitsForTheStore: with an external NATS that is not up yet,
// /healthz answers 200 and /readyz 503 until NATS comes and the
// snapshot is loaded.
func TestReadyzWaitsForTheStore(t *testing.T) {
	natsPort := freePort(t)
	httpPort := freePort(t)
	cfg := config.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", httpPort)
	cfg.SIP.Addr = "127.0.0.1:0"
	cfg.NATS.URL = fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	type result struct {
		n   *node.Node
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := node.Start(context.Background(), cfg, node.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
		done <- result{n, err}
	}()
	c := httpClient{t: t, base: cfg.HTTPAddr}
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		resp, err := http.Get("http://" + cfg.HTTPAddr + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if code, m := c.do("GET", "/readyz", ""); code != 503 {
		t.Fatalf("readyz before NATS: %d %v", code, m)
	}
	srv := storetest.RunJetStreamServerOnPort(t, natsPort)
	_ = srv
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.n.Close()
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if code, _ := c.do("GET", "/readyz", ""); code != 200 {
			return fmt.Errorf("readyz %d", code)
		}
		return nil
	})
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSecretKeyMustMatchTheCluster: a second node sharing the NATS with a
// different credentials key refuses to start and says why.
func TestSecretKeyMustMatchTheCluster(t *testing.T) {
	srv := storetest.RunJetStreamServer(t)
	a := startNode(t, t.TempDir(), func(c *config.Config) { c.NATS.URL = srv.ClientURL() })
	defer a.Close()
	cfg := config.Default()
	cfg.DataDir = t.TempDir() // its own generated secret.key
	testPorts(&cfg)
	cfg.NATS.URL = srv.ClientURL()
	_, err := node.Start(context.Background(), cfg, node.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err == nil || !strings.Contains(err.Error(), "same secret_key") {
		t.Fatalf("node with another key: %v", err)
	}
	// With the first node's key it starts.
	key, _ := os.ReadFile(filepath.Join(a.Config().DataDir, "secret.key"))
	cfg.DataDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "secret.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	b := startNode(t, cfg.DataDir, func(c *config.Config) { c.NATS.URL = srv.ClientURL() })
	b.Close()
}
