package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// TestBaresipTransfersWithREFER: baresip (Debian) is the agent; it calls
// a US number through the agent listener of a real node (the call leaves
// through the sandbox termination, where SIPp plays the callee's carrier
// honouring REFER), then transfers the callee with its /transfer command
// (ctrl_tcp) to sip:+14155550143@…;user=phone. The REFER reaches the
// carrier through callgate with the number as tel:+14155550143, the
// carrier's NOTIFYs reach baresip, and the call's record shows the
// transfer completed.
func TestBaresipTransfersWithREFER(t *testing.T) {
	needBinary(t, baresipBin, "baresip-core")
	needBinary(t, sippBin, "sip-tester")

	pstnPort := freePort(t, "udp")
	scen := filepath.Join(repoRoot(t), "gateway/sip/testdata/sipp")
	sippDir := os.Getenv("CALLGATE_SIPP_DIR") // keep SIPp's message trace there
	if sippDir == "" {
		sippDir = t.TempDir()
	}
	pstn := startProcess(t, sippDir, "timeout", "60", sippBin, "-sf", filepath.Join(scen, "uas_refer_callee.xml"),
		"-i", "127.0.0.1", "-p", strconv.Itoa(pstnPort), "-m", "1", "-nostdin", "-trace_err", "-trace_msg")
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", pstnPort)); err == nil {
			c.Close()
			return fmt.Errorf("sipp not listening on %d yet", pstnPort)
		}
		return nil
	})

	cfg := testConfig(t)
	cfg.SIP.Agents.Addr = "127.0.0.1:0"
	cfg.SIP.Agents.DigestAlgorithms = "MD5" // baresip 1.0 gives up on SHA-256 challenges
	cfg.Carriers.Sandbox.TerminationURI = fmt.Sprintf("sip:pstn@127.0.0.1:%d;transport=udp", pstnPort)
	n, logs := startNode(t, cfg)
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	agent := newUA(t)
	c.must(201, "POST", "/v1/agents", `{"id":"bot","name":"bot","media":"direct","endpoints":[{"region":"us-east","uri":"`+agent.uri()+`"}]}`)
	num, _ := buy(t, c, "228", "bot")
	cred := c.must(201, "POST", "/v1/agents/bot/sip-credentials", "")
	user, pass := cred["username"].(string), cred["password"].(string)
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if _, ok := n.Table().Load().Credential(user); !ok {
			return errors.New("the credential is not in the routing table yet")
		}
		return nil
	})

	gw := n.SIP().AgentUDPAddr()
	ctrlPort := freePort(t, "tcp")
	dir := t.TempDir()
	files := map[string]string{
		"config": "poll_method epoll\nsip_listen 127.0.0.1:0\nnet_interface 127.0.0.1\n" +
			"audio_source ausine,440\nausrc_srate 48000\nausrc_channels 2\naudio_player aubridge,pstn\naudio_alert aubridge,pstn\n" +
			"module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\nmodule aubridge.so\n" +
			"module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n" +
			fmt.Sprintf("ctrl_tcp_listen 127.0.0.1:%d\n", ctrlPort),
		"accounts": fmt.Sprintf("<sip:%s@127.0.0.1>;auth_user=%s;auth_pass=%s;outbound=\"sip:%s;transport=udp\";regint=0;audio_codecs=PCMU\n",
			num, user, pass, gw),
		"contacts": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bs := startProcess(t, dir, "timeout", "40", baresipBin, "-4", "-v", "-f", dir,
		"-e", fmt.Sprintf("/dial sip:+14155550123@%s", gw))

	// the call answered (the carrier's 200), as the history lists it
	var id string
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		code, m, _ := c.try("GET", "/v1/calls", "")
		if code != 200 {
			return fmt.Errorf("GET /v1/calls: %d", code)
		}
		for _, x := range m["calls"].([]any) {
			if r := x.(map[string]any); r["direction"] == "outbound" && r["answered_at"] != nil {
				id = r["id"].(string)
				return nil
			}
		}
		return fmt.Errorf("no answered outbound call\nbaresip:\n%s", tail(bs.out.String()))
	})
	// baresip's /transfer over ctrl_tcp (a netstring of JSON)
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ctrlPort), 5*time.Second)
	if err != nil {
		t.Fatalf("baresip ctrl_tcp: %v\n%s", err, tail(bs.out.String()))
	}
	defer conn.Close()
	cmd := `{"command":"transfer","params":"sip:+14155550143@127.0.0.1;user=phone","token":"x1"}`
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "%d:%s,", len(cmd), cmd); err != nil {
		t.Fatal(err)
	}
	if err := pstn.wait(t, 45*time.Second); err != nil {
		t.Fatalf("sipp carrier: %v\n%s\nbaresip:\n%s\ngateway:\n%s", err, tail(pstn.out.String()), tail(bs.out.String()), tail(logs.String()))
	}
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		r := c.must(200, "GET", "/v1/calls/"+id, "")
		tr, _ := r["transfer"].(map[string]any)
		if r["ended_at"] == nil || tr == nil || tr["state"] != "completed" {
			return fmt.Errorf("record %v", r)
		}
		if tr["to"] != "tel:+14155550143" || tr["via"] != "sip_refer" {
			t.Fatalf("transfer %v", tr)
		}
		return nil
	})
	// quit baresip (killing timeout, its parent, would leave it running)
	quit := `{"command":"quit","token":"x2"}`
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "%d:%s,", len(quit), quit); err != nil {
		t.Errorf("baresip quit: %v", err)
	}
	if err := bs.wait(t, 15*time.Second); err != nil {
		t.Logf("baresip: %v", err)
	}
}
