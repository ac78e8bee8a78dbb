package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadmePlaceCall runs the README's walk-through and then its "Place
// a call (REST)" block as written (read from README.md), as
// TestReadmeWalkthrough does (interactive bash -e on a terminal, a fresh
// copy of the tree, a network namespace of its own): POST /v1/calls must
// connect the SIPp "PSTN" to the walk-through's SIPp agent, and the PSTN
// (which checks that its ACK carries the agent's answer) must end with
// success.
func TestReadmePlaceCall(t *testing.T) {
	if testing.Short() {
		t.Skip("builds callgate and runs the walk-through")
	}
	needBinary(t, sippBin, "sip-tester")
	for _, tool := range []string{"make", "curl", "go", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	script := readmeBlock(t, "## Walk-through") + "\n" + readmeBlock(t, "## Place a call (REST)")
	ns := newNetns(t)
	dir := t.TempDir()
	copyTree(t, repoRoot(t), dir)
	if err := os.WriteFile(filepath.Join(dir, "placecall.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := ns.command(ctx, dir, "bash", "--norc", "-e", "placecall.sh")
	if err := exec.Command("script", "-qec", "true", "/dev/null").Run(); err == nil {
		cmd = ns.command(ctx, dir, "script", "-qec", "bash --norc -ie placecall.sh", "/dev/null")
	} else {
		t.Skipf("script(1) cannot run here (%v): the block uses job control (kill %%1)", err)
	}
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOPROXY=off")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	log := out.String()
	if err != nil {
		t.Fatalf("the blocks failed: %v\n%s", err, tail(log))
	}
	if !strings.Contains(log, "the callee talked to the agent, then hung up") || !strings.Contains(log, `"status": "queued"`) {
		t.Fatalf("the placed call did not connect:\n%s", tail(log))
	}
	ns.stopAll()
}
