package webhook

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/sign"
)

// pyVerifier is testdata/verify_signature.py running with secret: an
// independent implementation of the signature check.
type pyVerifier struct {
	url   string
	lines chan string
}

func startPyVerifier(t *testing.T, secret string) *pyVerifier {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 not installed (make deps installs it)")
		}
		t.Skip("python3 not installed")
	}
	cmd := exec.Command(py, "testdata/verify_signature.py")
	cmd.Env = append(os.Environ(), "CALLGATE_WEBHOOK_SECRET="+secret)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-done
		}
	})
	v := &pyVerifier{lines: make(chan string, 16)}
	sc := bufio.NewScanner(out)
	first := make(chan string, 1)
	go func() {
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		for sc.Scan() {
			v.lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case l := <-first:
		var port int
		if _, err := fmt.Sscanf(l, "listening %d", &port); err != nil || port == 0 {
			t.Fatalf("verifier said %q", l)
		}
		v.url = fmt.Sprintf("http://127.0.0.1:%d/sms", port)
	case <-time.After(30 * time.Second):
		t.Fatal("the Python verifier did not start within 30s")
	}
	return v
}

type pyResult struct {
	OK     bool   `json:"ok"`
	T      int64  `json:"t"`
	Reason string `json:"reason"`
	Body   string `json:"body"`
}

func (v *pyVerifier) next(t *testing.T) pyResult {
	t.Helper()
	select {
	case l := <-v.lines:
		var r pyResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("verifier line %q: %v", l, err)
		}
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("no delivery reached the Python verifier within 15s")
		return pyResult{}
	}
}

// TestMessageDeliverySignedVerifiedInPython: an SMS delivered to the
// agent's messaging URL carries X-Callgate-Signature made with the
// workspace's webhook secret, and a Python http.server verifying the
// HMAC on its own accepts it; with another secret it refuses it.
func TestMessageDeliverySignedVerifiedInPython(t *testing.T) {
	const secret = "whsec_7f3a9c0d1e2b4a5968778695a4b3c2d1"
	v := startPyVerifier(t, secret)
	rg := newRig(t)
	snap := buildTestSnapshot(v.url).WithWorkspaces([]routing.Workspace{{ID: "w1", WebhookSecret: secret}})
	rg.table.Store(snap)

	p := url.Values{"MessageSid": {"SM77"}, "AccountSid": {"AC123"}, "From": {"+14155550100"}, "To": {numMain}, "Body": {`Grüße "quoted" & {json}`}}
	rg.do(twilioRequest(PathTwilioSMS, p, testToken))
	r := v.next(t)
	if !r.OK || r.T != testNow.Unix() {
		t.Fatalf("the Python verifier says %+v", r)
	}
	var m Message
	if err := json.Unmarshal([]byte(r.Body), &m); err != nil || m.ID != "SM77" || m.Body != `Grüße "quoted" & {json}` {
		t.Errorf("delivered body %q: %v", r.Body, err)
	}
	// Go's verifier agrees (sign.Verify), and refuses the body changed.
	hdr := sign.Header([]byte(secret), testNow, []byte(r.Body))
	if err := sign.Verify([]byte(secret), hdr, []byte(r.Body), testNow, time.Minute); err != nil {
		t.Errorf("sign.Verify: %v", err)
	}

	// Signed with another workspace secret: the verifier refuses it (401,
	// not retried), so its check is not one that passes everything.
	rg.table.Store(buildTestSnapshot(v.url).WithWorkspaces([]routing.Workspace{{ID: "w1", WebhookSecret: "another-secret"}}))
	p.Set("MessageSid", "SM78")
	rg.do(twilioRequest(PathTwilioSMS, p, testToken))
	if r := v.next(t); r.OK || r.Reason != "mismatch" {
		t.Errorf("wrong secret: the Python verifier says %+v", r)
	}
	// No secret: unsigned, and refused by a receiver that requires one.
	rg.table.Store(buildTestSnapshot(v.url))
	p.Set("MessageSid", "SM79")
	rg.do(twilioRequest(PathTwilioSMS, p, testToken))
	if r := v.next(t); r.OK || !strings.Contains(r.Reason, "malformed") {
		t.Errorf("unsigned: the Python verifier says %+v", r)
	}
}
