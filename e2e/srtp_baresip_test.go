package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// writeSelfSigned writes a certificate and key for 127.0.0.1 into dir.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// TestBaresipSRTPCallOverTLSRelayed: baresip (Debian, srtp module,
// mediaenc=srtp-mand) plays a carrier on a TLS trunk whose srtp is
// optional and calls a workspace number; the agent is a plain-RTP UDP
// endpoint whose SDP points at a socket that echoes every RTP packet, and
// the workspace allows mixed calls. The relay must terminate SRTP toward
// baresip and relay plain RTP to the agent: the echo socket receives
// decrypted RTP (version 2, PCMU) from the relay, the relay encrypts the
// echo back to baresip, and the call's history shows packets on both
// legs, the caller leg's SRTP suite, and no authentication failure.
func TestBaresipSRTPCallOverTLSRelayed(t *testing.T) {
	baresipSecureCall(t, "srtp", "srtp-mand", "tls")
}

// TestBaresipDTLSSRTPCallRelayed: the same with DTLS-SRTP (baresip's
// dtls_srtp module, mediaenc=dtls_srtp) over plain UDP signalling: the
// relay answers the fingerprint, handshakes on the media port and keys
// the caller leg from it.
func TestBaresipDTLSSRTPCallRelayed(t *testing.T) {
	baresipSecureCall(t, "dtls_srtp", "dtls_srtp", "udp")
}

func baresipSecureCall(t *testing.T, module, mediaenc, transport string) {
	needBinary(t, baresipBin, "baresip-core")
	if _, err := os.Stat("/usr/lib/baresip/modules/" + module + ".so"); err != nil {
		t.Skipf("baresip %s module not installed", module)
	}

	echo, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	var echoed, pcmu atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 12 && buf[0]>>6 == 2 && buf[1]&0x7f < 72 { // RTP, not RTCP
				echoed.Add(1)
				if buf[1]&0x7f == 0 && n == 12+160 {
					pcmu.Add(1) // a whole PCMU frame in clear: the relay decrypted it
				}
				_, _ = echo.WriteTo(buf[:n], from)
			}
		}
	}()
	agent := newUA(t)
	agent.mu.Lock()
	agent.sdp = fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
		echo.LocalAddr().(*net.UDPAddr).Port)
	agent.mu.Unlock()

	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	cfg := testConfig(t)
	cfg.SIP.TLSAddr, cfg.SIP.TLSCert, cfg.SIP.TLSKey = "127.0.0.1:0", certFile, keyFile
	for i := range cfg.SIP.Trunks {
		cfg.SIP.Trunks[i].SRTP = "optional"
	}
	n, logs := startNode(t, cfg)
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	c.must(201, "POST", "/v1/agents", `{"id":"bot","name":"bot","media":"relay","endpoints":[{"region":"us-east","uri":"`+agent.uri()+`"}]}`)
	c.must(200, "PATCH", "/v1/workspace", `{"media":{"allow_mixed_srtp":true}}`)
	num, _ := buy(t, c, "228", "bot")
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		r, ok := n.Table().Load().Lookup(num)
		if !ok || r.Agent == nil {
			return fmt.Errorf("%s is not routed yet", num)
		}
		if w := n.Table().Load().Workspace(r.Number.Workspace); w == nil || !w.AllowMixedSRTP {
			return fmt.Errorf("allow_mixed_srtp is not in the routing table yet")
		}
		return nil
	})

	gw := n.SIP().TLSAddr()
	if transport == "udp" {
		gw = n.SIP().UDPAddr()
	}
	bdir := filepath.Join(dir, "baresip")
	if err := os.MkdirAll(bdir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"config": "poll_method epoll\nsip_listen 127.0.0.1:0\nnet_interface 127.0.0.1\nsip_cafile " + certFile + "\n" +
			"audio_source ausine,440\nausrc_srate 48000\nausrc_channels 2\naudio_player aubridge,agent\naudio_alert aubridge,agent\n" +
			"module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule ausine.so\nmodule aubridge.so\nmodule " + module + ".so\n" +
			"module_app account.so\nmodule_app menu.so\n",
		"accounts": "<sip:carrier@127.0.0.1;transport=" + transport + ">;regint=0;mediaenc=" + mediaenc + ";audio_codecs=PCMU\n",
		"contacts": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(bdir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, baresipBin, "-4", "-v", "-f", bdir, "-t", "8",
		"-e", fmt.Sprintf("/dial sip:%s@%s;transport=%s", num, gw, transport))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Logf("baresip: %v", err)
	}

	var rec map[string]any
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, x := range c.must(200, "GET", "/v1/calls", "")["calls"].([]any) {
			if m := x.(map[string]any); m["direction"] == "inbound" && m["ended_at"] != nil {
				rec = m
				return nil
			}
		}
		return fmt.Errorf("no ended inbound call in GET /v1/calls\nbaresip:\n%s\ngateway:\n%s", out, logs.String())
	})
	if rec["answered_at"] == nil {
		t.Fatalf("history record %v\nbaresip:\n%s", rec, out)
	}
	if got := pcmu.Load(); got < 50 {
		t.Errorf("the agent received %d decrypted PCMU frames from the relay (%d RTP), want at least 50 (of ~8 s)\nbaresip:\n%s", got, echoed.Load(), out)
	}
	media, _ := rec["media"].(map[string]any)
	caller, _ := media["caller"].(map[string]any)
	agentLeg, _ := media["agent"].(map[string]any)
	if p, _ := caller["packets"].(float64); p < 50 {
		t.Errorf("caller leg packets %v, want at least 50: %v", caller["packets"], media)
	}
	if p, _ := agentLeg["packets"].(float64); p < 50 {
		t.Errorf("agent leg packets %v (the echo, encrypted back to baresip), want at least 50: %v", agentLeg["packets"], media)
	}
	if s, _ := caller["srtp"].(string); !strings.HasPrefix(s, "AES_CM_128_HMAC_SHA1_") && s != "AEAD_AES_128_GCM" {
		t.Errorf("caller leg srtp %q, want the suite baresip offered: %v", caller["srtp"], media)
	}
	if agentLeg["srtp"] != nil {
		t.Errorf("agent leg srtp %v, want plain", agentLeg["srtp"])
	}
	// Every RTP packet of baresip's authenticated (none lost); libre sends
	// plain RTCP (APP keepalives) until SRTP is set up, more of them the
	// longer the DTLS handshake takes on a loaded machine, and may send its
	// RTCP BYE after it is torn down: those are rightly dropped, and stay a
	// few against hundreds of RTP packets.
	if l, _ := caller["lost"].(float64); l != 0 {
		t.Errorf("caller leg lost %v RTP packets (failed SRTP authentication?): %v", l, media)
	}
	cp, _ := caller["packets"].(float64)
	if f, _ := caller["srtp_auth_failures"].(float64); f > 2 && f*20 > cp {
		t.Errorf("%v of baresip's %v packets failed authentication", f, caller["packets"])
	}
	if !strings.Contains(string(out), "srtp") {
		t.Errorf("baresip's output does not mention srtp: was the module loaded?\n%s", out)
	}
	if strings.Contains(string(out), "srtp: failed to decrypt") {
		t.Errorf("baresip could not decrypt the relay's SRTP:\n%s", out)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "inline:") {
			t.Errorf("an SDES key in the gateway's log: %s", line)
		}
	}
	t.Logf("agent echoed %d packets (%d PCMU in clear); relay figures %v", echoed.Load(), pcmu.Load(), media)
}
