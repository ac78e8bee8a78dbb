package sip

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a certificate and key for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "callgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
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

// TestTLSCall: a carrier on TLS reaches a UDP agent.
func TestTLSCall(t *testing.T) {
	certFile, keyFile := selfSigned(t, t.TempDir())
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), func(c *Config) {
		c.TLSAddr, c.TLSCert, c.TLSKey = "127.0.0.1:0", certFile, keyFile
	}, nil)
	if !e.TLSAddr().IsValid() {
		t.Fatal("no TLS address")
	}
	c, err := tls.Dial("tcp", e.TLSAddr().String(), &tls.Config{InsecureSkipVerify: true}) // test client only
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lp := c.LocalAddr().(*net.TCPAddr).Port
	inv := "INVITE sips:" + numPurchased + "@127.0.0.1:" + itoa(int(e.TLSAddr().Port())) + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS 127.0.0.1:" + itoa(lp) + ";branch=z9hG4bK-tls1\r\nMax-Forwards: 70\r\n" +
		"From: <sips:+15005550006@127.0.0.1>;tag=tls\r\nTo: <sips:" + numPurchased + "@127.0.0.1>\r\nCall-ID: tls-1\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sips:caller@127.0.0.1:" + itoa(lp) + ">\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + itoa(len(testSDP)) + "\r\n\r\n" + testSDP
	if _, err := c.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got strings.Builder
	buf := make([]byte, 8192)
	for !strings.Contains(got.String(), "SIP/2.0 200") {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	if !strings.Contains(got.String(), "transport=tls") {
		t.Errorf("200 lacks the TLS-side Record-Route:\n%s", got.String())
	}
	recv(t, agent.invites, "INVITE over UDP")
}
