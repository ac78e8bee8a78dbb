package media

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
)

// maxPacket is the largest datagram relayed whole; larger ones are
// truncated by the socket read.
const maxPacket = 2048

// Session is one relayed call: a caller-facing leg (the carrier's side)
// and an agent-facing leg, each with an RTP/RTCP port pair.
type Session struct {
	m         *Manager
	callID    string
	region    string
	onTimeout func()
	t0        time.Time // monotonic reference of every timestamp below
	caller    *leg
	agent     *leg

	ioMu     sync.Mutex // held while a packet of this session is handled
	ioClosed bool
	ownEnc   [maxPacket + 64]byte // generated packets encrypted for an SRTP leg (srtp.go sendOwn); ioMu

	sdpMu     sync.Mutex
	callerSDP *sdpInfo // from the offer
	agentSDP  *sdpInfo // from the answer

	sec *secState // SRTP policy and offer/answer state (srtp.go), under sdpMu; nil: SRTP left alone

	answeredAt atomic.Int64 // ns since t0; 0 = no answer yet
	timedOut   atomic.Bool
	closing    atomic.Bool
	closeOnce  sync.Once
	final      *CallStats

	dtmf    dtmfState    // RFC 4733 decoding and sending (dtmf.go)
	timeout atomic.Int64 // ns; 0: the manager's media_timeout (liveness.go)
	fill    fillState    // comfort noise toward the caller (cn.go)
	ring    ringState    // ringback tone before the answer (tone.go)

	metMu    sync.Mutex
	pushed   [2][2]uint64 // [leg][packets, bytes] already added to counters
	closedAt time.Duration
}

// leg is one side of the relay: the sockets that side's endpoint sends
// to, and where packets going to that endpoint are sent.
type leg struct {
	name  string
	s     *Session
	p     *pair
	other *leg

	rtpPeer  atomic.Pointer[netip.AddrPort] // destination of packets going out this leg
	rtcpPeer atomic.Pointer[netip.AddrPort]
	clock    atomic.Pointer[[128]uint32] // PT -> clock rate of packets arriving on this leg
	lastRx   atomic.Int64                // ns since t0 of the last accepted packet
	srtp     atomic.Pointer[srtpLeg]     // SRTP terminated on this leg (srtp.go); nil: packets as they come
	dtls     atomic.Pointer[dtlsLeg]     // DTLS-SRTP with this leg's peer (dtls.go)

	rttObs prometheus.Observer

	rx dtmfRx  // telephone-events arriving (dtmf.go); Session.ioMu
	tx txState // RTP stream going out of this leg (dtmf.go); Session.ioMu

	mu sync.Mutex // guards the fields below
	// latching
	sdpRTP      netip.AddrPort
	firstAt     int64 // first packet on the RTP socket, ns since t0 (0: none)
	established bool  // source fixed
	confirm     int   // consecutive packets from the current peer
	cand        netip.AddrPort
	candN       int
	latched     bool
	rtcpFixed   bool
	st          legStats
	// SRs forwarded out of this leg (towards this leg's endpoint): the
	// middle 32 bits of their NTP time and when they went out.
	sentSR  [8]srRecord
	sentSRi int
}

type srRecord struct {
	mid uint32
	at  int64
}

// scratch is per reader goroutine, reused for every packet.
type scratch struct {
	os   osScratch
	hdr  rtp.Header
	rh   rtcp.Header
	sr   rtcp.SenderReport
	rr   rtcp.ReceiverReport
	srs  [4]uint32
	nsrs int
	sec  srtpScratch
}

func newSession(m *Manager, callID, region string, onTimeout func(), a, b *pair) *Session {
	s := &Session{m: m, callID: callID, region: region, onTimeout: onTimeout, t0: time.Now()}
	s.caller = &leg{name: legCaller, s: s, p: a}
	s.agent = &leg{name: legAgent, s: s, p: b}
	s.caller.other, s.agent.other = s.agent, s.caller
	for _, l := range []*leg{s.caller, s.agent} {
		l.p.rtp.leg, l.p.rtcp.leg = l, l
		st := staticClock
		l.clock.Store(&st)
		l.rttObs = m.met.RTT.WithLabelValues(region, l.name)
	}
	return s
}

func (s *Session) socks() [4]*sock {
	return [4]*sock{s.caller.p.rtp, s.caller.p.rtcp, s.agent.p.rtp, s.agent.p.rtcp}
}

// CallID returns the call id given to NewSession.
func (s *Session) CallID() string { return s.callID }

// CallerAddr is the caller-facing RTP address of callgate (what the
// caller is told in the answer); AgentAddr the agent-facing one (what
// the agent is told in the offer). Both are the bound addresses.
func (s *Session) CallerAddr() netip.AddrPort { return s.caller.p.rtpAddr }

// AgentAddr: see CallerAddr.
func (s *Session) AgentAddr() netip.AddrPort { return s.agent.p.rtpAddr }

func (s *Session) now() int64 { return int64(time.Since(s.t0)) + 1 }

// RewriteOffer rewrites the caller's SDP offer for the agent: c=, o=,
// the audio m= port and a=rtcp point at the agent-facing leg, ICE
// attributes are dropped, other active streams are disabled. The
// caller's media address is remembered as the caller leg's destination.
// Malformed SDP gives an error wrapping ErrBadSDP (SIPStatus 400).
func (s *Session) RewriteOffer(body []byte) ([]byte, error) {
	return s.rewrite(body, s.caller, s.agent)
}

// RewriteAnswer rewrites the agent's SDP answer for the caller, pointing
// it at the caller-facing leg, and remembers the agent's media address.
func (s *Session) RewriteAnswer(body []byte) ([]byte, error) {
	out, err := s.rewrite(body, s.agent, s.caller)
	if err == nil {
		s.answeredAt.CompareAndSwap(0, s.now())
	}
	return out, err
}

// rewrite: from is the leg whose endpoint wrote the SDP, to the leg the
// SDP is going out on (its local ports go into the SDP).
func (s *Session) rewrite(body []byte, from, to *leg) ([]byte, error) {
	if s.closing.Load() {
		return nil, ErrSessionClosed
	}
	out, info, err := rewriteSDP(body, s.m.advFor(to.p), to.p.rtpAddr.Port(), to.p.rtcpAddr.Port())
	if err != nil {
		return nil, err
	}
	if out, err = s.secureSDP(body, out, from, to); err != nil { // srtp.go
		return nil, err
	}
	s.sdpMu.Lock()
	if from == s.caller {
		s.callerSDP = info
	} else {
		s.agentSDP = info
	}
	// Packets arriving on the caller leg use the PT numbers of the agent's
	// SDP, and the other way round.
	s.caller.clock.Store(clockTable(s.agentSDP, s.callerSDP))
	s.agent.clock.Store(clockTable(s.callerSDP, s.agentSDP))
	s.sdpMu.Unlock()
	from.setSDP(info)
	return out, nil
}

// setSDP points the leg at the address in its endpoint's SDP. A changed
// address (re-INVITE) restarts latching; the same address keeps it.
func (l *leg) setSDP(info *sdpInfo) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.firstAt != 0 && info.rtp == l.sdpRTP && l.rtpPeer.Load() != nil {
		return
	}
	l.sdpRTP = info.rtp
	l.p.rtp.disconnect()
	l.p.rtcp.disconnect()
	if info.rtp.IsValid() {
		r := info.rtp
		l.rtpPeer.Store(&r)
		// With rtcp-mux agreed by both sides RTCP arrives and leaves on
		// the RTP ports, so this address is not used.
		c := info.rtcp
		if !c.IsValid() {
			c = netip.AddrPortFrom(r.Addr(), r.Port()+1)
		}
		l.rtcpPeer.Store(&c)
	} else {
		l.rtpPeer.Store(nil)
		l.rtcpPeer.Store(nil)
	}
	l.firstAt, l.established, l.confirm, l.candN, l.latched, l.rtcpFixed = 0, false, 0, 0, false, false
	l.cand = netip.AddrPort{}
}

// isRTCP reports whether a packet on an RTP port is RTCP (RFC 5761 4).
func isRTCP(p []byte) bool { return len(p) >= 2 && p[1] >= 192 && p[1] <= 223 }

// packet handles one datagram from src on this leg's RTP or RTCP socket:
// accept or ignore the source, account it, forward it unchanged out of
// the other leg. It does not allocate.
func (l *leg) packet(p []byte, src netip.AddrPort, rtcpSock bool, sc *scratch) {
	m := l.s.m
	now := l.s.now()
	ctl := rtcpSock || isRTCP(p)
	sc.nsrs = 0
	if l.srtp.Load() != nil || l.dtls.Load() != nil { // SRTP terminated here: plaintext from now on (srtp.go)
		var ok bool
		if p, ok = l.secureIn(p, src, ctl, sc); !ok {
			return
		}
	}
	rtpOK := false

	l.mu.Lock()
	var ok bool
	if rtcpSock {
		ok = l.acceptRTCP(src)
	} else {
		ok = l.acceptRTP(src, now)
	}
	if !ok {
		l.st.foreign++
		l.mu.Unlock()
		m.dropForeign.Inc()
		return
	}
	l.st.packets++
	l.st.bytes += uint64(len(p))
	if ctl {
		l.st.rtcpPkts++
		l.rtcp(p, now, sc)
	} else if l.parseRTP(p, sc) {
		clock := l.clock.Load()[sc.hdr.PayloadType&0x7f]
		l.st.rtp(sc.hdr.SSRC, sc.hdr.SequenceNumber, sc.hdr.Timestamp, clock, now)
		if clock&clockEvent != 0 {
			l.dtmfPacket(p, sc) // dtmf.go
		}
		rtpOK = true
	} else {
		l.st.malformed++
	}
	l.mu.Unlock()
	l.lastRx.Store(now)

	out := l.other
	var dst *netip.AddrPort
	var conn *sock
	if rtcpSock {
		dst, conn = out.rtcpPeer.Load(), out.p.rtcp
	} else {
		dst, conn = out.rtpPeer.Load(), out.p.rtp
	}
	if dst == nil {
		l.mu.Lock()
		l.st.noDest++
		l.mu.Unlock()
		m.dropNoDest.Inc()
		return
	}
	if rtpOK {
		out.txRTP(p, sc, now) // dtmf.go: renumbered after injected events
	}
	if out.srtp.Load() != nil || out.dtls.Load() != nil {
		var ok bool
		if p, ok = out.secureOut(p, ctl, sc); !ok {
			m.dropSend.Inc()
			return
		}
	}
	if err := conn.sendTo(p, *dst, &sc.os); err != nil {
		m.dropSend.Inc()
		return
	}
	if sc.nsrs > 0 {
		out.mu.Lock()
		for _, mid := range sc.srs[:sc.nsrs] {
			out.sentSR[out.sentSRi] = srRecord{mid: mid, at: now}
			out.sentSRi = (out.sentSRi + 1) % len(out.sentSR)
		}
		out.mu.Unlock()
	}
}

func (l *leg) parseRTP(p []byte, sc *scratch) bool {
	if len(p) < 12 || p[0]>>6 != 2 {
		return false
	}
	_, err := sc.hdr.Unmarshal(p)
	return err == nil
}

// acceptRTP decides whether src may send on this leg's RTP port. Called
// with l.mu held.
func (l *leg) acceptRTP(src netip.AddrPort, now int64) bool {
	if l.firstAt == 0 {
		l.firstAt = now
	}
	if peer := l.rtpPeer.Load(); peer != nil && *peer == src {
		if !l.established {
			l.candN = 0
			l.confirm++
			if l.confirm >= l.s.m.cfg.LatchPackets {
				l.established = true
				l.p.rtp.connect(src)
			}
		}
		return true
	}
	if l.established {
		return false
	}
	if now-l.firstAt > int64(l.s.m.cfg.LatchWindow) {
		l.established = true // too late to move: the source is fixed
		return false
	}
	if src == l.cand {
		l.candN++
	} else {
		l.cand, l.candN = src, 1
	}
	l.confirm = 0
	if l.candN < l.s.m.cfg.LatchPackets {
		return false
	}
	// Latch: N consecutive packets from one new source, early in the call.
	r := src
	l.rtpPeer.Store(&r)
	if !l.rtcpFixed {
		c := netip.AddrPortFrom(src.Addr(), src.Port()+1)
		l.rtcpPeer.Store(&c)
	}
	l.established, l.latched = true, true
	l.p.rtp.connect(src)
	l.s.m.met.Latches.Inc()
	return true
}

// acceptRTCP decides whether src may send on this leg's RTCP port: the
// expected address, or (once) any port of the RTP source's IP. Called
// with l.mu held.
func (l *leg) acceptRTCP(src netip.AddrPort) bool {
	if peer := l.rtcpPeer.Load(); peer != nil && *peer == src {
		if !l.rtcpFixed {
			l.rtcpFixed = true
			l.p.rtcp.connect(src)
		}
		return true
	}
	if l.rtcpFixed {
		return false
	}
	if rp := l.rtpPeer.Load(); rp != nil && rp.Addr() == src.Addr() {
		r := src
		l.rtcpPeer.Store(&r)
		l.rtcpFixed = true
		l.p.rtcp.connect(src)
		return true
	}
	return false
}

// rtcp walks a compound RTCP packet from this leg's endpoint: report
// blocks give this leg's RTT (LSR/DLSR against SRs we forwarded to the
// endpoint) and the endpoint's view of what it receives; SRs are noted
// in sc so that the caller can record them on the other leg once it has
// forwarded them. Called with l.mu held.
func (l *leg) rtcp(b []byte, now int64, sc *scratch) {
	for len(b) >= 4 {
		if err := sc.rh.Unmarshal(b); err != nil {
			return
		}
		n := (int(sc.rh.Length) + 1) * 4
		if n > len(b) {
			return
		}
		pkt := b[:n]
		b = b[n:]
		switch sc.rh.Type {
		case rtcp.TypeSenderReport:
			sc.sr.Reports = sc.sr.Reports[:0]
			if sc.sr.Unmarshal(pkt) != nil {
				continue
			}
			if sc.nsrs < len(sc.srs) {
				sc.srs[sc.nsrs] = uint32(sc.sr.NTPTime >> 16)
				sc.nsrs++
			}
			l.reports(sc.sr.Reports, now)
		case rtcp.TypeReceiverReport:
			sc.rr.Reports = sc.rr.Reports[:0]
			if sc.rr.Unmarshal(pkt) != nil {
				continue
			}
			l.reports(sc.rr.Reports, now)
		}
	}
}

func (l *leg) reports(rs []rtcp.ReceptionReport, now int64) {
	for i := range rs {
		r := &rs[i]
		l.st.repHave = true
		l.st.repFraction = r.FractionLost
		l.st.repLost = r.TotalLost
		l.st.repJitter = r.Jitter
		if r.LastSenderReport == 0 {
			continue
		}
		for _, sr := range l.sentSR {
			if sr.at != 0 && sr.mid == r.LastSenderReport {
				rtt := time.Duration(now-sr.at) - time.Duration(uint64(r.Delay)*uint64(time.Second)/65536)
				if rtt < 0 {
					rtt = 0
				}
				if rtt < 60*time.Second {
					l.st.rtt(rtt.Seconds())
					l.rttObs.Observe(rtt.Seconds())
				}
				break
			}
		}
	}
}

// Stats returns the figures so far.
func (s *Session) Stats() *CallStats {
	cs := &CallStats{CallID: s.callID, Region: s.region, TimedOut: s.timedOut.Load()}
	var cClock, aClock uint32
	var cRep, aRep uint32
	s.caller.mu.Lock()
	cs.Caller = s.caller.st.snapshot()
	cs.Caller.Latched = s.caller.latched
	cRep = s.caller.st.repJitter
	s.caller.mu.Unlock()
	s.agent.mu.Lock()
	cs.Agent = s.agent.st.snapshot()
	cs.Agent.Latched = s.agent.latched
	aRep = s.agent.st.repJitter
	s.agent.mu.Unlock()
	cClock, aClock = cs.Caller.ClockRate, cs.Agent.ClockRate
	// An endpoint reports jitter of the stream it receives, in that
	// stream's clock: the caller receives the agent's media.
	if cs.Caller.ReportedLoss > 0 || cRep > 0 {
		cs.Caller.ReportedJitter = ms(cRep, aClock)
	}
	if cs.Agent.ReportedLoss > 0 || aRep > 0 {
		cs.Agent.ReportedJitter = ms(aRep, cClock)
	}
	d := time.Since(s.t0)
	if s.closing.Load() && s.closedAt > 0 {
		d = s.closedAt
	}
	cs.DurationSeconds = d.Seconds()
	s.secStats(cs)
	return cs
}

func ms(units, clock uint32) float64 {
	if clock == 0 {
		clock = 8000
	}
	return float64(units) / float64(clock) * 1000
}

// Close stops relaying, releases the ports and returns the final
// *CallStats (as any, so that the signalling side needs no import of
// this package). It is idempotent: every call returns the same figures.
func (s *Session) Close() any {
	s.closeOnce.Do(func() {
		s.closedAt = time.Since(s.t0)
		s.closing.Store(true)
		s.closeDTLS()
		s.closeDTMF()
		s.ioMu.Lock()
		s.ioClosed = true
		s.m.engine.remove(s)
		s.ioMu.Unlock()
		for _, l := range []*leg{s.caller, s.agent} {
			s.m.ports.put(l.p.port)
		}
		s.m.remove(s)
		s.pushCounters()
		st := s.Stats()
		s.final = st
		met := s.m.met
		for _, x := range []struct {
			name string
			ls   *LegStats
		}{{legCaller, &st.Caller}, {legAgent, &st.Agent}} {
			if x.ls.Expected > 0 {
				met.Loss.WithLabelValues(s.region, x.name).Observe(x.ls.LossRatio)
				met.Jitter.WithLabelValues(s.region, x.name).Observe(x.ls.JitterMeanMs / 1000)
			}
		}
		s.m.log.Debug("media: session closed", "call_id", s.callID,
			"duration_s", st.DurationSeconds, "timed_out", st.TimedOut,
			"caller_packets", st.Caller.Packets, "caller_loss", st.Caller.LossRatio, "caller_jitter_ms", st.Caller.JitterMeanMs,
			"agent_packets", st.Agent.Packets, "agent_loss", st.Agent.LossRatio, "agent_jitter_ms", st.Agent.JitterMeanMs)
	})
	return s.final
}

// pushCounters adds the packets and bytes accepted since the last push to
// the Prometheus counters.
func (s *Session) pushCounters() {
	s.metMu.Lock()
	defer s.metMu.Unlock()
	for i, l := range []*leg{s.caller, s.agent} {
		l.mu.Lock()
		p, b := l.st.packets, l.st.bytes
		l.mu.Unlock()
		if d := p - s.pushed[i][0]; d > 0 {
			s.m.legPackets[i].Add(float64(d))
		}
		if d := b - s.pushed[i][1]; d > 0 {
			s.m.legBytes[i].Add(float64(d))
		}
		s.pushed[i] = [2]uint64{p, b}
	}
}

// checkTimeout ends the session when, after the answer, nothing arrived
// from either side for timeout.
func (s *Session) checkTimeout(timeout time.Duration) {
	timeout = s.mediaTimeout(timeout) // the agent's own (liveness.go)
	ans := s.answeredAt.Load()
	if ans == 0 || s.closing.Load() {
		return
	}
	last := max(ans, s.caller.lastRx.Load(), s.agent.lastRx.Load())
	if s.now()-last <= int64(timeout) {
		return
	}
	if !s.timedOut.CompareAndSwap(false, true) {
		return
	}
	s.m.met.Timeouts.Inc()
	s.m.log.Info("media: timeout, ending call", "call_id", s.callID, "timeout", timeout)
	go func() {
		s.Close()
		if s.onTimeout != nil {
			s.onTimeout()
		}
	}()
}
