package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// readmeBlock returns the first ```sh block after the heading of README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q heading", heading)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("README.md: no ```sh block under %q", heading)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md: the block under %q is not closed", heading)
	}
	return block
}

// copyTree copies the source tree at src to dst, without .git, bin and
// data (a fresh checkout as a new user has it).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			switch rel {
			case ".git", "bin", "data", "bench/out":
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() || strings.HasSuffix(rel, ".test") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, info.Mode().Perm())
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// netns is a network namespace with only loopback, removed (with every
// process still in it, stopped by PID) when the test ends.
type netns struct {
	t    *testing.T
	name string
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed; `make deps` installs it")
	}
	name := fmt.Sprintf("callgate-e2e-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace (needs root; the walk-through uses fixed ports 8080, 5060 and 5090): ip netns add: %v %s", err, out)
	}
	ns := &netns{t: t, name: name}
	t.Cleanup(func() {
		ns.stopAll()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	if out, err := exec.Command("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip netns exec %s ip link set lo up: %v %s", name, err, out)
	}
	return ns
}

// pids returns the processes running in the namespace.
func (ns *netns) pids() []int {
	out, _ := exec.Command("ip", "netns", "pids", ns.name).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// stopAll ends every process in the namespace by its PID: SIGTERM, then
// SIGKILL to what is left after 20 s.
func (ns *netns) stopAll() {
	for _, p := range ns.pids() {
		if proc, err := os.FindProcess(p); err == nil {
			_ = proc.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(ns.pids()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, p := range ns.pids() {
		if proc, err := os.FindProcess(p); err == nil {
			_ = proc.Kill()
		}
	}
}

// exec runs a command in the namespace.
func (ns *netns) command(ctx context.Context, dir string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
	cmd.Dir = dir
	return cmd
}

func comm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// TestReadmeWalkthrough runs the README's walk-through block itself (read
// from README.md) in an interactive bash -e on a terminal (script(1)), in a
// fresh copy of the tree, in a network namespace of its own (it uses the
// fixed ports 8080, 5060, 5070, 5080 and 5090). It waits 20 s before the
// first call, longer than the OPTIONS probes take to mark an agent that
// does not answer them down: the call must still be answered, and the
// test caller (`callgate dev call`, the carrier) must hear the demo
// agent's greeting. Then the agent's outbound call (SIPp with digest on
// the agent listener, to the SIPp "PSTN" on the sandbox termination) must
// be counted successful by the agent's SIPp and answered by the gateway.
// make run's gateway, the demo agent and the SIPp PSTN are then stopped
// by their PIDs. The example of "Outbound calls from agents (SIP)" must be
// lines of this block (what the test runs).
func TestReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds callgate and waits 20 s")
	}
	for _, tool := range []string{"make", "curl", "go", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	block := readmeBlock(t, "## Walk-through")
	lines := strings.Split(block, "\n")
	call, outCall := -1, -1
	for i, l := range lines {
		if strings.HasPrefix(l, "./bin/callgate dev call ") && call < 0 {
			call = i
		}
		if strings.HasPrefix(l, "sipp ") && strings.Contains(l, "uac_agent_auth.xml") {
			outCall = i
		}
	}
	if call < 0 {
		t.Fatalf("the walk-through places no call (no `./bin/callgate dev call` line):\n%s", block)
	}
	if outCall < call {
		t.Fatalf("the walk-through places no outbound call after the inbound one (no `sipp ... uac_agent_auth.xml` line):\n%s", block)
	}
	// The outbound section's example is the walk-through's own lines.
	for _, l := range strings.Split(readmeBlock(t, "## Outbound calls from agents (SIP)"), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") && !strings.Contains(block, l) {
			t.Errorf("README: the outbound example's line %q is not in the walk-through", l)
		}
	}
	const marker = "(test) the outbound call"
	script := strings.Join(lines[:call], "\n") +
		"\n# (test) 20 s: the agent must have answered callgate's OPTIONS probes meanwhile\nsleep 20\n" +
		strings.Join(lines[call:outCall], "\n") + "\necho '" + marker + "'\n" +
		strings.Join(lines[outCall:], "\n")

	ns := newNetns(t)
	dir := t.TempDir()
	copyTree(t, repoRoot(t), dir)
	if err := os.WriteFile(filepath.Join(dir, "walkthrough.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// make run builds the binary first: minutes on a loaded 2-core
	// machine with a cold build cache.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// As typed into an interactive shell (job control, a terminal: a
	// background job that touches the terminal is stopped), with -e so
	// that every step must succeed; plain bash -e without script(1).
	cmd := ns.command(ctx, dir, "bash", "--norc", "-e", "walkthrough.sh")
	if err := exec.Command("script", "-qec", "true", "/dev/null").Run(); err == nil {
		cmd = ns.command(ctx, dir, "script", "-qec", "bash --norc -ie walkthrough.sh", "/dev/null")
	} else {
		t.Logf("script(1) cannot run here (%v): the block runs in a non-interactive shell", err)
	}
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOPROXY=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second // make run's gateway keeps the output open
	err := cmd.Run()
	log := out.String()
	if err != nil {
		t.Fatalf("the walk-through failed: %v\n%s", err, tail(log))
	}
	in, outb, ok := strings.Cut(log, "\n"+marker)
	if !ok {
		t.Fatalf("the walk-through did not reach the outbound call:\n%s", tail(log))
	}
	// The caller (the carrier) was answered and heard the greeting, and
	// the agent printed its line for the call.
	if !regexp.MustCompile(`status=200 .* greeting_heard=yes`).MatchString(in) {
		t.Errorf("the test caller did not hear the demo agent's greeting:\n%s", tail(in))
	}
	if !regexp.MustCompile(`call from=\S+ to=\+12285340406 .*rtp_in=[1-9]`).MatchString(in) {
		t.Errorf("the demo agent printed no line for the call:\n%s", tail(in))
	}
	// SIPp as the agent counted one successful outbound call, no failure.
	if m := regexp.MustCompile(`Successful call\s+\|\s+\d+\s+\|\s+(\d+)`).FindAllStringSubmatch(outb, -1); len(m) == 0 || m[len(m)-1][1] != "1" {
		t.Errorf("SIPp as the agent (outbound call) did not count 1 successful call:\n%s", tail(outb))
	}
	if m := regexp.MustCompile(`Failed call\s+\|\s+\d+\s+\|\s+(\d+)`).FindAllStringSubmatch(outb, -1); len(m) == 0 || m[len(m)-1][1] != "0" {
		t.Errorf("SIPp as the agent (outbound call) counted failed calls:\n%s", tail(outb))
	}
	// The gateway counted it answered.
	mctx, mcancel := context.WithTimeout(context.Background(), 30*time.Second)
	metrics, err := ns.command(mctx, dir, "curl", "-sf", "http://127.0.0.1:8080/metrics").Output()
	mcancel()
	if err != nil {
		t.Fatalf("curl /metrics in the namespace: %v", err)
	}
	if !strings.Contains(string(metrics), `callgate_sip_calls_total{class="2xx"} 2`) ||
		!strings.Contains(string(metrics), `callgate_sip_outbound_calls_total{class="2xx"} 1`) {
		t.Errorf("gateway did not count the inbound and the outbound call answered:\n%s", grep(string(metrics), "callgate_sip_"))
	}

	// What the walk-through left running: make run (make and callgate
	// serve), the demo agent (callgate dev agent) and the SIPp PSTN. Stop
	// each by its PID.
	names := map[string]int{}
	for _, p := range ns.pids() {
		names[comm(p)]++
	}
	if names["callgate"] < 2 || names["sipp"] < 1 {
		t.Errorf("want the gateway, the demo agent and the SIPp PSTN left running by the walk-through (running: %v)", names)
	}
	ns.stopAll()
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if left := ns.pids(); len(left) > 0 {
			return fmt.Errorf("still running in %s: %v", ns.name, left)
		}
		return nil
	})
}
