package node_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testwait"
)

func freeUDP(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// runSIPp starts SIPp (bounded by timeout(1)); the returned channel gets
// its exit error.
func runSIPp(t *testing.T, args ...string) <-chan error {
	t.Helper()
	cmd := exec.Command("timeout", append([]string{"40", "/usr/bin/sipp"}, args...)...)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() { err := cmd.Wait(); close(exited); done <- err }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // timeout(1) and SIPp
			<-exited
		}
	})
	return done
}

// buyFirst buys the first sandbox number of an area code for c.
func buyFirst(t *testing.T, c httpClient, areaCode string) string {
	t.Helper()
	code, m := c.do("GET", "/v1/marketplace/numbers?carrier=sandbox&country=US&area_code="+areaCode+"&limit=1", "")
	if code != 200 {
		t.Fatalf("search: %d %v", code, m)
	}
	num := m["numbers"].([]any)[0].(map[string]any)["phone_number"].(string)
	if code, m := c.do("POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox"}`); code != 201 {
		t.Fatalf("buy: %d %v", code, m)
	}
	return num
}

// TestPlacedCallsAreAuthorizedAndCharged: with the node's real usage
// meter, a workspace whose balance cannot pay a first minute gets 402 for
// POST /v1/calls; another's sandbox call connects a SIPp PSTN to a SIPp
// agent and, once ended, is charged one usage entry in its ledger.
func TestPlacedCallsAreAuthorizedAndCharged(t *testing.T) {
	if _, err := os.Stat("/usr/bin/sipp"); err != nil {
		t.Skip("sipp not installed (Debian sip-tester)")
	}
	pstnPort, agentPort := freeUDP(t), freeUDP(t)
	runSIPp(t, "-sf", "../gateway/sip/testdata/sipp/uas_rr.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(agentPort), "-aa", "-nostdin")
	pstn := runSIPp(t, "-sf", "../gateway/placer/testdata/sipp/pstn_answer_hangup.xml", "-i", "127.0.0.1", "-p", strconv.Itoa(pstnPort), "-m", "1", "-nostdin")
	n := startNode(t, t.TempDir(), func(c *config.Config) {
		c.Carriers.Sandbox.TerminationURI = "sip:127.0.0.1:" + strconv.Itoa(pstnPort)
	})
	defer n.Close()
	agent := agentBody("bot", "sip:bot@127.0.0.1:"+strconv.Itoa(agentPort))

	poor := newWorkspaceClient(t, n, "poor", 100)
	if code, m := poor.do("POST", "/v1/agents", agent); code != 201 {
		t.Fatalf("agent: %d %v", code, m)
	}
	from := buyFirst(t, poor, "228") // the whole balance
	call := `{"from":"` + from + `","to":"+12025550143","agent_id":"bot"}`
	var code int
	var m map[string]any
	testwait.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error { // the routing table catches up
		if code, m = poor.do("POST", "/v1/calls", call); code == 403 || code == 404 {
			return fmt.Errorf("%d %v", code, m)
		}
		return nil
	})
	if code != 402 {
		t.Fatalf("no credits: %d %v", code, m)
	}

	rich := newWorkspaceClient(t, n, "rich", 1000)
	if code, m := rich.do("POST", "/v1/agents", agent); code != 201 {
		t.Fatalf("agent: %d %v", code, m)
	}
	from = buyFirst(t, rich, "312")
	call = `{"from":"` + from + `","to":"+12025550143","agent_id":"bot"}`
	testwait.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if code, m = rich.do("POST", "/v1/calls", call, "Idempotency-Key", "c1"); code != 201 {
			return fmt.Errorf("%d %v", code, m)
		}
		return nil
	})
	select {
	case err := <-pstn:
		if err != nil {
			t.Fatalf("the SIPp PSTN: %v", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the SIPp PSTN did not finish")
	}
	testwait.CheckFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		_, cr := rich.do("GET", "/v1/credits", "")
		for _, e := range cr["entries"].([]any) {
			if e.(map[string]any)["kind"] == "usage" {
				return nil
			}
		}
		return fmt.Errorf("no usage entry: %v", cr["entries"])
	})
}
