package sip

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testlog"
	"github.com/callgate/callgate/routing"
)

// testCA is a private certificate authority made for one test.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // PEM of the CA certificate
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "callgate test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{t: t, dir: t.TempDir(), cert: cert, key: key, pool: x509.NewCertPool()}
	ca.pool.AddCert(cert)
	ca.file = filepath.Join(ca.dir, "ca.pem")
	if err := os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue signs a certificate for 127.0.0.1 (server and client use) and
// writes it and its key as PEM files named after cn.
func (ca *testCA) issue(cn string) (certFile, keyFile string, cert tls.Certificate) {
	return ca.issueFor(cn, nil)
}

// issueFor is issue for the given DNS names only (no IP address) when
// names is not empty.
func (ca *testCA) issueFor(cn string, names []string) (certFile, keyFile string, cert tls.Certificate) {
	t := ca.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	if len(names) > 0 {
		tmpl.IPAddresses, tmpl.DNSNames = nil, names
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	certFile, keyFile = filepath.Join(ca.dir, cn+".pem"), filepath.Join(ca.dir, cn+"-key.pem")
	_ = os.WriteFile(certFile, certPEM, 0o600)
	_ = os.WriteFile(keyFile, keyPEM, 0o600)
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// runEdgeLogged is runEdge with the edge's log kept for assertions.
func runEdgeLogged(t *testing.T, table *routing.Table, tweak func(*Config)) (*testEdge, *testlog.Buffer) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Region = "test"
	cfg.InviteTimeout = 5 * time.Second // longer than any dial here: a fast failover is the dial's doing
	cfg.Probe.Disabled = true
	if tweak != nil {
		tweak(&cfg)
	}
	logs := &testlog.Buffer{}
	return serveEdge(t, cfg, table, slog.New(slog.NewTextHandler(logs, nil)), nil), logs
}

// tlsAgent is an agent endpoint on TLS (raw tls.Listener) that answers
// every INVITE 486 and records the client certificates it was shown.
type tlsAgent struct {
	ln      net.Listener
	mu      sync.Mutex
	clients []string // CN of each verified client certificate
	invites chan string
}

func newTLSAgent(t *testing.T, cert tls.Certificate, clientCAs *x509.CertPool) *tlsAgent {
	t.Helper()
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		conf.ClientAuth = tls.RequireAndVerifyClientCert
		conf.ClientCAs = clientCAs
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	a := &tlsAgent{ln: ln, invites: make(chan string, 8)}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				tc := c.(*tls.Conn)
				if tc.Handshake() != nil {
					return
				}
				a.mu.Lock()
				for _, pc := range tc.ConnectionState().PeerCertificates[:min(1, len(tc.ConnectionState().PeerCertificates))] {
					a.clients = append(a.clients, pc.Subject.CommonName)
				}
				a.mu.Unlock()
				par := sip.NewParser().NewSIPStream()
				buf := make([]byte, 16384)
				for {
					n, err := tc.Read(buf)
					if err != nil {
						return
					}
					_ = par.ParseSIPStream(buf[:n], func(m sip.Message) {
						req, ok := m.(*sip.Request)
						if !ok || req.Method != sip.INVITE {
							return
						}
						a.invites <- req.CallID().Value()
						res := sip.NewResponseFromRequest(req, 486, "Busy Here", nil)
						_, _ = tc.Write([]byte(res.String()))
					})
				}
			}()
		}
	}()
	return a
}

func (a *tlsAgent) endpoint() routing.Endpoint {
	return routing.Endpoint{Region: "eu", URI: "sip:bot@" + a.ln.Addr().String() + ";transport=tls"}
}

func (a *tlsAgent) clientCNs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.clients...)
}

// TestTLSAgentPrivateCA: an agent endpoint whose certificate comes from a
// private CA is reached over TLS once tls_ca_file names that CA, and gets
// callgate's client certificate when it asks for one (mutual TLS). Without
// the CA the handshake fails, and that is logged with the call's Call-ID,
// counted, and the call fails over at once instead of waiting out the
// endpoint's invite timeout.
func TestTLSAgentPrivateCA(t *testing.T) {
	ca := newTestCA(t)
	_, _, agentCert := ca.issue("agent")
	clientCert, clientKey, _ := ca.issue("callgate-client")

	t.Run("trusted", func(t *testing.T) {
		agent := newTLSAgent(t, agentCert, ca.pool) // requires a client certificate from ca
		e, _ := runEdgeLogged(t, buildTable(agent.endpoint()), func(c *Config) {
			c.TLSCAFile = ca.file
			c.TLSClientCert, c.TLSClientKey = clientCert, clientKey
		})
		raw := newRaw(t, "127.0.0.1", net_(e))
		raw.send(raw.invite(e, numPurchased, "tls-ca-1", ""))
		if m := raw.readFinal(10 * time.Second); !strings.HasPrefix(m, "SIP/2.0 486") {
			t.Fatalf("final response %q, want the agent's 486", statusLine(m))
		}
		if got := <-agent.invites; got != "tls-ca-1" {
			t.Errorf("agent got INVITE %q", got)
		}
		if cns := agent.clientCNs(); len(cns) != 1 || cns[0] != "callgate-client" {
			t.Errorf("client certificates at the agent: %q, want [callgate-client]", cns)
		}
	})

	t.Run("host name", func(t *testing.T) {
		// an endpoint named by host name is checked against that name
		_, _, named := ca.issueFor("agent-by-name", []string{"localhost"})
		agent := newTLSAgent(t, named, nil)
		ep := agent.endpoint()
		ep.URI = strings.Replace(ep.URI, "127.0.0.1", "localhost", 1)
		e, _ := runEdgeLogged(t, buildTable(ep), func(c *Config) { c.TLSCAFile = ca.file })
		raw := newRaw(t, "127.0.0.1", net_(e))
		raw.send(raw.invite(e, numPurchased, "tls-ca-3", ""))
		if m := raw.readFinal(10 * time.Second); !strings.HasPrefix(m, "SIP/2.0 486") {
			t.Fatalf("final response %q, want the agent's 486", statusLine(m))
		}
	})

	t.Run("untrusted", func(t *testing.T) {
		agent := newTLSAgent(t, agentCert, nil)
		e, logs := runEdgeLogged(t, buildTable(agent.endpoint()), nil)
		raw := newRaw(t, "127.0.0.1", net_(e))
		start := time.Now()
		raw.send(raw.invite(e, numPurchased, "tls-ca-2", ""))
		m := raw.readFinal(10 * time.Second)
		if !strings.HasPrefix(m, "SIP/2.0 503") {
			t.Fatalf("final response %q, want 503 (no endpoint reachable)", statusLine(m))
		}
		if took := time.Since(start); took >= e.cfg.InviteTimeout {
			t.Errorf("503 after %s: the failed handshake did not fail over before invite_timeout %s", took, e.cfg.InviteTimeout)
		}
		if n := testutil.ToFloat64(e.metrics.SendErrors.WithLabelValues("tls", "handshake")); n != 1 {
			t.Errorf("send_errors_total{transport=tls,stage=handshake} = %v, want 1", n)
		}
		checkFor(t, 10*time.Second, func() error {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "send failed") && strings.Contains(l, "call_id=tls-ca-2") && strings.Contains(l, "stage=handshake") {
					return nil
				}
			}
			return fmt.Errorf("no send failure logged with the call id:\n%s", logs.String())
		})
	})
}

// deadPort is a local TCP port nothing listens on.
func deadPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return p
}

// streamCarrier is a carrier on one TCP or TLS connection to the edge.
type streamCarrier struct {
	t    *testing.T
	c    net.Conn
	r    *bufio.Reader
	msgs chan sip.Message
}

func dialCarrier(t *testing.T, e *testEdge, overTLS bool) *streamCarrier {
	t.Helper()
	var c net.Conn
	var err error
	if overTLS {
		c, err = tls.Dial("tcp", e.TLSAddr().String(), &tls.Config{InsecureSkipVerify: true}) // test client only
	} else {
		c, err = net.Dial("tcp", e.TCPAddr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	sc := &streamCarrier{t: t, c: c, msgs: make(chan sip.Message, 16)}
	done := make(chan struct{})
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	go func() {
		defer close(done)
		par := sip.NewParser().NewSIPStream()
		buf := make([]byte, 16384)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			_ = par.ParseSIPStream(buf[:n], func(m sip.Message) { sc.msgs <- m })
		}
	}()
	return sc
}

func (sc *streamCarrier) write(s string) {
	sc.t.Helper()
	if _, err := sc.c.Write([]byte(s)); err != nil {
		sc.t.Fatal(err)
	}
}

// next returns the next message matching ok, skipping others.
func (sc *streamCarrier) next(what string, ok func(sip.Message) bool) sip.Message {
	sc.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-sc.msgs:
			if ok(m) {
				return m
			}
		case <-deadline:
			sc.t.Fatalf("carrier: no %s on its connection", what)
			return nil
		}
	}
}

// answeredCall places a call to numPurchased over the carrier's
// connection with the given Contact URI, waits for the 200 and ACKs it by
// the route set (Record-Route reversed) to the agent's Contact.
func (sc *streamCarrier) answeredCall(e *testEdge, overTLS bool, callID, contact string) *sip.Response {
	sc.t.Helper()
	local := sc.c.LocalAddr().String()
	scheme, tp, edgePort := "sip", "TCP", int(e.TCPAddr().Port())
	if overTLS {
		scheme, tp, edgePort = "sips", "TLS", int(e.TLSAddr().Port())
	}
	sc.write(fmt.Sprintf("INVITE %s:%s@127.0.0.1:%d SIP/2.0\r\n"+
		"Via: SIP/2.0/%s %s;branch=z9hG4bK-%s\r\nMax-Forwards: 70\r\n"+
		"From: <sip:+15005550006@127.0.0.1>;tag=car\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: %s\r\n"+
		"CSeq: 1 INVITE\r\nContact: <%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		scheme, numPurchased, edgePort, tp, local, callID, numPurchased, callID, contact, len(testSDP), testSDP))
	ok := sc.next("200 to the INVITE", func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.StatusCode == 200
	}).(*sip.Response)
	var rr []string
	for _, h := range ok.GetHeaders("Record-Route") {
		rr = append([]string{h.Value()}, rr...)
	}
	ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK-%s-ack\r\nMax-Forwards: 70\r\n",
		ok.Contact().Address.String(), tp, local, callID)
	for _, r := range rr {
		ack += "Route: " + r + "\r\n"
	}
	ack += fmt.Sprintf("From: <sip:+15005550006@127.0.0.1>;tag=car\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		ok.To().Value(), callID)
	sc.write(ack)
	return ok
}

// TestByeReachesCarrierOverItsConnection: a carrier connects over TCP or
// TLS from an ephemeral port and its Contact names an address where
// nothing listens (behind NAT). The agent's BYE still reaches it, over the
// carrier's own connection, and the call ends as bye_agent.
func TestByeReachesCarrierOverItsConnection(t *testing.T) {
	certFile, keyFile := selfSigned(t, t.TempDir())
	for _, overTLS := range []bool{false, true} {
		name := map[bool]string{false: "tcp", true: "tls"}[overTLS]
		t.Run(name, func(t *testing.T) {
			agent := newUA(t, "127.0.0.1")
			e := runEdge(t, buildTable(agent.endpoint("eu")), func(c *Config) {
				c.TLSAddr, c.TLSCert, c.TLSKey = "127.0.0.1:0", certFile, keyFile
			}, nil)
			car := dialCarrier(t, e, overTLS)
			callID := "reuse-" + name
			scheme, tp := "sip", "tcp"
			if overTLS {
				scheme, tp = "sips", "tls"
			}
			car.answeredCall(e, overTLS, callID, fmt.Sprintf("%s:carrier@127.0.0.1:%d;transport=%s", scheme, deadPort(t), tp))
			recv(t, agent.acks, "ACK at the agent")

			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			byeDone := make(chan error, 1)
			go func() { byeDone <- agent.session(callID).Bye(ctx) }()
			bye := car.next("BYE from the agent", func(m sip.Message) bool {
				r, ok := m.(*sip.Request)
				return ok && r.Method == sip.BYE
			}).(*sip.Request)
			car.write(sip.NewResponseFromRequest(bye, 200, "OK", nil).String())
			if err := <-byeDone; err != nil {
				t.Errorf("agent's BYE: %v", err)
			}
			if en := e.events.waitEvent(t, calls.Ended, callID); en.Reason != "bye_agent" {
				t.Errorf("ended reason %q, want bye_agent", en.Reason)
			}
		})
	}
}

// TestUndeliveredByeNotNormal: when the agent's BYE can reach the carrier
// neither at its Contact nor over its (closed) connection, the call is
// not recorded as ended normally: its end reason says so, it is logged
// with the Call-ID and counted, and the agent gets a 503.
func TestUndeliveredByeNotNormal(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e, logs := runEdgeLogged(t, buildTable(agent.endpoint("eu")), nil)
	car := dialCarrier(t, e, false)
	const callID = "bye-lost"
	car.answeredCall(e, false, callID, fmt.Sprintf("sip:carrier@127.0.0.1:%d;transport=tcp", deadPort(t)))
	recv(t, agent.acks, "ACK at the agent")
	car.c.Close() // the carrier's connection is gone too
	checkFor(t, 10*time.Second, func() error {
		if n := testutil.ToFloat64(e.metrics.Conns.WithLabelValues("tcp")); n != 0 {
			return fmt.Errorf("%v inbound TCP connections still open", n)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := agent.session(callID).Bye(ctx); statusOf(err) != 503 {
		t.Errorf("agent's BYE: %v, want a 503", err)
	}
	if en := e.events.waitEvent(t, calls.Ended, callID); en.Reason != "bye_agent_undelivered" {
		t.Errorf("ended reason %q, want bye_agent_undelivered", en.Reason)
	}
	// (a BYE retransmitted before its 503 arrived may count twice)
	if n := testutil.ToFloat64(e.metrics.DialogSendFails.WithLabelValues("BYE")); n < 1 {
		t.Errorf("dialog_send_failures_total{method=BYE} = %v, want at least 1", n)
	}
	if n := testutil.ToFloat64(e.metrics.SendErrors.WithLabelValues("tcp", "dial")); n < 1 {
		t.Errorf("send_errors_total{transport=tcp,stage=dial} = %v, want at least 1", n)
	}
	checkFor(t, 10*time.Second, func() error {
		if !strings.Contains(logs.String(), "in-dialog request not delivered") || !strings.Contains(logs.String(), "call_id="+callID) {
			return fmt.Errorf("not logged with the call id:\n%s", logs.String())
		}
		return nil
	})
}

// TestTLSEndpointDownIsLogged: a probed TLS endpoint whose certificate is
// not trusted goes down, and both the failed handshakes and the down
// transition are logged.
func TestTLSEndpointDownIsLogged(t *testing.T) {
	ca := newTestCA(t)
	_, _, agentCert := ca.issue("agent")
	agent := newTLSAgent(t, agentCert, nil)
	e, logs := runEdgeLogged(t, buildTable(agent.endpoint()), func(c *Config) {
		c.Probe = ProbeConfig{Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond, DownAfter: 2, UpAfter: 1, Alpha: 0.3}
	})
	checkFor(t, 20*time.Second, func() error {
		l := logs.String()
		if !strings.Contains(l, `msg="sip: endpoint down"`) || !strings.Contains(l, "region=eu") {
			return fmt.Errorf("no endpoint down line:\n%s", l)
		}
		if !strings.Contains(l, "call_id=probe-") || !strings.Contains(l, "stage=handshake") {
			return fmt.Errorf("no failed probe handshake logged:\n%s", l)
		}
		return nil
	})
	if n := testutil.ToFloat64(e.metrics.SendErrors.WithLabelValues("tls", "handshake")); n < 1 {
		t.Errorf("send_errors_total{transport=tls,stage=handshake} = %v", n)
	}
}
