package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/routing"
)

// demuxConn is a peer's media socket as a DTLS-SRTP endpoint has it:
// DTLS records to the DTLS stack, everything else to media (RFC 7983).
type demuxConn struct {
	*net.UDPConn
	media chan []byte
}

func (d *demuxConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := d.UDPConn.ReadFrom(b)
		if err != nil || isDTLS(b[:n]) {
			return n, a, err
		}
		select {
		case d.media <- append([]byte(nil), b[:n]...):
		default:
		}
	}
}

func (d *demuxConn) next(t testing.TB) []byte {
	t.Helper()
	select {
	case p := <-d.media:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no media")
		return nil
	}
}

func fingerprintOf(cert tls.Certificate) string {
	sum := sha256.Sum256(cert.Certificate[0])
	return "sha-256 " + colonHex(sum[:])
}

// dtlsCall: the caller offers DTLS-SRTP (UDP/TLS/RTP/SAVP, a=fingerprint of
// sdpCert, a=setup:actpass) over plain signalling; the agent is plain RTP
// (the workspace allows mixed calls). The caller then handshakes with cert.
func dtlsCall(t *testing.T, m *Manager, sdpCert, cert tls.Certificate) (*call, *demuxConn, []byte, error) {
	t.Helper()
	c := &call{caller: newEndpoint(t), agent: newEndpoint(t)}
	s, err := m.NewSession("call-"+t.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c.s = s
	s.SetSRTP(routing.SRTPCall{Caller: routing.SRTPRequired, AllowMixed: true})
	off, err := s.RewriteOffer(sdesSDP(c.caller, "UDP/TLS/RTP/SAVP", "a=fingerprint:"+fingerprintOf(sdpCert), "a=setup:actpass"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(off, []byte("fingerprint")) || !bytes.Contains(off, []byte("RTP/AVP")) {
		t.Fatalf("offer to the plain agent:\n%s", off)
	}
	c.toAgent = mediaAddr(t, off)
	ans, err := s.RewriteAnswer(offerFor(c.agent))
	if err != nil {
		t.Fatal(err)
	}
	c.toCaller = mediaAddr(t, ans)
	for _, want := range []string{"UDP/TLS/RTP/SAVP", "a=setup:passive", "a=fingerprint:sha-256 "} {
		if !bytes.Contains(ans, []byte(want)) {
			t.Fatalf("answer to the caller lacks %q:\n%s", want, ans)
		}
	}
	if bytes.Contains(ans, []byte("a=crypto")) {
		t.Fatalf("DTLS answer with SDES keys:\n%s", ans)
	}
	relayFP := string(ans[bytes.Index(ans, []byte("a=fingerprint:"))+len("a=fingerprint:"):])
	relayFP = strings.TrimSpace(relayFP[:strings.Index(relayFP, "\r\n")])

	dc := &demuxConn{UDPConn: c.caller.c, media: make(chan []byte, 64)}
	conn, err := dtls.Client(dc, net.UDPAddrFromAddrPort(c.toCaller), &dtls.Config{
		Certificates:           []tls.Certificate{cert},
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AES128_CM_HMAC_SHA1_80},
		InsecureSkipVerify:     true,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			sum := sha256.Sum256(raw[0])
			if "sha-256 "+colonHex(sum[:]) != relayFP {
				return errors.New("the relay's certificate does not match its a=fingerprint")
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		return c, dc, nil, err
	}
	state, _ := conn.ConnectionState()
	cfg := srtp.Config{Profile: srtp.ProtectionProfileAes128CmHmacSha1_80}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, true); err != nil {
		t.Fatal(err)
	}
	keys := append(append(append(append([]byte{}, cfg.Keys.LocalMasterKey...), cfg.Keys.LocalMasterSalt...), cfg.Keys.RemoteMasterKey...), cfg.Keys.RemoteMasterSalt...)
	return c, dc, keys, nil
}

// DTLS-SRTP with a pion/dtls peer: the relay answers passive, handshakes
// on the media port, keys the leg from it; SRTP from the caller reaches
// the plain agent decrypted, and the agent's RTP reaches the caller
// encrypted under the handshake's keys.
func TestDTLSSRTPCallerLeg(t *testing.T) {
	m, _ := runTestManager(t, nil)
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	c, dc, keys, err := dtlsCall(t, m, cert, cert)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if c.s.caller.srtp.Load() == nil {
			return errors.New("the relay has not keyed the caller leg")
		}
		return nil
	})
	tx, err := srtp.CreateContext(keys[:16], keys[16:30], srtp.ProtectionProfileAes128CmHmacSha1_80)
	if err != nil {
		t.Fatal(err)
	}
	rx, err := srtp.CreateContext(keys[30:46], keys[46:60], srtp.ProtectionProfileAes128CmHmacSha1_80)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		payload := bytes.Repeat([]byte{byte(i + 1)}, 160)
		c.caller.send(c.toCaller, seal(t, tx, rtpPacket(0x1111, uint16(i+1), uint32(i*160), payload)))
		got, _, err := c.agent.recv(5 * time.Second)
		if err != nil {
			t.Fatalf("caller->agent %d: %v", i, err)
		}
		var pk rtp.Packet
		if err := pk.Unmarshal(got); err != nil || !bytes.Equal(pk.Payload, payload) {
			t.Fatalf("plain agent got %x, want the decrypted packet", got[:16])
		}
		sent := c.agent.sendRTP(c.toAgent, rtpPacket(0x2222, uint16(i+1), uint32(i*160), payload))
		plain, err := rx.DecryptRTP(nil, dc.next(t), nil)
		if err != nil || !bytes.Equal(plain, sent) {
			t.Fatalf("agent->caller %d: %v", i, err)
		}
	}
	if st := c.s.Stats(); st.Caller.SRTP != "AES_CM_128_HMAC_SHA1_80" || st.Agent.SRTP != "" {
		t.Fatalf("srtp: caller %q agent %q", st.Caller.SRTP, st.Agent.SRTP)
	}
}

// A peer whose certificate does not match the fingerprint in its SDP
// fails the handshake; the leg is never keyed and nothing is relayed.
func TestDTLSSRTPFingerprintMismatch(t *testing.T) {
	m, reg := runTestManager(t, nil)
	inSDP, _ := selfsign.GenerateSelfSigned()
	other, _ := selfsign.GenerateSelfSigned()
	c, _, _, err := dtlsCall(t, m, inSDP, other)
	if err == nil {
		t.Fatal("the handshake succeeded with a certificate that is not the SDP's")
	}
	testwait.CheckFor(t, 15*time.Second, 10*time.Millisecond, func() error {
		if v := counterValue(t, reg, "callgate_media_dtls_handshake_failures_total"); v != 1 {
			return fmt.Errorf("dtls failures %v", v)
		}
		return nil
	})
	if c.s.caller.srtp.Load() != nil {
		t.Fatal("the leg was keyed")
	}
	// media from the caller's address is not relayed without keys
	c.s.ioMu.Lock()
	c.s.caller.packet(rtpPacketBytes(t, 1), c.caller.addr, false, new(scratch))
	c.s.ioMu.Unlock()
	if st := c.s.Stats(); st.Caller.Packets != 0 {
		t.Fatalf("caller leg accepted %d packets without keys", st.Caller.Packets)
	}
}

func rtpPacketBytes(t testing.TB, seq uint16) []byte {
	b, err := rtpPacket(1, seq, 0, make([]byte, 160)).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
