package media

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/replaydetector"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/routing"
)

// Secure media (issue 18): the relay terminates SRTP (SDES keys, RFC
// 4568) on each leg whose policy and signalling allow it and relays
// plain RTP, or SRTP under its own keys, on the other. Keys come from
// crypto/rand, one per leg and suite, and are never logged: they live in
// the SDP callgate sends over TLS and in the SRTP contexts.
//
// Offer/answer: SDP from one leg while an offer of the other leg is
// pending is the answer; anything else is an offer (initial INVITE,
// re-INVITE, UPDATE, a late offer in a 2xx). A repeated answer (183 then
// 200 with the same o= version) is treated as the answer again.

// ErrSRTPPolicy is wrapped by every refusal of a call for its secure
// media policy (errors.Is). Those errors have SIPStatus() 488 and a
// Reason() for the Warning header.
var ErrSRTPPolicy = errors.New("media: SRTP policy")

type srtpError struct{ reason string }

func (e *srtpError) Error() string        { return "media: srtp: " + e.reason }
func (e *srtpError) Unwrap() error        { return ErrSRTPPolicy }
func (e *srtpError) SIPStatus() int       { return 488 }
func (e *srtpError) Reason() string       { return e.reason }
func refuseSRTP(f string, a ...any) error { return &srtpError{reason: fmt.Sprintf(f, a...)} }

// replayWindow is the SRTP/SRTCP replay window (RFC 3711 3.3.2: 64 at least).
const replayWindow = 128

// srtpLeg is the packet path's view of an SRTP leg: rx decrypts what the
// leg's endpoint sends (its key), tx encrypts what goes to it (ours).
// The contexts are used only with the session's ioMu held.
type srtpLeg struct {
	suite    *cryptoSuite
	rxKey    []byte // identity of the contexts: kept across re-INVITEs with the same keys
	txKey    []byte
	rx, tx   *srtp.Context
	replayed bool // set by the replay detector of rx during one decrypt

	authFailures atomic.Uint64
	replays      atomic.Uint64
}

// countingDetector notes a replayed packet for the metrics. It keeps
// the sliding window's CheckAccepter path (no closure per packet).
type countingDetector struct {
	replaydetector.ReplayDetector
	acc replaydetector.CheckAccepter
	hit *bool
}

func newCountingDetector(d replaydetector.ReplayDetector, hit *bool) countingDetector {
	acc, _ := d.(replaydetector.CheckAccepter)
	return countingDetector{ReplayDetector: d, acc: acc, hit: hit}
}

func (d countingDetector) Check(seq uint64) (func() bool, bool) {
	accept, ok := d.ReplayDetector.Check(seq)
	if !ok {
		*d.hit = true
	}
	return accept, ok
}

// CheckSeq and Accept: replaydetector.CheckAccepter.
func (d countingDetector) CheckSeq(seq uint64) replaydetector.Token {
	tok := d.acc.CheckSeq(seq)
	if !tok.Passed() {
		*d.hit = true
	}
	return tok
}

func (d countingDetector) Accept(tok replaydetector.Token) bool { return d.acc.Accept(tok) }

func newSRTPLeg(suite *cryptoSuite, rxKey, txKey []byte) (*srtpLeg, error) {
	st := &srtpLeg{suite: suite, rxKey: rxKey, txKey: txKey}
	k := suite.keyLen
	rtpDet := func() replaydetector.ReplayDetector {
		return newCountingDetector(replaydetector.New(replayWindow, (1<<48)-1), &st.replayed)
	}
	rtcpDet := func() replaydetector.ReplayDetector {
		return newCountingDetector(replaydetector.New(replayWindow, (1<<31)-1), &st.replayed)
	}
	var err error
	st.rx, err = srtp.CreateContext(rxKey[:k], rxKey[k:], suite.profile,
		srtp.SRTPReplayDetectorFactory(rtpDet), srtp.SRTCPReplayDetectorFactory(rtcpDet))
	if err != nil {
		return nil, fmt.Errorf("media: srtp context: %w", err)
	}
	st.tx, err = srtp.CreateContext(txKey[:k], txKey[k:], suite.profile)
	if err != nil {
		return nil, fmt.Errorf("media: srtp context: %w", err)
	}
	return st, nil
}

// srtpScratch are a reader's buffers for decrypted and encrypted packets.
type srtpScratch struct {
	dec [maxPacket + 64]byte
	enc [maxPacket + 64]byte
	rh  rtcp.Header
}

// unprotect decrypts and authenticates a packet from this leg's
// endpoint. A packet that fails (wrong key, forged, replayed) is dropped
// and counted; it never moves the leg's source latch.
func (l *leg) unprotect(st *srtpLeg, p []byte, ctl bool, sc *scratch) ([]byte, bool) {
	st.replayed = false
	var out []byte
	var err error
	if ctl {
		out, err = st.rx.DecryptRTCP(sc.sec.dec[:0], p, &sc.sec.rh)
	} else {
		out, err = st.rx.DecryptRTP(sc.sec.dec[:0], p, &sc.hdr)
	}
	if err == nil {
		return out, true
	}
	i := l.index()
	if st.replayed {
		st.replays.Add(1)
		l.s.m.srtpMet.replays[i].Inc()
	} else {
		st.authFailures.Add(1)
		l.s.m.srtpMet.authFailures[i].Inc()
	}
	return nil, false
}

// secureIn is the packet path's entry on a secured leg: DTLS records go
// to the handshake, media is decrypted (dropped while a DTLS leg has no
// keys yet).
func (l *leg) secureIn(p []byte, src netip.AddrPort, ctl bool, sc *scratch) ([]byte, bool) {
	if d := l.dtls.Load(); d != nil && isDTLS(p) {
		d.feed(p, src)
		return nil, false
	}
	st := l.srtp.Load()
	if st == nil {
		return nil, false // DTLS handshake not finished: nothing is relayed in clear
	}
	return l.unprotect(st, p, ctl, sc)
}

// secureOut encrypts a packet going out to a secured leg (dropped while
// a DTLS leg has no keys yet).
func (l *leg) secureOut(p []byte, ctl bool, sc *scratch) ([]byte, bool) {
	st := l.srtp.Load()
	if st == nil {
		return nil, false
	}
	return l.protect(st, p, ctl, sc)
}

// sendOwn sends a packet callgate generated (injected DTMF, comfort
// noise, silence, ringback) to this leg's RTP peer, encrypted when the
// leg is secured; while a DTLS handshake has not finished nothing goes
// out in clear. Called with Session.ioMu held.
func (l *leg) sendOwn(b []byte, dst netip.AddrPort, os *osScratch) error {
	if l.srtp.Load() == nil && l.dtls.Load() == nil {
		return l.p.rtp.sendTo(b, dst, os)
	}
	st := l.srtp.Load()
	if st == nil {
		return errNotKeyed
	}
	out, err := st.tx.EncryptRTP(l.s.ownEnc[:0], b, nil)
	if err != nil {
		return err
	}
	return l.p.rtp.sendTo(out, dst, os)
}

// errNotKeyed: a DTLS-SRTP leg whose handshake has not finished.
var errNotKeyed = errors.New("media: SRTP keys not agreed yet")

// protect encrypts a packet going out to this leg's endpoint.
func (l *leg) protect(st *srtpLeg, p []byte, ctl bool, sc *scratch) ([]byte, bool) {
	var out []byte
	var err error
	if ctl {
		out, err = st.tx.EncryptRTCP(sc.sec.enc[:0], p, &sc.sec.rh)
	} else {
		out, err = st.tx.EncryptRTP(sc.sec.enc[:0], p, &sc.hdr)
	}
	return out, err == nil
}

func (l *leg) index() int {
	if l.name == legCaller {
		return 0
	}
	return 1
}

// srtpMetrics are the SRTP collectors of a Manager.
type srtpMetrics struct {
	AuthFailures *prometheus.CounterVec // callgate_media_srtp_auth_failures_total{leg}
	Replays      *prometheus.CounterVec // callgate_media_srtp_replays_total{leg}
	Legs         *prometheus.CounterVec // callgate_media_srtp_legs_total{suite}
	DTLSFailed   prometheus.Counter     // callgate_media_dtls_handshake_failures_total
	dtlsFailed   prometheus.Counter
	authFailures [2]prometheus.Counter
	replays      [2]prometheus.Counter
}

func newSRTPMetrics(reg prometheus.Registerer) *srtpMetrics {
	m := &srtpMetrics{
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_media_srtp_auth_failures_total",
			Help: "SRTP/SRTCP packets dropped because they failed authentication (wrong key, forged, truncated), by leg they arrived on.",
		}, []string{"leg"}),
		Replays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_media_srtp_replays_total",
			Help: "SRTP/SRTCP packets dropped as replays (RFC 3711 3.3.2), by leg they arrived on.",
		}, []string{"leg"}),
		Legs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callgate_media_srtp_legs_total",
			Help: "Call legs on which the relay terminated SRTP, by crypto suite.",
		}, []string{"suite"}),
	}
	m.DTLSFailed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "callgate_media_dtls_handshake_failures_total",
		Help: "DTLS-SRTP handshakes that failed or timed out (the peer's certificate not matching its a=fingerprint included).",
	})
	m.dtlsFailed = m.DTLSFailed
	for i, l := range []string{legCaller, legAgent} {
		m.authFailures[i] = m.AuthFailures.WithLabelValues(l)
		m.replays[i] = m.Replays.WithLabelValues(l)
	}
	for _, s := range suites {
		m.Legs.WithLabelValues(s.name)
	}
	if reg != nil {
		reg.MustRegister(m.AuthFailures, m.Replays, m.Legs, m.DTLSFailed)
	}
	return m
}

// secState is a session's offer/answer state for SRTP; guarded by sdpMu.
type secState struct {
	pol         routing.SRTPCall
	caller      secLeg
	agent       secLeg
	pending     *leg // the leg whose offer awaits an answer
	lastOfferer *leg
}

type secLeg struct {
	mode string // routing.SRTPOff, SRTPOptional, SRTPRequired
	tls  bool   // SDES keys may be sent to this leg's peer

	keys map[*cryptoSuite][]byte // ours toward this leg's endpoint, made once per suite

	// after this leg's offer
	pick   *cryptoAttr  // its crypto line the relay accepts (nil: the leg is plain or DTLS)
	dtlsFP *fingerprint // DTLS-SRTP accepted: the peer's fingerprint (dtls.go)
	setup  string       // the peer's a=setup
	protos []string     // its offer's m= proto
	// after the relay's offer to this leg
	offered   []cryptoAttr
	mandatory bool // RTP/SAVP offered: the answer must take a key

	haveVersion bool
	version     uint64 // o= version of its last SDP
}

func (sl *secLeg) key(s *cryptoSuite) ([]byte, error) {
	if k, ok := sl.keys[s]; ok {
		return k, nil
	}
	k, err := newKey(s)
	if err != nil {
		return nil, fmt.Errorf("media: srtp key: %w", err)
	}
	if sl.keys == nil {
		sl.keys = map[*cryptoSuite][]byte{}
	}
	sl.keys[s] = k
	return k, nil
}

// SetSRTP sets the call's secure media policy. Call it before the first
// RewriteOffer. Without it (or with a policy that is Off) the relay
// leaves SRTP alone: crypto lines and packets pass through untouched.
func (s *Session) SetSRTP(p routing.SRTPCall) {
	s.sdpMu.Lock()
	defer s.sdpMu.Unlock()
	s.sec = &secState{
		pol:    p,
		caller: secLeg{mode: p.Caller, tls: p.CallerTLS},
		agent:  secLeg{mode: p.Agent, tls: p.AgentTLS},
	}
}

func (x *secState) of(l *leg) *secLeg {
	if l.name == legCaller {
		return &x.caller
	}
	return &x.agent
}

// secureSDP applies the SRTP policy to SDP from leg from, already
// rewritten (out) for leg to. It returns the SDP to send.
func (s *Session) secureSDP(body, out []byte, from, to *leg) ([]byte, error) {
	s.sdpMu.Lock()
	defer s.sdpMu.Unlock()
	x := s.sec
	if x == nil || x.pol.Off() {
		return out, nil
	}
	sm, err := readSecure(body)
	if err != nil {
		return nil, err
	}
	fl := x.of(from)
	answer := x.pending == to ||
		(x.pending == nil && x.lastOfferer == to && fl.haveVersion && fl.version == sm.version)
	fl.haveVersion, fl.version = true, sm.version
	if answer {
		return s.secAnswer(x, sm, out, from, to)
	}
	return s.secOffer(x, sm, out, from, to)
}

// secOffer: from offers; decide what each leg speaks and offer to to.
func (s *Session) secOffer(x *secState, sm *secureMedia, out []byte, from, to *leg) ([]byte, error) {
	fl, tl := x.of(from), x.of(to)
	var pick *cryptoAttr
	var dtlsFP *fingerprint
	if fl.mode != routing.SRTPOff {
		switch {
		case fl.tls && len(sm.cryptos) > 0:
			c := sm.cryptos[0]
			pick = &c
		case sm.fp != nil: // DTLS-SRTP needs no secret in the SDP: any signalling
			dtlsFP = sm.fp
		}
	}
	on := pick != nil || dtlsFP != nil
	if !on && (sm.savp || sm.dtls || fl.mode == routing.SRTPRequired) {
		switch {
		case fl.mode == routing.SRTPOff:
			return nil, refuseSRTP("the %s offers only SRTP and srtp is off for it", from.name)
		case !fl.tls:
			return nil, refuseSRTP("SRTP with the %s needs TLS signalling (SDES keys are never sent in clear)", from.name)
		case sm.dtls && sm.fp == nil && len(sm.cryptos) == 0:
			return nil, refuseSRTP("the %s offers DTLS-SRTP without a sha-256 a=fingerprint", from.name)
		case len(sm.cryptos) == 0 && !sm.savp:
			return nil, refuseSRTP("srtp is required for the %s and its offer has no a=crypto", from.name)
		default:
			return nil, refuseSRTP("the %s offers no supported crypto suite (AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM)", from.name)
		}
	}
	mixed := x.pol.AllowMixed
	var offer, mandatory bool
	switch tl.mode {
	case routing.SRTPRequired:
		if !tl.tls {
			return nil, refuseSRTP("srtp is required for the %s but its signalling is not TLS", to.name)
		}
		offer, mandatory = true, true
		if !on && !mixed {
			return nil, refuseSRTP("SRTP toward the %s with RTP from the %s is a mixed call, not allowed by the workspace (media.allow_mixed_srtp)", to.name, from.name)
		}
	case routing.SRTPOptional:
		if tl.tls && (on || mixed) {
			offer, mandatory = true, on && !mixed
		}
	}
	if on && !offer && !mixed {
		return nil, refuseSRTP("SRTP from the %s with RTP toward the %s is a mixed call, not allowed by the workspace (media.allow_mixed_srtp)", from.name, to.name)
	}
	var cryptos []cryptoAttr
	if offer {
		for i, su := range suites {
			k, err := tl.key(su)
			if err != nil {
				return nil, err
			}
			cryptos = append(cryptos, cryptoAttr{tag: i + 1, suite: su, key: k})
		}
	}
	fl.pick, fl.protos, fl.dtlsFP, fl.setup = pick, sm.protos, dtlsFP, sm.setup
	tl.offered, tl.mandatory = cryptos, mandatory
	x.pending, x.lastOfferer = from, from
	return setSecure(out, protosFor(sm.protos, mandatory), cryptos)
}

// secAnswer: from answers the relay's offer; install both legs' keys
// and answer the offerer (to).
func (s *Session) secAnswer(x *secState, sm *secureMedia, out []byte, from, to *leg) ([]byte, error) {
	fl, tl := x.of(from), x.of(to)
	var got, ours *cryptoAttr
	for i := range sm.cryptos {
		for j := range fl.offered {
			if sm.cryptos[i].tag == fl.offered[j].tag && sm.cryptos[i].suite == fl.offered[j].suite {
				got, ours = &sm.cryptos[i], &fl.offered[j]
				break
			}
		}
		if got != nil {
			break
		}
	}
	if got == nil && (fl.mandatory || sm.savp) {
		return nil, refuseSRTP("the %s's answer accepts none of the relay's a=crypto lines", from.name)
	}
	on := tl.pick != nil || tl.dtlsFP != nil
	if on != (got != nil) && !x.pol.AllowMixed {
		return nil, refuseSRTP("a mixed SRTP/RTP call is not allowed by the workspace (media.allow_mixed_srtp)")
	}
	if err := s.installSRTP(from, got, ours); err != nil {
		return nil, err
	}
	var cryptos []cryptoAttr
	var extra []sdp.Attribute
	switch {
	case tl.dtlsFP != nil:
		id, err := s.m.dtlsIdentity()
		if err != nil {
			return nil, err
		}
		client := tl.setup == "passive" // the peer waits: the relay connects
		setup := "passive"
		if client {
			setup = "active"
		}
		if err := s.startDTLS(to, *tl.dtlsFP, client); err != nil {
			return nil, err
		}
		extra = []sdp.Attribute{{Key: "fingerprint", Value: id.fingerprint}, {Key: "setup", Value: setup}}
	case on:
		k, err := tl.key(tl.pick.suite)
		if err != nil {
			return nil, err
		}
		mine := cryptoAttr{tag: tl.pick.tag, suite: tl.pick.suite, key: k}
		cryptos = []cryptoAttr{mine}
		if err := s.installSRTP(to, tl.pick, &mine); err != nil {
			return nil, err
		}
	default:
		if err := s.installSRTP(to, nil, nil); err != nil {
			return nil, err
		}
	}
	x.pending = nil
	protos := protosFor(tl.protos, false)
	if on {
		protos = tl.protos
	}
	return setSecure(out, protos, cryptos, extra...)
}

// installSRTP makes l speak SRTP with the endpoint's key remote and ours
// local (both nil: plain RTP). Contexts are kept when the keys are the
// same (a re-INVITE), so that rollover and replay state go on.
func (s *Session) installSRTP(l *leg, remote, local *cryptoAttr) error {
	if d := l.dtls.Swap(nil); d != nil { // no longer DTLS-SRTP
		d.stop()
		l.srtp.Store(nil)
	}
	if remote == nil {
		l.srtp.Store(nil)
		return nil
	}
	if cur := l.srtp.Load(); cur != nil && cur.suite == remote.suite &&
		string(cur.rxKey) == string(remote.key) && string(cur.txKey) == string(local.key) {
		return nil
	}
	st, err := newSRTPLeg(remote.suite, remote.key, local.key)
	if err != nil {
		return err
	}
	if cur := l.srtp.Load(); cur != nil { // re-keyed: the call's figures go on
		st.authFailures.Store(cur.authFailures.Load())
		st.replays.Store(cur.replays.Load())
	}
	l.srtp.Store(st)
	s.m.srtpMet.Legs.WithLabelValues(remote.suite.name).Inc()
	return nil
}

// protosFor is the m= proto to send: secure (RTP/SAVP, RTP/SAVPF) when
// secure is set, else the plain profile of the offer's (RTP/AVP, RTP/AVPF).
func protosFor(offer []string, secure bool) []string {
	feedback := false
	for _, p := range offer {
		if strings.HasSuffix(strings.ToUpper(p), "AVPF") {
			feedback = true
		}
	}
	switch {
	case secure && feedback:
		return []string{"RTP", "SAVPF"}
	case secure:
		return protoSAVP
	case feedback:
		return []string{"RTP", "AVPF"}
	}
	return protoAVP
}

// secStats fills in the SRTP figures of each leg.
func (s *Session) secStats(cs *CallStats) {
	for _, x := range []struct {
		l  *leg
		ls *LegStats
	}{{s.caller, &cs.Caller}, {s.agent, &cs.Agent}} {
		if st := x.l.srtp.Load(); st != nil {
			x.ls.SRTP = st.suite.name
			x.ls.SRTPAuthFailures = st.authFailures.Load()
			x.ls.SRTPReplays = st.replays.Load()
		}
	}
}
