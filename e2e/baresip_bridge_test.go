package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// TestBaresipBridgedTransfer: baresip (Debian) is the agent of an inbound
// call (auto-answer, media relayed) from a SIPp carrier that refuses
// REFER and plays 7 s of G.711 A-law RTP. baresip transfers the caller
// with /transfer (REFER) to sip:+14155550143@…;user=phone; the carrier
// answers 501, so callgate bridges: a SIPp "human" behind the sandbox
// termination gets the new leg, baresip gets 202, NOTIFYs and a BYE, the
// caller's RTP reaches the human's media port through the relay, and the
// caller's BYE reaches the human. The call's record shows the transfer
// completed in mode bridge.
func TestBaresipBridgedTransfer(t *testing.T) {
	needBinary(t, baresipBin, "baresip-core")
	needBinary(t, sippBin, "sip-tester")

	// the human's RTP port: counts what the relay sends it
	rtpConn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer rtpConn.Close()
	var got atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			n, _, err := rtpConn.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 12 && buf[0]>>6 == 2 && buf[1]&0x7f == 8 { // RTP, PCMA
				got.Add(1)
			}
		}
	}()

	scen := filepath.Join(repoRoot(t), "gateway/sip/testdata/sipp")
	sippDir := t.TempDir()
	humanPort := freePort(t, "udp")
	human := startProcess(t, sippDir, "timeout", "60", sippBin, "-sf", filepath.Join(scen, "uas_bridge_human.xml"),
		"-i", "127.0.0.1", "-p", strconv.Itoa(humanPort), "-mp", strconv.Itoa(freePort(t, "udp")), "-m", "1", "-nostdin",
		"-trace_err", "-key", "human_rtp", strconv.Itoa(rtpConn.LocalAddr().(*net.UDPAddr).Port))
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", humanPort)); err == nil {
			c.Close()
			return fmt.Errorf("sipp not listening on %d yet", humanPort)
		}
		return nil
	})

	cfg := testConfig(t)
	cfg.Carriers.Sandbox.TerminationURI = fmt.Sprintf("sip:pstn@127.0.0.1:%d;transport=udp", humanPort)
	n, logs := startNode(t, cfg)
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}

	bsPort, ctrlPort := freePort(t, "udp"), freePort(t, "tcp")
	c.must(201, "POST", "/v1/agents", fmt.Sprintf(`{"id":"bot","name":"bot","media":"relay","endpoints":[{"region":"us-east","uri":"sip:bot@127.0.0.1:%d;transport=udp"}]}`, bsPort))
	num, _ := buy(t, c, "228", "bot")
	routedWithin(t, time.Now(), 10*time.Second, num, "bot", n)

	dir := t.TempDir()
	files := map[string]string{
		"config": fmt.Sprintf("poll_method epoll\nsip_listen 127.0.0.1:%d\nnet_interface 127.0.0.1\n", bsPort) +
			"audio_source ausine,440\nausrc_srate 48000\nausrc_channels 2\naudio_player aubridge,caller\naudio_alert aubridge,caller\n" +
			"module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\nmodule aubridge.so\n" +
			"module_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n" +
			fmt.Sprintf("ctrl_tcp_listen 127.0.0.1:%d\n", ctrlPort),
		"accounts": "<sip:bot@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMA\n",
		"contacts": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bs := startProcess(t, dir, "timeout", "60", baresipBin, "-4", "-v", "-f", dir)
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ctrlPort), time.Second)
		if err != nil {
			return fmt.Errorf("baresip ctrl_tcp not up: %v\n%s", err, tail(bs.out.String()))
		}
		conn.Close()
		return nil
	})

	// baresip answers the probes: a probe sent before it listened may have
	// marked its endpoint down, and a call then would be refused (503)
	testwait.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		if m := scrape(t, n.HTTPAddr()); !strings.Contains(m, `callgate_sip_region_endpoints{region="us-east",state="up"} 1`) {
			return fmt.Errorf("baresip's endpoint not up yet\n%s", tail(bs.out.String()))
		}
		return nil
	})
	carrier := startProcess(t, sippDir, "timeout", "60", sippBin, "-sf", filepath.Join(scen, "uac_bridge.xml"),
		"-i", "127.0.0.1", "-mi", "127.0.0.1", "-mp", strconv.Itoa(freePort(t, "udp")),
		"-s", num, n.SIP().UDPAddr().String(), "-m", "1", "-nostdin", "-trace_err")

	// the call answered by baresip, as the history lists it
	var id string
	testwait.CheckFor(t, 45*time.Second, 50*time.Millisecond, func() error { // SIPp and baresip start slowly on a loaded machine
		code, m, _ := c.try("GET", "/v1/calls", "")
		if code != 200 {
			return fmt.Errorf("GET /v1/calls: %d", code)
		}
		for _, x := range m["calls"].([]any) {
			if r := x.(map[string]any); r["answered_at"] != nil {
				id = r["id"].(string)
				return nil
			}
		}
		return fmt.Errorf("no answered call\nbaresip:\n%s\nsipp carrier:\n%s\ngateway:\n%s", tail(bs.out.String()), tail(carrier.out.String()), tail(logs.String()))
	})
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ctrlPort), 5*time.Second)
	if err != nil {
		t.Fatalf("baresip ctrl_tcp: %v\n%s", err, tail(bs.out.String()))
	}
	defer conn.Close()
	cmd := `{"command":"transfer","params":"sip:+14155550143@127.0.0.1;user=phone","token":"x1"}`
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := fmt.Fprintf(conn, "%d:%s,", len(cmd), cmd); err != nil {
		t.Fatal(err)
	}
	if err := carrier.wait(t, 45*time.Second); err != nil {
		t.Fatalf("sipp carrier: %v\n%s\nbaresip:\n%s\ngateway:\n%s", err, tail(carrier.out.String()), tail(bs.out.String()), tail(logs.String()))
	}
	if err := human.wait(t, 20*time.Second); err != nil {
		t.Fatalf("sipp human: %v\n%s\ngateway:\n%s", err, tail(human.out.String()), tail(logs.String()))
	}
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		r := c.must(200, "GET", "/v1/calls/"+id, "")
		tr, _ := r["transfer"].(map[string]any)
		if r["ended_at"] == nil || tr == nil || tr["state"] != "completed" {
			return fmt.Errorf("record %v", r)
		}
		if tr["mode"] != "bridge" || tr["to"] != "tel:+14155550143" || tr["via"] != "sip_refer" {
			t.Fatalf("transfer %v", tr)
		}
		return nil
	})
	t.Logf("RTP packets from the caller at the human: %d", got.Load())
	if got.Load() < 100 {
		t.Errorf("%d RTP packets reached the human, want most of the capture's 236", got.Load())
	}
	// quit baresip (killing timeout, its parent, would leave it running)
	quit := `{"command":"quit","token":"x2"}`
	if _, err := fmt.Fprintf(conn, "%d:%s,", len(quit), quit); err != nil {
		t.Errorf("baresip quit: %v", err)
	}
	if err := bs.wait(t, 15*time.Second); err != nil {
		t.Logf("baresip: %v", err)
	}
}
