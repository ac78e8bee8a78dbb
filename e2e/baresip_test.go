package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

const baresipBin = "/usr/bin/baresip"

// TestBaresipOutboundCallRelayed: baresip (Debian), with an account whose
// caller ID is the workspace's number and whose digest user is the
// agent's SIP credential, calls a US number through the agent listener of
// a real node; the agent's media is relayed. The call leaves through the
// sandbox termination to a sipgo "PSTN" whose SDP points at a UDP socket
// that echoes every RTP packet back. RTP must flow both ways through the
// relay: the echo socket receives baresip's packets from the relay, and
// the call's history shows packets on both legs. baresip 1.0 (libre)
// gives up on the whole 407 when one of its challenges is SHA-256
// ("Function not implemented"), so the agent listener offers MD5 only
// (sip.agents.digest_algorithms: MD5). baresip's outbound= preloads a
// Route naming the agent listener (popPreloadedRoute).
func TestBaresipOutboundCallRelayed(t *testing.T) {
	needBinary(t, baresipBin, "baresip-core")

	// the PSTN's RTP: every packet echoed to where it came from
	echo, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	var echoed atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 12 && buf[0]>>6 == 2 { // RTP version 2
				echoed.Add(1)
				_, _ = echo.WriteTo(buf[:n], from)
			}
		}
	}()
	pstn := newUA(t)
	pstn.mu.Lock()
	pstn.sdp = fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
		echo.LocalAddr().(*net.UDPAddr).Port)
	pstn.mu.Unlock()

	cfg := testConfig(t)
	cfg.SIP.Agents.Addr = "127.0.0.1:0"
	cfg.SIP.Agents.DigestAlgorithms = "MD5"
	cfg.Carriers.Sandbox.TerminationURI = fmt.Sprintf("sip:pstn@127.0.0.1:%d;transport=udp", pstn.port)
	n, logs := startNode(t, cfg)
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	agent := newUA(t)
	c.must(201, "POST", "/v1/agents", `{"id":"bot","name":"bot","media":"relay","endpoints":[{"region":"us-east","uri":"`+agent.uri()+`"}]}`)
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
	dir := t.TempDir()
	files := map[string]string{
		"config": "poll_method epoll\nsip_listen 127.0.0.1:0\nnet_interface 127.0.0.1\n" +
			"audio_source ausine,440\nausrc_srate 48000\nausrc_channels 2\naudio_player aubridge,pstn\naudio_alert aubridge,pstn\n" +
			"module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\nmodule aubridge.so\n" +
			"module_app account.so\nmodule_app menu.so\n",
		"accounts": fmt.Sprintf("<sip:%s@127.0.0.1>;auth_user=%s;auth_pass=%s;outbound=\"sip:%s;transport=udp\";regint=0;audio_codecs=PCMU\n",
			num, user, pass, gw),
		"contacts": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, baresipBin, "-4", "-v", "-f", dir, "-t", "8",
		"-e", fmt.Sprintf("/dial sip:+14155550123@%s", gw))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("baresip: %v", err)
	}

	var rec map[string]any
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, x := range c.must(200, "GET", "/v1/calls", "")["calls"].([]any) {
			if m := x.(map[string]any); m["direction"] == "outbound" && m["ended_at"] != nil {
				rec = m
				return nil
			}
		}
		return fmt.Errorf("no ended outbound call in GET /v1/calls\nbaresip:\n%s\ngateway:\n%s", out, logs.String())
	})
	if rec["answered_at"] == nil || rec["from"] != num || rec["to"] != "+14155550123" {
		t.Fatalf("history record %v\nbaresip:\n%s", rec, out)
	}
	if got := echoed.Load(); got < 50 {
		t.Errorf("the PSTN received %d RTP packets from the relay, want at least 50 (of ~8 s)\nbaresip:\n%s", got, out)
	}
	media, _ := rec["media"].(map[string]any)
	for _, leg := range []string{"caller", "agent"} {
		l, _ := media[leg].(map[string]any)
		if p, _ := l["packets"].(float64); p < 50 {
			t.Errorf("relay figures: %s leg %v packets, want at least 50 (RTP both ways): %v", leg, l["packets"], media)
		}
	}
	t.Logf("PSTN echoed %d packets; relay figures %v", echoed.Load(), media)
}
