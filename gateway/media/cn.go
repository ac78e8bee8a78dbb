package media

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Comfort noise (issue 18): while the agent sends nothing for more than
// fillAfter after the answer, the relay sends the caller a packet every
// 20 ms so that carriers' no-RTP timers and NAT bindings stay satisfied:
// RFC 3389 comfort noise when the caller's SDP offered CN (PT 13), else
// silence in G.711 (PCMU or PCMA, whichever the agent last used or the
// caller offered). Codecs without a trivially silent frame get nothing.
// The packets continue the stream going out to the caller (its SSRC,
// sequence numbers, a timestamp following the clock), and the agent's
// packets are renumbered after them when it resumes (dtmf.go txRTP).
//
// One goroutine per manager paces every session's filler.

const (
	fillAfter   = time.Second
	fillEvery   = 20 * time.Millisecond
	cnNoiseDBov = 70 // RFC 3389 noise level, -dBov (quiet)
)

type fillMetrics struct {
	packets *prometheus.CounterVec // callgate_media_filler_packets_total{kind}
}

func newFillMetrics(reg prometheus.Registerer) *fillMetrics {
	m := &fillMetrics{packets: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "callgate_media_filler_packets_total",
		Help: "Packets the relay generated toward the caller while the agent sent nothing: RFC 3389 comfort noise (cn), G.711 silence (silence), ringback tone before the answer (ringback).",
	}, []string{"kind"})}
	m.packets.WithLabelValues("cn")
	m.packets.WithLabelValues("ringback")
	m.packets.WithLabelValues("silence")
	if reg != nil {
		reg.MustRegister(m.packets)
	}
	return m
}

// fillState is a session's filler setting.
type fillState struct {
	on  atomic.Bool
	buf [12 + 160]byte // Session.ioMu
}

// SetComfortNoise turns the filler toward the caller on or off.
func (s *Session) SetComfortNoise(on bool) { s.fill.on.Store(on) }

// runFill paces the fillers of every session until the manager closes.
func (m *Manager) runFill() {
	defer m.wg.Done()
	t := time.NewTicker(fillEvery)
	defer t.Stop()
	var list []*Session
	var os osScratch
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
		}
		list = list[:0]
		m.mu.Lock()
		for s := range m.sessions {
			if s.fill.on.Load() || s.ring.on.Load() {
				list = append(list, s)
			}
		}
		m.mu.Unlock()
		for _, s := range list {
			if s.ring.on.Load() && s.ringCaller(&os) {
				continue // tone.go
			}
			if s.fill.on.Load() {
				s.fillCaller(&os)
			}
		}
		clear(list)
	}
}

// fillerPT picks what to send the caller: CN (13), PCMU (0), PCMA (8),
// or -1 for nothing.
func (s *Session) fillerPT(lastPT int) int {
	s.sdpMu.Lock()
	info := s.callerSDP
	s.sdpMu.Unlock()
	if info == nil {
		return -1
	}
	for _, f := range info.fmts {
		if f == 13 {
			return 13
		}
	}
	if lastPT == 0 || lastPT == 8 {
		return lastPT
	}
	for _, f := range info.fmts {
		if f == 0 || f == 8 {
			return int(f)
		}
	}
	return -1
}

// fillCaller sends one filler packet toward the caller when the agent has
// been silent for fillAfter after the answer.
func (s *Session) fillCaller(os *osScratch) {
	ans := s.answeredAt.Load()
	if ans == 0 || s.closing.Load() {
		return
	}
	now := s.now()
	last := max(ans, s.agent.lastRx.Load())
	if now-last < int64(fillAfter) {
		return
	}
	l := s.caller
	dst := l.rtpPeer.Load()
	if dst == nil {
		return
	}
	s.dtmf.mu.Lock()
	busy := s.dtmf.running[0] // digits are being played to the caller: no filler in between
	s.dtmf.mu.Unlock()
	if busy {
		return
	}
	s.ioMu.Lock()
	lastPT := l.tx.pt
	s.ioMu.Unlock()
	pt := s.fillerPT(lastPT) // sdpMu: taken before ioMu, never inside it
	if pt < 0 {
		return
	}
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	if s.ioClosed {
		return
	}
	t := &l.tx
	if !t.have {
		t.have, t.ssrc, t.seq, t.ts, t.at = true, rand.Uint32()|1, uint16(rand.Uint32()), rand.Uint32(), now
		t.seq--
	}
	t.seq++
	t.seqAdd++
	t.ts += uint32((now - t.at) / 125000) // 8 kHz since the last packet out
	t.at = now
	b := s.fill.buf[:]
	b[0], b[1] = 0x80, byte(pt)
	putHeader(b, t.seq, t.ts, t.ssrc)
	n, kind := 12+160, "silence"
	switch pt {
	case 13:
		b[12], n, kind = cnNoiseDBov, 13, "cn"
	case 0:
		for i := 12; i < n; i++ {
			b[i] = 0xff // μ-law zero
		}
	case 8:
		for i := 12; i < n; i++ {
			b[i] = 0xd5 // A-law zero
		}
	}
	if l.sendOwn(b[:n], *dst, os) == nil {
		s.m.fillMet.packets.WithLabelValues(kind).Inc()
	}
}

// parseFormats reads an m= line's payload types (RTP/AVP formats).
func parseFormats(fs []string) []uint8 {
	out := make([]uint8, 0, len(fs))
	for _, f := range fs {
		if v, err := strconv.Atoi(f); err == nil && v >= 0 && v < 128 {
			out = append(out, uint8(v))
		}
	}
	return out
}

// putHeader writes an RTP header's sequence number, timestamp and SSRC.
func putHeader(b []byte, seq uint16, ts, ssrc uint32) {
	binary.BigEndian.PutUint16(b[2:4], seq)
	binary.BigEndian.PutUint32(b[4:8], ts)
	binary.BigEndian.PutUint32(b[8:12], ssrc)
}
