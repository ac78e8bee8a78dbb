package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testlog"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/node/nodetest"
)

// logBuffer is a log sink several goroutines write to.
type logBuffer = testlog.Buffer

// needBinary skips the test when a tool the test runs is not installed.
func needBinary(t testing.TB, path, pkg string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s not installed (Debian package %s; `make deps` installs it)", path, pkg)
	}
}

// repoRoot is the module root (the parent of e2e/).
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// testConfig is a node config with every listener on a loopback port
// chosen at start and fast endpoint probes.
func testConfig(t testing.TB) config.Config {
	cfg := nodetest.TestConfig(t)
	cfg.SIP.Probe.Interval = 200 * time.Millisecond
	cfg.SIP.Probe.Timeout = 150 * time.Millisecond
	cfg.SIP.Probe.UpAfter = 1
	cfg.Log.Level = "debug"
	return cfg
}

// startNode starts a gateway node on cfg (nodetest.Start) and waits until
// it is ready. Its JSON log lines go to the returned buffer. It is closed
// when the test ends.
func startNode(t testing.TB, cfg config.Config) (*node.Node, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	return nodetest.Start(t, nodetest.Base(cfg), nodetest.Log(logs)), logs
}

// apiClient talks to a node's HTTP API.
type apiClient struct {
	t    testing.TB
	base string // host:port
	key  string
}

// try does one request; code 0 means a transport error (in the map's "err").
func (c apiClient) try(method, path, body string, hdr ...string) (int, map[string]any, http.Header) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	// Above the API's own 30 s request deadline: the test sees its answer.
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		return 0, map[string]any{"err": err.Error()}, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := map[string]any{}
	if len(bytes.TrimSpace(b)) > 0 && json.Unmarshal(b, &m) != nil {
		m = map[string]any{"raw": string(b)}
	}
	return resp.StatusCode, m, resp.Header
}

// must does a request and fails the test unless it answers want.
func (c apiClient) must(want int, method, path, body string, hdr ...string) map[string]any {
	c.t.Helper()
	code, m, _ := c.try(method, path, body, hdr...)
	if code != want {
		c.t.Fatalf("%s %s %s: %d %v, want %d", method, path, body, code, m, want)
	}
	return m
}

// scrape returns a node's /metrics text.
func scrape(t testing.TB, httpAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// searchNumber returns the first sandbox number available in area.
func searchNumber(t testing.TB, c apiClient, area string) string {
	t.Helper()
	m := c.must(200, "GET", "/v1/marketplace/numbers?carrier=sandbox&country=US&area_code="+area+"&limit=1", "")
	nums, _ := m["numbers"].([]any)
	if len(nums) == 0 {
		t.Fatalf("no sandbox number in area %s: %v", area, m)
	}
	return nums[0].(map[string]any)["phone_number"].(string)
}

// routeNumber creates agent id (if needed) with one endpoint, buys a
// sandbox number in area and assigns it; it returns the number.
func routeNumber(t testing.TB, c apiClient, area, agentID, region, uri string) string {
	t.Helper()
	if code, _, _ := c.try("GET", "/v1/agents/"+agentID, ""); code == 404 {
		c.must(201, "POST", "/v1/agents", fmt.Sprintf(`{"id":%q,"name":"bot","endpoints":[{"region":%q,"uri":%q}]}`, agentID, region, uri))
	}
	num := searchNumber(t, c, area)
	c.must(201, "POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox"}`)
	c.must(200, "PATCH", "/v1/numbers/"+strings.TrimPrefix(num, "+"), `{"agent_id":"`+agentID+`"}`)
	return num
}

// buildCallgate builds cmd/callgate into a temporary directory.
func buildCallgate(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "callgate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/callgate")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/callgate: %v\n%s", err, out)
	}
	return bin
}
