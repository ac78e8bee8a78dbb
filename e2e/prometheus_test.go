package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// freePort returns a loopback port that was free a moment ago (for
// programs that cannot report the port they bound).
func freePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// process is a program started by a test, stopped by its PID when the
// test ends.
type process struct {
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
	err  error
}

func startProcess(t testing.TB, dir string, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), out: &logBuffer{}, done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.WaitDelay = 5 * time.Second // a child holding the output open does not hang Wait
	// its own process group: kill ends what it started too (SIPp or
	// baresip under timeout(1), which a SIGKILL to timeout would orphan)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// kill ends the process and its process group (by its PID) and waits
// for it.
func (p *process) kill() {
	pid := p.cmd.Process.Pid
	select {
	case <-p.done:
		_ = syscall.Kill(-pid, syscall.SIGKILL) // a child it left behind
		return
	default:
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = p.cmd.Process.Kill()
	<-p.done
}

// wait waits for the process to exit by itself.
func (p *process) wait(t testing.TB, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		p.kill()
		t.Fatalf("%s still running after %s\n%s", p.cmd.Path, d, tail(p.out.String()))
		return nil
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// promQuery runs an instant query against Prometheus' HTTP API and
// returns the first sample's value.
func promQuery(base, q string) (float64, error) {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("query %s: %d %s", q, resp.StatusCode, b)
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("query %s: %s", q, r.Error)
	}
	if len(r.Data.Result) == 0 {
		return 0, fmt.Errorf("query %s: no result yet", q)
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// TestPrometheusScrapesCalls starts a real Prometheus server on loopback
// with the alert rules of deploy/, scraping a running gateway; SIPp plays
// the carrier and the agent (record-route aware scenarios) for a few
// calls, and Prometheus' HTTP API then reports them counted.
func TestPrometheusScrapesCalls(t *testing.T) {
	needBinary(t, prometheusBin, "prometheus")
	needBinary(t, sippBin, "sip-tester")
	scen := filepath.Join(repoRoot(t), "gateway/sip/testdata/sipp")
	for _, f := range []string{"uac_rr.xml", "uas_rr.xml"} {
		if _, err := os.Stat(filepath.Join(scen, f)); err != nil {
			t.Skipf("SIPp scenario %s missing: %v", f, err)
		}
	}
	cfg := testConfig(t)
	// SIPp's UAS scenario counts an OPTIONS probe as a call (and -aa does
	// not change that): endpoints are not probed here.
	cfg.SIP.Probe.Disabled = true
	n, logs := startNode(t, cfg)
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}

	// SIPp as the agent.
	sippDir := t.TempDir()
	uasPort := freePort(t, "udp")
	const calls = 3
	uas := startProcess(t, sippDir, sippBin, "-sf", filepath.Join(scen, "uas_rr.xml"),
		"-i", "127.0.0.1", "-p", strconv.Itoa(uasPort), "-m", strconv.Itoa(calls), "-nostdin", "-trace_err")
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", uasPort)); err == nil {
			c.Close()
			return fmt.Errorf("sipp uas not listening on %d yet", uasPort)
		}
		return nil
	})
	num := routeNumber(t, c, "228", "bot", "local", fmt.Sprintf("sip:bot@127.0.0.1:%d", uasPort))
	waitRouted(t, n, num, "bot")
	// Prometheus scraping the node every second (the scrape timeout is
	// the interval at most: under CI load a scrape of the whole registry
	// can take longer than 200 ms, and a timed-out scrape is up = 0), with
	// deploy/'s rules.
	promDir := t.TempDir()
	rules, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/prometheus/alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(promDir, "alerts.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	promCfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: callgate
    static_configs:
      - targets: [%q]
`, n.HTTPAddr())
	if err := os.WriteFile(filepath.Join(promDir, "prometheus.yml"), []byte(promCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	promAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t, "tcp"))
	prom := startProcess(t, promDir, prometheusBin, "--config.file=prometheus.yml", "--storage.tsdb.path=data",
		"--web.listen-address="+promAddr, "--log.level=warn")
	base := "http://" + promAddr
	testwait.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		select {
		case <-prom.done:
			t.Fatalf("prometheus exited: %v\n%s", prom.err, tail(prom.out.String()))
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("prometheus /-/ready: %d", resp.StatusCode)
		}
		return nil
	})
	testwait.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		v, err := promQuery(base, `up{job="callgate"}`)
		if err == nil && v != 1 {
			err = fmt.Errorf("up = %v", v)
		}
		return err
	})

	// SIPp as the carrier.
	uac := startProcess(t, sippDir, sippBin, "-sf", filepath.Join(scen, "uac_rr.xml"),
		"-i", "127.0.0.1", "-p", strconv.Itoa(freePort(t, "udp")), "-s", num, n.SIP().UDPAddr().String(),
		"-m", strconv.Itoa(calls), "-r", "10", "-nostdin", "-trace_err")
	if err := uac.wait(t, 60*time.Second); err != nil {
		t.Fatalf("sipp uac: %v\n%s\nuas:\n%s\ngateway:\n%s\n%v\n%s", err, tail(uac.out.String()), tail(uas.out.String()), tail(logs.String()), n.SIP().Status(), grep(scrape(t, n.HTTPAddr()), "callgate_sip_"))
	}
	if err := uas.wait(t, 30*time.Second); err != nil {
		t.Fatalf("sipp uas: %v\n%s", err, tail(uas.out.String()))
	}

	// Prometheus has the calls, their setup latency and the probes.
	for q, want := range map[string]float64{
		`sum(callgate_sip_calls_total{job="callgate",class="2xx"})`:                                      calls,
		`sum(callgate_sip_setup_answer_seconds_count{job="callgate",origin="purchased",region="local"})`: calls,
		`sum(callgate_sip_responses_total{job="callgate",method="BYE",code="200"})`:                      calls,
		`callgate_provisioning_operations_total{job="callgate",operation="purchase",result="ok"}`:        1,
		`callgate_nats_connected{job="callgate"}`:                                                        1,
		`callgate_routing_numbers{job="callgate"}`:                                                       1,
	} {
		testwait.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
			v, err := promQuery(base, q)
			if err == nil && v != want {
				err = fmt.Errorf("%s = %v, want %v", q, v, want)
			}
			return err
		})
	}
	// The rules loaded into a real server and evaluate without error.
	testwait.CheckFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		resp, err := http.Get(base + "/api/v1/rules")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name       string `json:"name"`
						Health     string `json:"health"`
						LastError  string `json:"lastError"`
						Evaluation string `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return err
		}
		count := 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				count++
				if rule.Health != "ok" {
					return fmt.Errorf("rule %s: health %q %s", rule.Name, rule.Health, rule.LastError)
				}
			}
		}
		if count == 0 {
			return fmt.Errorf("no rules loaded")
		}
		return nil
	})
	// A healthy gateway fires no alert.
	if v, err := promQuery(base, `count(ALERTS{alertstate="firing"})`); err == nil {
		t.Errorf("alerts firing on a healthy gateway: %v", v)
	}
	prom.kill()
	if strings.Contains(prom.out.String(), "level=error") {
		t.Errorf("prometheus logged errors:\n%s", tail(prom.out.String()))
	}
}

// grep returns the lines of s containing sub.
func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
