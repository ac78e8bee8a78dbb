package sip

import (
	"crypto/tls"
	"encoding/base64"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

// srtpTable: number numPurchased → agent a1 (media, srtp as given) in
// workspace w, whose allow_mixed_srtp is mixed.
func srtpTable(mediaMode, agentSRTP string, mixed bool, eps ...routing.Endpoint) *routing.Table {
	b := routing.NewBuilder()
	b.AddWorkspace(routing.Workspace{ID: "w", AllowMixedSRTP: mixed})
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Media: mediaMode, SRTP: agentSRTP, Endpoints: eps})
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

const sdesKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd" // 30 bytes, base64

var srtpSDP = strings.Replace(testSDP, "RTP/AVP", "RTP/SAVP", 1) +
	"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + sdesKey + "\r\n"

var finalRe = regexp.MustCompile(`(?m)^SIP/2\.0 [2-6]\d\d `)

// tlsInvite sends an INVITE with body over TLS to the edge and returns
// its final response (with the body).
func tlsInvite(t *testing.T, e *testEdge, callID, body string) string {
	t.Helper()
	c, err := tls.Dial("tcp", e.TLSAddr().String(), &tls.Config{InsecureSkipVerify: true}) // test client only
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	lp := c.LocalAddr().(*net.TCPAddr).Port
	inv := "INVITE sips:" + numPurchased + "@127.0.0.1:" + itoa(int(e.TLSAddr().Port())) + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 127.0.0.1:" + itoa(lp) + ";branch=z9hG4bK-" + callID + "\r\nMax-Forwards: 70\r\n" +
		"From: <sips:+15005550006@127.0.0.1>;tag=tls\r\nTo: <sips:" + numPurchased + "@127.0.0.1>\r\nCall-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sips:caller@127.0.0.1:" + itoa(lp) + ";transport=tls>\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if _, err := c.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got strings.Builder
	buf := make([]byte, 16384)
	for {
		s := got.String()
		if loc := finalRe.FindStringIndex(s); loc != nil {
			rest := s[loc[0]:]
			if i := strings.Index(rest, "\r\n\r\n"); i >= 0 {
				m := regexp.MustCompile(`(?mi)^Content-Length: *(\d+)`).FindStringSubmatch(rest[:i])
				n := 0
				if m != nil {
					n = atoiT(t, m[1])
				}
				if len(rest) >= i+4+n {
					return rest[:i+4+n]
				}
			}
		}
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
}

func atoiT(t *testing.T, s string) int {
	n := 0
	for _, r := range s {
		n = n*10 + int(r-'0')
	}
	return n
}

func tlsEdge(t *testing.T, table *routing.Table, trunkSRTP string, anchor MediaAnchor) *testEdge {
	t.Helper()
	certFile, keyFile := selfSigned(t, t.TempDir())
	return runEdge(t, table, func(c *Config) {
		c.TLSAddr, c.TLSCert, c.TLSKey = "127.0.0.1:0", certFile, keyFile
		for i := range c.Trunks {
			c.Trunks[i].SRTP = trunkSRTP
		}
	}, anchor)
}

func rejectedSRTP(e *testEdge) float64 {
	return testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("srtp_policy"))
}

// A carrier on a TLS trunk offering SDES reaches a plain agent on a
// relayed call only when the workspace allows mixed calls; then the
// agent gets RTP/AVP without keys and the carrier gets the relay's key.
func TestSRTPMixedCallByWorkspaceSetting(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	mgr := newMediaManager(t, 31300, 31399)
	anchor := media.Anchor[MediaSession]{M: mgr}

	e := tlsEdge(t, srtpTable("relay", "", false, agent.endpoint("eu")), "optional", anchor)
	res := tlsInvite(t, e, "srtp-mixed-1", srtpSDP)
	if !strings.HasPrefix(res, "SIP/2.0 488") || !strings.Contains(res, "allow_mixed_srtp") {
		t.Fatalf("mixed call, workspace says no: got\n%s\nwant 488 with a Warning naming allow_mixed_srtp", res)
	}
	if v := rejectedSRTP(e); v != 1 {
		t.Errorf("rejected_total{reason=srtp_policy} = %v, want 1", v)
	}

	e2 := tlsEdge(t, srtpTable("relay", "", true, agent.endpoint("eu")), "optional", anchor)
	res = tlsInvite(t, e2, "srtp-mixed-2", srtpSDP)
	if !strings.HasPrefix(res, "SIP/2.0 200") {
		t.Fatalf("mixed call allowed: got\n%s", res)
	}
	inv := recv(t, agent.invites, "INVITE at the agent")
	off := string(inv.Body())
	if strings.Contains(off, "a=crypto") || strings.Contains(off, sdesKey) || !strings.Contains(off, "RTP/AVP") {
		t.Fatalf("the plain agent's offer: want RTP/AVP without keys:\n%s", off)
	}
	if !strings.Contains(res, "RTP/SAVP") || !strings.Contains(res, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:") || strings.Contains(res, sdesKey) {
		t.Fatalf("answer to the carrier: want RTP/SAVP with the relay's own key (tag 1):\n%s", res)
	}
	k := regexp.MustCompile(`inline:([A-Za-z0-9+/=]+)`).FindStringSubmatch(res)
	if b, err := base64.StdEncoding.DecodeString(k[1]); err != nil || len(b) != 30 {
		t.Fatalf("relay key %q: %v", k[1], err)
	}
}

// srtp: required on the trunk and an offer without SRTP → 488, on a
// relayed and on a direct-media call; SDES over UDP signalling → 488.
func TestSRTPRequiredWithoutOffer488(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	mgr := newMediaManager(t, 31400, 31499)
	for _, mode := range []string{"relay", "direct"} {
		t.Run(mode, func(t *testing.T) {
			e := tlsEdge(t, srtpTable(mode, "", true, agent.endpoint("eu")), "required", media.Anchor[MediaSession]{M: mgr})
			res := tlsInvite(t, e, "srtp-req-"+mode, testSDP)
			if !strings.HasPrefix(res, "SIP/2.0 488") || !strings.Contains(res, "Warning: 399 callgate") || !strings.Contains(res, "required") {
				t.Fatalf("got\n%s\nwant 488 with a Warning saying SRTP is required", res)
			}
			// the same call offering SDES goes through
			res = tlsInvite(t, e, "srtp-req-ok-"+mode, srtpSDP)
			if !strings.HasPrefix(res, "SIP/2.0 200") {
				t.Fatalf("SDES offer: got\n%s", res)
			}
			inv := recv(t, agent.invites, "INVITE at the agent")
			if mode == "direct" && !strings.Contains(string(inv.Body()), sdesKey) {
				t.Fatalf("direct media: the SDP (and its keys) must pass untouched:\n%s", inv.Body())
			}
		})
	}
	t.Run("sdes over udp", func(t *testing.T) {
		e := runEdge(t, srtpTable("relay", "", true, agent.endpoint("eu")), func(c *Config) { c.Trunks[0].SRTP = "optional" },
			media.Anchor[MediaSession]{M: mgr})
		raw := newRaw(t, "127.0.0.1", net_(e))
		inv := strings.Replace(raw.invite(e, numPurchased, "srtp-udp", ""), testSDP, srtpSDP, 1)
		inv = strings.Replace(inv, "Content-Length: "+itoa(len(testSDP)), "Content-Length: "+itoa(len(srtpSDP)), 1)
		raw.send(inv)
		if m := raw.readFinal(5 * time.Second); !strings.HasPrefix(m, "SIP/2.0 488") || !strings.Contains(m, "TLS") {
			t.Fatalf("got %q, want 488 (SDES keys need TLS)", m)
		}
	})
}

func TestEndpointTLS(t *testing.T) {
	for uri, want := range map[string]bool{
		"sips:bot@127.0.0.1:5061":              true,
		"sip:bot@127.0.0.1:5061;transport=tls": true,
		"sip:bot@127.0.0.1:5061;transport=TLS": true,
		"sip:bot@127.0.0.1:5060":               false,
		"sip:bot@127.0.0.1:5060;transport=tcp": false,
		"not a uri":                            false,
	} {
		if got := endpointTLS(uri); got != want {
			t.Errorf("%s: %v, want %v", uri, got, want)
		}
	}
}
