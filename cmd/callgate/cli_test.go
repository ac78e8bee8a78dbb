package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// startNode starts a node (nodetest.Start), closed when the test ends.
func startNode(t *testing.T, mutate ...func(*config.Config)) *node.Node {
	t.Helper()
	var opts []nodetest.Option
	for _, m := range mutate {
		opts = append(opts, nodetest.Config(m))
	}
	return nodetest.Start(t, opts...)
}

// result is one CLI run: its exit code and what it wrote.
type result struct {
	code        int
	out, errOut string
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.errOut
}

// cg runs the CLI against n (global flags first, as a user may type them).
func cg(t *testing.T, n *node.Node, stdin string, args ...string) result {
	t.Helper()
	full := append([]string{"--api", "http://" + n.HTTPAddr(), "--data-dir", n.Config().DataDir}, args...)
	return runCLI(t, stdin, full...)
}

func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	t.Setenv("CALLGATE_API", "")
	t.Setenv("CALLGATE_API_KEY", "")
	t.Setenv("CALLGATE_DATA_DIR", "")
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return result{code: code, out: out.String(), errOut: errOut.String()}
}

func TestCLIBuyFlow(t *testing.T) {
	n := startNode(t)
	r := cg(t, n, "", "numbers", "search", "--area-code", "228", "--limit", "2", "--json")
	if r.code != 0 {
		t.Fatal(r)
	}
	var res struct {
		Numbers []struct {
			PhoneNumber string `json:"phone_number"`
			MonthlyCost int64  `json:"monthly_cost"`
		}
	}
	if err := json.Unmarshal([]byte(r.out), &res); err != nil || len(res.Numbers) != 2 {
		t.Fatalf("search --json: %v %s", err, r.out)
	}
	num := res.Numbers[0].PhoneNumber
	r = cg(t, n, "", "numbers", "search", "--area-code", "228", "--limit", "2")
	if r.code != 0 || !strings.HasPrefix(r.out, "NUMBER") || !strings.Contains(r.out, num) || !strings.Contains(r.out, "Mississippi") {
		t.Fatalf("search table: %s", r)
	}
	// Declining the confirmation buys nothing; the prompt (on stderr) names
	// the charge and no proration.
	r = cg(t, n, "n\n", "numbers", "buy", num)
	if r.code != 0 || !strings.Contains(r.errOut, "100 credits") || !strings.Contains(r.errOut, "no proration") || !strings.Contains(r.errOut, "not bought") {
		t.Fatalf("declined buy: %s", r)
	}
	if r.out != "" {
		t.Fatalf("the prompt went to stdout: %q", r.out)
	}
	if r := cg(t, n, "", "numbers", "list", "--json"); strings.Contains(r.out, num) {
		t.Fatal("declined buy bought the number")
	}
	// Without an answer on stdin the buy is refused as a usage error.
	if r := cg(t, n, "", "numbers", "buy", num); r.code != exitUsage || !strings.Contains(r.errOut, "--yes") {
		t.Fatalf("buy with no answer: %s", r)
	}
	if r := cg(t, n, "y\n", "numbers", "buy", num); r.code != 0 {
		t.Fatal(r)
	}
	if r := cg(t, n, "", "agents", "create", "bot", "--endpoint", "us-east=sip:bot@127.0.0.1:5090"); r.code != 0 {
		t.Fatal(r)
	}
	if r := cg(t, n, "", "numbers", "assign", num, "bot"); r.code != 0 {
		t.Fatal(r)
	}
	r = cg(t, n, "", "numbers", "list")
	if r.code != 0 || !strings.Contains(r.out, num) || !strings.Contains(r.out, "bot") {
		t.Fatalf("list: %s", r)
	}
	r = cg(t, n, "", "credits")
	if r.code != 0 || !strings.Contains(r.out, "900 credits") || !strings.Contains(r.out, "purchase") {
		t.Fatalf("credits: %s", r)
	}
	// Errors from the API are shown with their status and detail; a
	// conflict exits 4.
	r = cg(t, n, "", "numbers", "buy", num, "--yes")
	if r.code != exitConflict || !strings.Contains(r.errOut, "409") {
		t.Fatalf("buying an owned number: %s", r)
	}
	if r := cg(t, n, "", "agents", "delete", "bot"); r.code != exitConflict || !strings.Contains(r.errOut, "409") {
		t.Fatalf("delete agent with numbers: %s", r)
	}
	if r := cg(t, n, "", "numbers", "release", num, "-y"); r.code != 0 || !strings.Contains(r.out, "released") {
		t.Fatal(r)
	}
}

// Each command's help lists its own flags (and the global ones), not
// every command's.
func TestCLIHelpPerCommand(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"numbers", "list", "--help"}, []string{"callgate numbers list", "--json", "--api"}, []string{"--area-code", "--credits", "--endpoint", "--yes", "--idempotency-key"}},
		{[]string{"numbers", "search", "--help"}, []string{"--area-code", "--page-token", "--carrier"}, []string{"--credits", "--endpoint", "--yes"}},
		{[]string{"numbers", "buy", "--help"}, []string{"--yes", "-y", "--idempotency-key", "--country"}, []string{"--area-code", "--credits"}},
		{[]string{"agents", "create", "--help"}, []string{"--endpoint", "--media"}, []string{"--area-code", "--credits", "--carrier"}},
		{[]string{"integrations", "import", "--help"}, []string{"--mode", "outbound_only", "full_control", "--number"}, []string{"--area-code", "--endpoint"}},
		{[]string{"credits", "topup", "--help"}, []string{"--idempotency-key", "--reason"}, []string{"--area-code", "--endpoint"}},
		{[]string{"help", "workspaces", "create"}, []string{"--credits", "--name"}, []string{"--area-code", "--endpoint"}},
	} {
		r := runCLI(t, "", tc.args...)
		if r.code != 0 {
			t.Errorf("%v: %s", tc.args, r)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(r.out, w) {
				t.Errorf("%v: help lacks %q:\n%s", tc.args, w, r.out)
			}
		}
		for _, w := range tc.not {
			if strings.Contains(r.out, w) {
				t.Errorf("%v: help lists another command's flag %q:\n%s", tc.args, w, r.out)
			}
		}
	}
	// The top-level help lists the command groups.
	r := runCLI(t, "", "--help")
	for _, w := range []string{"serve", "numbers", "agents", "integrations", "credits", "workspaces", "regions", "audit", "forwarding", "completion"} {
		if !strings.Contains(r.out, w) {
			t.Errorf("callgate --help lacks %q:\n%s", w, r.out)
		}
	}
}

// fakeAPI is an HTTP server on 127.0.0.1 that counts requests and answers
// with status and body.
func fakeAPI(t *testing.T, status int, body string) (url string, hits *atomic.Int64) {
	hits = new(atomic.Int64)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, hits
}

// Usage errors exit 2 and send nothing to the API.
func TestCLIUsageErrors(t *testing.T) {
	api, hits := fakeAPI(t, 500, `{"type":"about:blank","title":"Internal error","status":500}`)
	for _, args := range [][]string{
		{"numbers", "list", "--credits", "5"},
		{"numbers", "frob"},
		{"numbers"},
		{"frob"},
		{},
		{"numbers", "buy"},
		{"numbers", "assign", "+12285340406"},
		{"numbers", "show", "+12285340406", "extra"},
		{"agents", "list", "--area-code", "228"},
		{"credits", "topup", "acme", "ten"},
		{"credits", "bogus"},
		{"integrations", "import", "tw1", "+14155550101", "--mode", "everything"},
		{"integrations", "import", "tw1"},
		{"integrations", "create", "--name", "x"},
		{"numbers", "show", "12345"},
		{"agents", "update", "bot"},
	} {
		r := runCLI(t, "", append([]string{"--api", api, "--key", "k"}, args...)...)
		if r.code != exitUsage {
			t.Errorf("%v: want exit 2: %s", args, r)
		}
		if r.errOut == "" || r.out != "" {
			t.Errorf("%v: want the error on stderr only: %s", args, r)
		}
	}
	if h := hits.Load(); h != 0 {
		t.Errorf("usage errors sent %d request(s) to the API", h)
	}
	r := runCLI(t, "", "--api", api, "--key", "k", "numbers", "list", "--credits", "5")
	if !strings.Contains(r.errOut, "--credits") || !strings.Contains(r.errOut, "callgate numbers list --help") {
		t.Errorf("unknown flag: the message names neither the flag nor the help: %s", r)
	}
}

// Global flags go before or after the command.
func TestCLIGlobalFlagsAnywhere(t *testing.T) {
	n := startNode(t)
	api, dir := "http://"+n.HTTPAddr(), n.Config().DataDir
	for _, args := range [][]string{
		{"--json", "--api", api, "--data-dir", dir, "numbers", "list"},
		{"--api=" + api, "numbers", "--json", "list", "--data-dir", dir},
		{"numbers", "list", "--json", "--api", api, "--data-dir", dir},
	} {
		r := runCLI(t, "", args...)
		var v struct {
			Numbers []any `json:"numbers"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.out), &v) != nil || v.Numbers == nil {
			t.Errorf("%v: %s", args, r)
		}
	}
	// The key from --key (env CALLGATE_API_KEY) instead of the data dir.
	key, err := os.ReadFile(filepath.Join(dir, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "", "agents", "list", "--key", strings.TrimSpace(string(key)), "--api", api, "--data-dir", t.TempDir()); r.code != 0 || !strings.HasPrefix(r.out, "ID") {
		t.Errorf("--key: %s", r)
	}
	if r := runCLI(t, "", "agents", "list", "--api", api, "--data-dir", t.TempDir()); r.code != exitUsage || !strings.Contains(r.errOut, "no API key") {
		t.Errorf("no key: %s", r)
	}
}

// Under --json an error is the API's problem+json, on stderr; stdout stays empty.
func TestCLIJSONErrors(t *testing.T) {
	n := startNode(t)
	r := cg(t, n, "", "--json", "numbers", "show", "+12285550123")
	if r.code != exitNotFound || r.out != "" {
		t.Fatalf("not found: %s", r)
	}
	var p struct {
		Type, Title, Detail string
		Status              int
	}
	if err := json.Unmarshal([]byte(r.errOut), &p); err != nil || p.Status != 404 || p.Title == "" || p.Type == "" || !strings.Contains(p.Detail, "+12285550123") {
		t.Fatalf("problem: %v %+v\n%s", err, p, r.errOut)
	}
	// A validation error keeps the API's errors[] (field names).
	r = cg(t, n, "", "agents", "create", "bot", "--json", "--endpoint", "us-east=not-a-uri")
	var v struct {
		Status int
		Errors []struct{ Field string }
	}
	if r.code != exitUsage || json.Unmarshal([]byte(r.errOut), &v) != nil || v.Status != 400 || len(v.Errors) == 0 {
		t.Fatalf("validation problem: %s", r)
	}
	// Errors of the CLI itself are problem documents too.
	r = cg(t, n, "", "--json", "numbers", "list", "--bogus")
	var u map[string]any
	if r.code != exitUsage || json.Unmarshal([]byte(r.errOut), &u) != nil || u["type"] != "urn:callgate:cli:usage" || !strings.Contains(u["detail"].(string), "--bogus") {
		t.Fatalf("usage problem: %s", r)
	}
	// Without --json the same error is one line of text.
	r = cg(t, n, "", "numbers", "show", "+12285550123")
	if r.code != exitNotFound || !strings.HasPrefix(r.errOut, "callgate: 404 Not found: ") || strings.Contains(r.errOut, "{") {
		t.Fatalf("text error: %s", r)
	}
}

// Exit codes by class: not found 3, conflict or payment 4, server or network 5.
func TestCLIExitCodes(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+14155550101", Voice: true}}})
	n := startNode(t, func(c *config.Config) { c.Carriers.Twilio.APIBase = fake.URL() })

	for _, args := range [][]string{
		{"numbers", "show", "+12285550123"},
		{"agents", "show", "nobody"},
		{"agents", "update", "nobody", "--name", "x"},
		{"integrations", "show", "nothere"},
		{"forwarding", "delete", "+12285550123"},
	} {
		if r := cg(t, n, "", args...); r.code != exitNotFound {
			t.Errorf("%v: want exit 3: %s", args, r)
		}
	}

	// 402: a workspace without credits buys a number.
	r := cg(t, n, "", "workspaces", "create", "poor", "--json")
	var ws struct {
		APIKey string `json:"api_key"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &ws) != nil || ws.APIKey == "" {
		t.Fatalf("workspaces create: %s", r)
	}
	r = cg(t, n, "", "--key", ws.APIKey, "numbers", "buy", "+12285340406", "--yes")
	if r.code != exitConflict || !strings.Contains(r.errOut, "402") {
		t.Fatalf("buy without credits: %s", r)
	}

	// 5xx: the carrier fails (the API answers 502).
	r = cg(t, n, "", "integrations", "create", "--carrier", "twilio", "--credential", "account_sid="+fake.AccountSID(), "--credential", "auth_token="+fake.AuthToken(), "--json")
	var it struct{ ID string }
	if r.code != 0 || json.Unmarshal([]byte(r.out), &it) != nil || it.ID == "" {
		t.Fatalf("integrations create: %s", r)
	}
	fake.FailNext(twiliofake.Failure{Status: 500, Times: 100})
	if r := cg(t, n, "", "integrations", "numbers", it.ID); r.code != exitServer || !strings.Contains(r.errOut, "502") {
		t.Errorf("carrier failure: want exit 5: %s", r)
	}

	// Network: nothing listens at --api.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	r = runCLI(t, "", "--api", dead, "--key", "k", "agents", "list")
	if r.code != exitServer || !strings.Contains(r.errOut, "cannot reach the callgate API") {
		t.Errorf("API down: want exit 5: %s", r)
	}
	r = runCLI(t, "", "--api", dead, "--key", "k", "--json", "agents", "list")
	var p map[string]any
	if r.code != exitServer || json.Unmarshal([]byte(r.errOut), &p) != nil || p["title"] != "API unreachable" {
		t.Errorf("API down under --json: %s", r)
	}
	// A 5xx that is not a problem document (a proxy) still exits 5 and
	// is a problem document under --json.
	api, _ := fakeAPI(t, 503, "<html>bad gateway</html>")
	r = runCLI(t, "", "--api", api, "--key", "k", "--json", "agents", "list")
	if r.code != exitServer || json.Unmarshal([]byte(r.errOut), &p) != nil || p["status"] != float64(503) {
		t.Errorf("proxy 503: %s", r)
	}
}

// The CLI reads numbers with the API's parser: a national number and one
// with the country code but no '+' are read alike, and messages show the
// number as typed.
func TestCLINumbersAsTyped(t *testing.T) {
	n := startNode(t)
	for _, typed := range []string{"2285340406", "12285490867"} {
		r := cg(t, n, "y\n", "numbers", "buy", typed)
		if r.code != 0 || !strings.Contains(r.out, "+1"+strings.TrimPrefix(typed, "1")) {
			t.Fatalf("buy %s: %s", typed, r)
		}
		if !strings.Contains(r.errOut, "Buy "+typed+" ") || strings.Contains(r.errOut, "+") {
			t.Errorf("buy %s: the prompt does not show the number as typed: %q", typed, r.errOut)
		}
		if r := cg(t, n, "", "numbers", "show", typed); r.code != 0 || !strings.Contains(r.out, "Mississippi") {
			t.Errorf("show %s: %s", typed, r)
		}
	}
	// Not found, as typed: no '+' the user did not type.
	for _, typed := range []string{"2285550123", "12285550123"} {
		r := cg(t, n, "", "numbers", "show", typed)
		if r.code != exitNotFound || !strings.Contains(r.errOut, typed) || strings.Contains(r.errOut, "+") {
			t.Errorf("show %s: %s", typed, r)
		}
	}
	// Refused alike, with the same hint.
	var hints []string
	for _, typed := range []string{"228534", "122853"} {
		r := cg(t, n, "", "numbers", "show", typed)
		if r.code != exitUsage || !strings.Contains(r.errOut, typed) || strings.Contains(r.errOut, "+") {
			t.Errorf("show %s: %s", typed, r)
		}
		hints = append(hints, strings.ReplaceAll(r.errOut, typed, "N"))
	}
	if hints[0] != hints[1] {
		t.Errorf("different hints:\n%s\n%s", hints[0], hints[1])
	}
	// --country reads national numbers of another country.
	if r := cg(t, n, "", "numbers", "show", "020 7946 0000", "--country", "GB"); r.code != exitNotFound || !strings.Contains(r.errOut, "020 7946 0000") {
		t.Errorf("GB national number: %s", r)
	}
	r := cg(t, n, "", "numbers", "release", "2285340406", "--yes")
	if r.code != 0 || strings.TrimSpace(r.out) != "released 2285340406" {
		t.Errorf("release: %s", r)
	}
	r = cg(t, n, "", "numbers", "release", "+1 228 549 0867", "--yes", "--json")
	if r.code != 0 || r.out != "" || !strings.Contains(r.errOut, "released +12285490867") {
		t.Errorf("release --json (stdout holds only JSON): %s", r)
	}
}

func TestCLIIntegrationsImport(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{
		{PhoneNumber: "+14155550101", Voice: true, SMS: true, VoiceURL: "https://old.example.com/voice"},
		{PhoneNumber: "+14155550102", Voice: true, VoiceURL: "https://old.example.com/voice2"},
		{PhoneNumber: "+14155550103", Voice: true},
	}})
	n := startNode(t, func(c *config.Config) {
		c.Carriers.Twilio.APIBase = fake.URL()
		c.PublicURL = "https://gw.example.com"
	})
	// The secret from stdin ("-"), not the command line.
	r := cg(t, n, fake.AuthToken()+"\n", "integrations", "create", "--name", "acme", "--carrier", "twilio",
		"--credential", "account_sid="+fake.AccountSID(), "--credential", "auth_token=-", "--json")
	var it struct{ ID string }
	if r.code != 0 || json.Unmarshal([]byte(r.out), &it) != nil || it.ID == "" {
		t.Fatalf("create: %s", r)
	}
	if strings.Contains(r.out, fake.AuthToken()) {
		t.Fatalf("the auth token was printed: %s", r.out)
	}
	if r := cg(t, n, "", "integrations", "list"); r.code != 0 || !strings.Contains(r.out, it.ID) || !strings.Contains(r.out, "acme") {
		t.Fatalf("list: %s", r)
	}
	if r := cg(t, n, "", "integrations", "show", it.ID); r.code != 0 || !strings.Contains(r.out, "twilio") {
		t.Fatalf("show: %s", r)
	}
	r = cg(t, n, "", "integrations", "numbers", it.ID)
	if r.code != 0 || !strings.Contains(r.out, "+14155550101") || !strings.Contains(r.out, "https://old.example.com/voice") || !strings.Contains(r.out, "yes") {
		t.Fatalf("numbers: %s", r)
	}
	// full_control asks first; declining changes nothing.
	r = cg(t, n, "n\n", "integrations", "import", it.ID, "4155550101", "--number", "+14155550102", "--mode", "full_control")
	if r.code != 0 || !strings.Contains(r.errOut, "full_control") || !strings.Contains(r.errOut, "not imported") || len(fake.Writes()) != 0 {
		t.Fatalf("declined import: %s (carrier writes: %d)", r, len(fake.Writes()))
	}
	// Two numbers at once, one as an argument and one with --number.
	r = cg(t, n, "", "integrations", "import", it.ID, "4155550101", "--number", "+14155550102", "--mode", "full_control", "-y")
	if r.code != 0 || strings.Count(r.out, "imported") != 2 {
		t.Fatalf("import: %s", r)
	}
	if !strings.Contains(r.out, "4155550101 ") || strings.Contains(r.out, "+14155550101") {
		t.Errorf("import: the number is not shown as typed: %s", r.out)
	}
	if got, _ := fake.OwnedNumber("+14155550101"); !strings.HasPrefix(got.VoiceURL, "https://gw.example.com") {
		t.Errorf("full_control did not point the number at callgate: %+v", got)
	}
	r = cg(t, n, "", "numbers", "list")
	if r.code != 0 || strings.Count(r.out, "imported") != 2 {
		t.Fatalf("numbers list after import: %s", r)
	}
	// Importing again fails per number: exit 1 with the table.
	r = cg(t, n, "", "integrations", "import", it.ID, "+14155550101")
	if r.code != exitError || !strings.Contains(r.out, "failed") || !strings.Contains(r.errOut, "imported 0 of 1") {
		t.Errorf("re-import: %s", r)
	}
	if r := cg(t, n, "", "integrations", "delete", it.ID); r.code != exitConflict {
		t.Errorf("delete an integration in use: %s", r)
	}
}

func TestCLIAgentsUpdate(t *testing.T) {
	n := startNode(t)
	if r := cg(t, n, "", "agents", "create", "bot", "--endpoint", "us-east=sip:bot@127.0.0.1:5090", "--endpoint", "eu-west=sip:bot@127.0.0.2:5090"); r.code != 0 {
		t.Fatal(r)
	}
	r := cg(t, n, "", "agents", "update", "bot", "--name", "Front desk", "--json")
	var ag struct {
		Name      string
		Endpoints []struct{ Region, URI string }
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &ag) != nil || ag.Name != "Front desk" || len(ag.Endpoints) != 2 {
		t.Fatalf("update --name (endpoints kept): %s", r)
	}
	r = cg(t, n, "", "agents", "update", "bot", "--endpoint", "us-east=sip:bot2@127.0.0.1:5091", "--json")
	if r.code != 0 || json.Unmarshal([]byte(r.out), &ag) != nil || ag.Name != "Front desk" || len(ag.Endpoints) != 1 || !strings.Contains(ag.Endpoints[0].URI, "bot2") {
		t.Fatalf("update --endpoint (name kept): %s", r)
	}
	if r := cg(t, n, "", "agents", "show", "bot"); r.code != 0 || !strings.Contains(r.out, "Front desk") {
		t.Fatalf("show: %s", r)
	}
}

func TestCLIAdmin(t *testing.T) {
	n := startNode(t)
	if r := cg(t, n, "", "workspaces", "create", "acme", "--credits", "10"); r.code != 0 || !strings.Contains(r.out, "api_key") {
		t.Fatalf("workspaces create: %s", r)
	}
	// The same idempotency key credits once.
	for range 2 {
		if r := cg(t, n, "", "credits", "topup", "acme", "250", "--idempotency-key", "k-1", "--reason", "invoice 7"); r.code != 0 {
			t.Fatalf("topup: %s", r)
		}
	}
	r := cg(t, n, "", "--json", "audit", "--workspace", "acme", "--action", "credits.top_up")
	var au struct {
		Records []struct{ Action, Workspace string }
	}
	if r.code != 0 || json.Unmarshal([]byte(r.out), &au) != nil || len(au.Records) == 0 || au.Records[0].Workspace != "acme" {
		t.Fatalf("audit: %s", r)
	}
	r = cg(t, n, "", "audit", "--limit", "1")
	if r.code != 0 || !strings.HasPrefix(r.out, "SEQ") || !strings.Contains(r.out, "more: --before") {
		t.Fatalf("audit table: %s", r)
	}
	// A workspace key on an admin command: 403, exit 1.
	key, _ := os.ReadFile(filepath.Join(n.Config().DataDir, "api-key"))
	if r := cg(t, n, "", "audit", "--key", strings.TrimSpace(string(key))); r.code != exitError || !strings.Contains(r.errOut, "403") {
		t.Errorf("audit with a workspace key: %s", r)
	}
	// regions: a table, one line per endpoint.
	if r := cg(t, n, "", "agents", "create", "bot", "--endpoint", "us-east=sip:bot@127.0.0.1:5090"); r.code != 0 {
		t.Fatal(r)
	}
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		r := cg(t, n, "", "regions")
		if r.code != 0 || !strings.HasPrefix(r.out, "REGION") || !regexp.MustCompile(`(?m)^us-east\s+\d/1\s+sip:bot@127\.0\.0\.1:5090`).MatchString(r.out) {
			return fmt.Errorf("regions: %s", r)
		}
		return nil
	})
}

func TestCLICompletion(t *testing.T) {
	r := runCLI(t, "", "completion", "bash")
	if r.code != 0 || !strings.Contains(r.out, "bash completion") || !strings.Contains(r.out, "__start_callgate") {
		t.Fatalf("completion bash: %s", r.errOut)
	}
	for _, sh := range []string{"zsh", "fish"} {
		if r := runCLI(t, "", "completion", sh); r.code != 0 || !strings.Contains(r.out, "callgate") {
			t.Errorf("completion %s: %s", sh, r.errOut)
		}
	}
	// Subcommands and flag values complete.
	r = runCLI(t, "", "__complete", "integrations", "import", "tw1", "--mode", "")
	if r.code != 0 || !strings.Contains(r.out, "outbound_only") || !strings.Contains(r.out, "full_control") {
		t.Errorf("complete --mode: %s", r)
	}
	r = runCLI(t, "", "__complete", "numbers", "")
	if r.code != 0 || !strings.Contains(r.out, "buy") || !strings.Contains(r.out, "release") {
		t.Errorf("complete numbers: %s", r)
	}
}

// serve keeps its own flags: --check validates and exits.
func TestCLIServeCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("region: local\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "", "serve", "--config", good, "--check"); r.code != 0 {
		t.Errorf("serve --check: %s", r)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("no_such_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := runCLI(t, "", "serve", "--config", bad, "--check"); r.code != exitError || !strings.Contains(r.errOut, "no_such_key") {
		t.Errorf("serve --check with a bad config: %s", r)
	}
}
