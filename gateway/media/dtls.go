package media

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/srtp/v3"
)

// DTLS-SRTP (RFC 5763, 5764) on a leg whose peer offers it: the relay
// answers (a=setup passive, or active when the peer is passive), runs the
// DTLS handshake on the leg's RTP port (DTLS records are told from RTP
// and RTCP by their first byte, 20-63, RFC 7983), checks the peer's
// certificate against the a=fingerprint of its SDP, and keys the leg's
// SRTP from the handshake (EXTRACTOR-dtls_srtp). Each Manager (node) has
// one self-signed certificate. The relay does not offer DTLS itself:
// toward the other leg it offers SDES or plain RTP as the policy says.

// dtlsHandshakeTimeout bounds a handshake; then the leg stays keyless
// and its packets are dropped.
const dtlsHandshakeTimeout = 20 * time.Second

// dtlsIdentity is a Manager's certificate and its SDP fingerprint.
type dtlsIdentity struct {
	cert        tls.Certificate
	fingerprint string // "sha-256 AB:CD:..."
}

func (m *Manager) dtlsIdentity() (*dtlsIdentity, error) {
	m.dtlsOnce.Do(func() {
		cert, err := selfsign.GenerateSelfSigned()
		if err != nil {
			m.dtlsErr = fmt.Errorf("media: dtls certificate: %w", err)
			return
		}
		sum := sha256.Sum256(cert.Certificate[0])
		m.dtlsID = &dtlsIdentity{cert: cert, fingerprint: "sha-256 " + colonHex(sum[:])}
	})
	return m.dtlsID, m.dtlsErr
}

func colonHex(b []byte) string {
	h := strings.ToUpper(hex.EncodeToString(b))
	var sb strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(h[i : i+2])
	}
	return sb.String()
}

// fingerprint is a peer's a=fingerprint (only sha-256 is accepted).
type fingerprint struct {
	sum []byte
}

func parseFingerprint(v string) (fingerprint, bool) {
	f := strings.Fields(v)
	if len(f) != 2 || !strings.EqualFold(f[0], "sha-256") {
		return fingerprint{}, false
	}
	b, err := hex.DecodeString(strings.ReplaceAll(f[1], ":", ""))
	if err != nil || len(b) != sha256.Size {
		return fingerprint{}, false
	}
	return fingerprint{sum: b}, true
}

// isDTLS reports whether a datagram is a DTLS record (RFC 7983).
func isDTLS(p []byte) bool { return len(p) > 0 && p[0] >= 20 && p[0] <= 63 }

// dtlsLeg is a leg's DTLS endpoint: a net.PacketConn for pion/dtls fed
// by the packet path (DTLS records from the leg's peer) and writing out
// of the leg's RTP socket.
type dtlsLeg struct {
	l      *leg
	fp     fingerprint
	client bool
	in     chan []byte
	done   chan struct{}
	once   sync.Once
	rdl    atomic.Int64 // read deadline, unix ns; 0: none
	dst    atomic.Pointer[netip.AddrPort]
	os     osScratch
	mu     sync.Mutex // guards os (writes come from pion's goroutines)
	conn   *dtls.Conn
	connMu sync.Mutex
	// abort ends the handshake at once when the peer's certificate is
	// wrong (pion's server otherwise waits for its context).
	abort atomic.Pointer[context.CancelFunc]
}

var _ net.PacketConn = (*dtlsLeg)(nil)

type dtlsAddr struct{ a netip.AddrPort }

func (d dtlsAddr) Network() string { return "udp" }
func (d dtlsAddr) String() string  { return d.a.String() }

// feed hands a DTLS record from src to the handshake. It never blocks
// the packet path: a full queue drops the record (DTLS retransmits).
// Called with the session's ioMu held.
func (d *dtlsLeg) feed(p []byte, src netip.AddrPort) {
	if peer := d.l.rtpPeer.Load(); peer != nil && *peer != src {
		return // DTLS only from the address of the leg's SDP
	}
	d.dst.Store(&src)
	select {
	case d.in <- append([]byte(nil), p...):
	default:
	}
}

func (d *dtlsLeg) ReadFrom(b []byte) (int, net.Addr, error) {
	var timer <-chan time.Time
	if dl := d.rdl.Load(); dl != 0 {
		wait := time.Until(time.Unix(0, dl))
		if wait <= 0 {
			return 0, nil, timeoutError{}
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	select {
	case p := <-d.in:
		n := copy(b, p)
		return n, d.remote(), nil
	case <-d.done:
		return 0, nil, net.ErrClosed
	case <-timer:
		return 0, nil, timeoutError{}
	}
}

func (d *dtlsLeg) remote() net.Addr {
	if a := d.dst.Load(); a != nil {
		return dtlsAddr{*a}
	}
	if a := d.l.rtpPeer.Load(); a != nil {
		return dtlsAddr{*a}
	}
	return dtlsAddr{}
}

func (d *dtlsLeg) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-d.done:
		return 0, net.ErrClosed
	default:
	}
	to := d.dst.Load()
	if to == nil {
		to = d.l.rtpPeer.Load()
	}
	if to == nil {
		return 0, errors.New("media: dtls: no peer address yet")
	}
	d.mu.Lock()
	err := d.l.p.rtp.sendTo(b, *to, &d.os)
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

func (d *dtlsLeg) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}

func (d *dtlsLeg) LocalAddr() net.Addr { return dtlsAddr{d.l.p.rtpAddr} }
func (d *dtlsLeg) SetDeadline(t time.Time) error {
	return d.SetReadDeadline(t)
}
func (d *dtlsLeg) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		d.rdl.Store(0)
	} else {
		d.rdl.Store(t.UnixNano())
	}
	return nil
}
func (d *dtlsLeg) SetWriteDeadline(time.Time) error { return nil }

type timeoutError struct{}

func (timeoutError) Error() string   { return "media: dtls: read timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// verify checks the peer's certificate against its SDP fingerprint.
func (d *dtlsLeg) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("media: dtls: the peer sent no certificate")
	}
	sum := sha256.Sum256(raw[0])
	if subtle.ConstantTimeCompare(sum[:], d.fp.sum) != 1 {
		if c := d.abort.Load(); c != nil {
			defer (*c)()
		}
		// pion's server would otherwise wait for its context after the
		// alert: end the association once the alert has had time to leave
		time.AfterFunc(200*time.Millisecond, func() { d.Close() })
		return errors.New("media: dtls: the peer's certificate does not match its a=fingerprint")
	}
	return nil
}

var dtlsProfiles = map[dtls.SRTPProtectionProfile]*cryptoSuite{
	dtls.SRTP_AEAD_AES_128_GCM:       suites[1],
	dtls.SRTP_AES128_CM_HMAC_SHA1_80: suites[0],
	dtls.SRTP_AES128_CM_HMAC_SHA1_32: suites[2],
}

// startDTLS makes l a DTLS-SRTP leg toward a peer with fingerprint fp;
// client: the relay is the DTLS client (the peer said a=setup:passive).
// The handshake runs in its own goroutine; the leg's SRTP is keyed when
// it completes. Until then the leg's media is dropped.
func (s *Session) startDTLS(l *leg, fp fingerprint, client bool) error {
	if cur := l.dtls.Load(); cur != nil && string(cur.fp.sum) == string(fp.sum) && cur.client == client {
		return nil // a re-INVITE with the same fingerprint: the association goes on
	}
	id, err := s.m.dtlsIdentity()
	if err != nil {
		return err
	}
	d := &dtlsLeg{l: l, fp: fp, client: client, in: make(chan []byte, 32), done: make(chan struct{})}
	if old := l.dtls.Swap(d); old != nil {
		old.stop()
	}
	l.srtp.Store(nil)
	cfg := &dtls.Config{
		Certificates:           []tls.Certificate{id.cert},
		SRTPProtectionProfiles: []dtls.SRTPProtectionProfile{dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.SRTP_AES128_CM_HMAC_SHA1_32},
		ClientAuth:             dtls.RequireAnyClientCert,
		InsecureSkipVerify:     true, // self-signed: checked against the SDP fingerprint instead
		VerifyPeerCertificate:  d.verify,
		ExtendedMasterSecret:   dtls.RequireExtendedMasterSecret,
	}
	go s.handshake(d, cfg)
	return nil
}

func (s *Session) handshake(d *dtlsLeg, cfg *dtls.Config) {
	ctx, cancel := context.WithTimeout(context.Background(), dtlsHandshakeTimeout)
	defer cancel()
	d.abort.Store(&cancel)
	go func() {
		select {
		case <-d.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var conn *dtls.Conn
	var err error
	if d.client {
		conn, err = dtls.Client(d, d.remote(), cfg)
	} else {
		conn, err = dtls.Server(d, d.remote(), cfg)
	}
	if err == nil {
		d.connMu.Lock()
		d.conn = conn
		d.connMu.Unlock()
		err = conn.HandshakeContext(ctx)
	}
	if err == nil {
		err = s.keyFromDTLS(d, conn)
	}
	if err != nil {
		s.m.srtpMet.dtlsFailed.Inc()
		s.m.log.Info("media: dtls-srtp handshake failed", "call_id", s.callID, "leg", d.l.name, "err", err)
		d.stop()
	}
}

// keyFromDTLS installs the leg's SRTP keys from a finished handshake.
func (s *Session) keyFromDTLS(d *dtlsLeg, conn *dtls.Conn) error {
	prof, ok := conn.SelectedSRTPProtectionProfile()
	suite := dtlsProfiles[prof]
	if !ok || suite == nil {
		return errors.New("media: dtls: no SRTP protection profile agreed")
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return errors.New("media: dtls: no connection state")
	}
	c := srtp.Config{Profile: suite.profile}
	if err := c.ExtractSessionKeysFromDTLS(&state, d.client); err != nil {
		return fmt.Errorf("media: dtls: keys: %w", err)
	}
	rx := append(append([]byte{}, c.Keys.RemoteMasterKey...), c.Keys.RemoteMasterSalt...)
	tx := append(append([]byte{}, c.Keys.LocalMasterKey...), c.Keys.LocalMasterSalt...)
	st, err := newSRTPLeg(suite, rx, tx)
	if err != nil {
		return err
	}
	if d.l.dtls.Load() != d {
		return nil // replaced meanwhile
	}
	d.l.srtp.Store(st)
	s.m.srtpMet.Legs.WithLabelValues(suite.name).Inc()
	return nil
}

func (d *dtlsLeg) stop() {
	d.Close()
	d.connMu.Lock()
	c := d.conn
	d.connMu.Unlock()
	if c != nil {
		go c.Close() // may write a close_notify: not under the caller's locks
	}
}

// closeDTLS ends the session's DTLS associations (Session.Close).
func (s *Session) closeDTLS() {
	for _, l := range []*leg{s.caller, s.agent} {
		if d := l.dtls.Swap(nil); d != nil {
			d.stop()
		}
	}
}
