package sip

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"
)

// TestAgentTLS: an agent on TLS (sip.agents.tls_addr) is challenged and
// places its call over the TLS connection; the answer it gets carries
// the agent side's TLS Record-Route.
func TestAgentTLS(t *testing.T) {
	certFile, keyFile := selfSigned(t, t.TempDir())
	pstn := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: pstn.endpoint("local")}.build(), sandboxURI(pstn), func(c *Config) {
		c.TLSAddr, c.TLSCert, c.TLSKey = "127.0.0.1:0", certFile, keyFile
		c.Agents.TLSAddr = "127.0.0.1:0"
	}, nil)
	addr := e.ag.tp.TLSAddr()
	if !addr.IsValid() {
		t.Fatal("no agent TLS listener")
	}
	c, err := tls.Dial("tcp", addr.String(), &tls.Config{InsecureSkipVerify: true}) // test client only
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lp := itoa(c.LocalAddr().(*net.TCPAddr).Port)
	ruri := "sips:" + destUS + "@127.0.0.1:" + itoa(int(addr.Port()))
	invite := func(seq, authz string) string {
		return "INVITE " + ruri + " SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:" + lp + ";branch=z9hG4bK-atls" + seq + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sips:" + numSandboxOut + "@127.0.0.1>;tag=atls\r\nTo: <sips:" + destUS + "@127.0.0.1>\r\n" +
			"Call-ID: agent-tls-1\r\nCSeq: " + seq + " INVITE\r\nContact: <sips:agent@127.0.0.1:" + lp + ">\r\n" + authz +
			"Content-Type: application/sdp\r\nContent-Length: " + itoa(len(testSDP)) + "\r\n\r\n" + testSDP
	}
	read := func(want string) string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got strings.Builder
		buf := make([]byte, 8192)
		for !strings.Contains(got.String(), want) || !strings.HasSuffix(got.String(), "\r\n\r\n") && !strings.Contains(got.String(), "v=0") {
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, got.String())
			}
			got.Write(buf[:n])
		}
		return got.String()
	}
	if _, err := c.Write([]byte(invite("1", ""))); err != nil {
		t.Fatal(err)
	}
	res := read("SIP/2.0 407")
	var ch *digest.Challenge
	for _, l := range strings.Split(res, "\r\n") {
		if v, ok := strings.CutPrefix(l, "Proxy-Authenticate: "); ok && ch == nil {
			ch, _ = digest.ParseChallenge(v)
		}
	}
	if ch == nil {
		t.Fatalf("no challenge in %q", res)
	}
	cr, err := digest.Digest(ch, digest.Options{Method: "INVITE", URI: ruri, Username: agentUser, Password: agentPass, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(invite("2", "Proxy-Authorization: "+cr.String()+"\r\n"))); err != nil {
		t.Fatal(err)
	}
	recv(t, pstn.invites, "INVITE at the PSTN")
	if ok := read("SIP/2.0 200"); !strings.Contains(ok, "transport=tls") {
		t.Errorf("the agent's 200 lacks the agent side's TLS Record-Route:\n%s", ok)
	}
}
