package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// logLines parses the JSON log lines in out (other lines are skipped).
func logLines(out string) []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			lines = append(lines, m)
		}
	}
	return lines
}

func findLog(out, msg string) map[string]any {
	for _, l := range logLines(out) {
		if l["msg"] == msg {
			return l
		}
	}
	return nil
}

// TestServeDrainsOnSIGTERM runs a real `callgate serve` process with an
// answered call in progress and sends it SIGTERM: new INVITEs get 503 with
// Retry-After, the active dialog finishes normally, the process exits 0.
// Its output is JSON lines only (durations as strings), with one line per
// call outcome with the number masked, and no secret (API keys, the
// credentials key, a carrier auth token).
func TestServeDrainsOnSIGTERM(t *testing.T) {
	bin := buildCallgate(t)
	fake := twiliofake.MustNew(t, twiliofake.Options{})
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	cfgFile := filepath.Join(dir, "callgate.yaml")
	cfg := fmt.Sprintf(`data_dir: %s
http_addr: %s
region: us-east
shutdown_timeout: 20s
log:
  format: json
  level: info
carriers:
  twilio:
    api_base: %s
sip:
  addr: 127.0.0.1:0
  drain_timeout: 20s
  retry_after: 7
  probe:
    interval: 200ms
    timeout: 150ms
    up_after: 1
`, dataDir, httpAddr, fake.URL())
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcess(t, dir, bin, "serve", "--config", cfgFile)
	var sipAddr netip.AddrPort
	testwait.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-p.done:
			t.Fatalf("callgate serve exited: %v\n%s", p.err, tail(p.out.String()))
		default:
		}
		l := findLog(p.out.String(), "sip: listening")
		if l == nil {
			return fmt.Errorf("no 'sip: listening' log line yet")
		}
		ap, err := netip.ParseAddrPort(fmt.Sprint(l["udp"]))
		if err != nil {
			return err
		}
		sipAddr = ap
		return nil
	})
	c := apiClient{t: t, base: httpAddr}
	testwait.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if code, m, _ := c.try("GET", "/readyz", ""); code != 200 {
			return fmt.Errorf("readyz %d %v", code, m)
		}
		return nil
	})
	key, err := os.ReadFile(filepath.Join(dataDir, "api-key"))
	if err != nil {
		t.Fatal(err)
	}
	c.key = strings.TrimSpace(string(key))
	adminKey, _ := os.ReadFile(filepath.Join(dataDir, "admin-key"))
	secretKey, _ := os.ReadFile(filepath.Join(dataDir, "secret.key"))

	// A Twilio integration: once with a wrong token, once with the right one.
	wrongToken := "wrongtoken0123456789abcdef012345"
	code, m, _ := c.try("POST", "/v1/integrations", `{"name":"acme","carrier":"twilio","credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"`+wrongToken+`"}}`)
	if code < 400 {
		t.Fatalf("integration with a wrong token: %d %v", code, m)
	}
	c.must(201, "POST", "/v1/integrations", `{"name":"acme","carrier":"twilio","credentials":{"account_sid":"`+fake.AccountSID()+`","auth_token":"`+fake.AuthToken()+`"}}`)

	agent, carrierUA := newUA(t), newUA(t)
	num := routeNumber(t, c, "228", "bot", "us-east", agent.uri())

	// The active call (retried until the new number is in the snapshot).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var active interface{ Bye(context.Context) error }
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ds, res, err := carrierUA.dial(ctx, sipAddr, num)
		if err != nil {
			return err
		}
		if ds == nil {
			return fmt.Errorf("call: %d", res.StatusCode)
		}
		active = ds
		return nil
	})

	// Malformed datagrams from the trunk: the SIP stack's own log lines
	// must be JSON too.
	if conn, err := net.Dial("udp", sipAddr.String()); err == nil {
		for _, m := range []string{"SIP/2.0 999999999999 Nope\r\nVia: x\r\n\r\n", "INVITE sip:x SIP/2.0\r\nVia: ???\r\nCSeq: x\r\n\r\n"} {
			_, _ = conn.Write([]byte(m))
		}
		conn.Close()
	}

	// SIGTERM: the gateway drains.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	extra := 0 // calls answered before the signal was handled
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ds, res, err := carrierUA.dial(ctx, sipAddr, num)
		if err != nil {
			return err
		}
		if ds != nil {
			extra++
			_ = ds.Bye(ctx)
			return fmt.Errorf("new call still answered")
		}
		if res.StatusCode != 503 {
			return fmt.Errorf("new call while draining: %d, want 503", res.StatusCode)
		}
		if h := res.GetHeader("Retry-After"); h == nil || h.Value() != "7" {
			return fmt.Errorf("503 while draining without Retry-After: 7 (%v)", h)
		}
		return nil
	})
	select {
	case <-p.done:
		t.Fatalf("callgate exited with a call still active: %v\n%s", p.err, tail(p.out.String()))
	default:
	}
	if code, _, _ := c.try("GET", "/healthz", ""); code != 200 {
		t.Errorf("/healthz while draining: %d", code)
	}
	// The active dialog finishes through the draining gateway.
	if err := active.Bye(ctx); err != nil {
		t.Fatalf("BYE of the active call while draining: %v", err)
	}
	if _, byes := agent.counts(); byes != 1+extra {
		t.Errorf("the agent got %d BYEs, want %d", byes, 1+extra)
	}
	start := time.Now()
	if err := p.wait(t, 15*time.Second); err != nil {
		t.Fatalf("callgate serve after SIGTERM: %v (want exit 0)\n%s", err, tail(p.out.String()))
	}
	t.Logf("exited 0, %v after the last call ended", time.Since(start).Round(time.Millisecond))

	// Logs: with log.format json, every line on stdout and stderr is one
	// JSON object (a log shipper parses each), and durations are strings.
	out := p.out.String()
	for i, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("output line %d is not JSON (%v): %s", i+1, err, l)
		}
	}
	if l := findLog(out, "callgate: shutting down"); l == nil || l["drain_timeout"] != "20s" {
		t.Errorf(`"callgate: shutting down" line: drain_timeout %#v, want "20s": %v`, l["drain_timeout"], l)
	}
	if l := findLog(out, "callgate: serving"); l == nil || l["api_key_file"] == nil {
		t.Errorf(`no "callgate: serving" line naming the key files: %v`, l)
	}

	// Logs: one line per answered call outcome, number masked.
	var callLines []map[string]any
	for _, l := range logLines(out) {
		if l["msg"] == "sip: call" {
			callLines = append(callLines, l)
		}
	}
	answered := 0
	for _, l := range callLines {
		for _, k := range []string{"call_id", "number", "agent", "region", "status", "setup_ms"} {
			if _, ok := l[k]; !ok {
				t.Errorf("call log line without %s: %v", k, l)
			}
		}
		if n, _ := l["number"].(string); !strings.Contains(n, "*") {
			t.Errorf("call log line with an unmasked number: %v", l)
		}
		if l["status"] == float64(200) {
			answered++
		}
	}
	if answered != 1+extra {
		t.Errorf("%d log lines for answered calls, want %d:\n%v", answered, 1+extra, callLines)
	}
	if drained := findLog(out, "node: drained"); drained == nil || drained["calls_left"] != float64(0) {
		t.Errorf("no 'node: drained' line with calls_left 0: %v", drained)
	}
	// No secret and no full number anywhere in the output.
	secrets := map[string]string{
		"the number":        num,
		"the number digits": strings.TrimPrefix(num, "+"),
		"the API key":       c.key,
		"the admin key":     strings.TrimSpace(string(adminKey)),
		"the Twilio token":  fake.AuthToken(),
		"a rejected token":  wrongToken,
	}
	if k := strings.TrimSpace(string(secretKey)); k != "" {
		secrets["the credentials key"] = k
	}
	for what, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("%s (%s) appears in the output of callgate serve", what, s)
		}
	}
	if testing.Verbose() {
		t.Logf("call log lines: %v", callLines)
	}
}
