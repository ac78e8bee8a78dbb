package media

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"

	"github.com/callgate/callgate/devua"
)

// Ringback tone (issue 18, early_media "ringback_tone"): until the agent's
// media or answer arrives, the relay plays the caller a ringback tone in
// G.711 (the μ-law or A-law the caller offered): 440 + 480 Hz, 2 s on,
// 4 s off (the North American cadence), silence in between, a packet every
// 20 ms, paced by the manager's filler goroutine (cn.go).

const (
	ringPeriod    = 200 // samples: 440 and 480 Hz both repeat every 25 ms
	ringOnFrames  = 100 // 2 s of 20 ms frames
	ringAllFrames = 300 // 6 s cadence
)

// ringTables hold one period of the tone: [0] μ-law, [1] A-law.
var ringTables = func() (t [2][ringPeriod]byte) {
	const amp = 0.22 * 32767 // about -13 dBm0 per tone
	for i := 0; i < ringPeriod; i++ {
		x := amp * (math.Sin(2*math.Pi*440*float64(i)/8000) + math.Sin(2*math.Pi*480*float64(i)/8000))
		t[0][i] = devua.EncodeULaw(int16(x))
		t[1][i] = devua.EncodeALaw(int16(x))
	}
	return t
}()

// ErrNoG711 is returned by EarlyAnswer when the caller offered neither
// PCMU nor PCMA: no tone can be played.
var ErrNoG711 = errors.New("media: the caller offered no G.711 codec for a ringback tone")

type ringState struct {
	on    atomic.Bool
	pt    atomic.Int32
	frame int // Session.ioMu
}

// EarlyAnswer is an SDP answer to the caller's offer pointing at the
// caller-facing port, with the caller's first G.711 codec (and its
// telephone-event): the body of a 183 that lets the relay play a
// ringback tone before the agent answered.
func (s *Session) EarlyAnswer() ([]byte, error) {
	s.sdpMu.Lock()
	info := s.callerSDP
	s.sdpMu.Unlock()
	if info == nil {
		return nil, ErrNoG711
	}
	pt := -1
	for _, f := range info.fmts {
		if f == 0 || f == 8 {
			pt = int(f)
			break
		}
	}
	if pt < 0 {
		return nil, ErrNoG711
	}
	name := map[int]string{0: "PCMU", 8: "PCMA"}[pt]
	adv := s.m.advIP
	at := "IP4"
	if !adv.Is4() {
		at = "IP6"
	}
	fmts, attrs := fmt.Sprint(pt), fmt.Sprintf("a=rtpmap:%d %s/8000\r\n", pt, name)
	if te := s.eventPT(s.caller); te >= 0 {
		fmts += fmt.Sprintf(" %d", te)
		attrs += fmt.Sprintf("a=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-16\r\n", te, te)
	}
	s.ring.pt.Store(int32(pt))
	return []byte(fmt.Sprintf("v=0\r\no=callgate %d 1 IN %s %s\r\ns=callgate\r\nc=IN %s %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP %s\r\n%sa=ptime:20\r\na=sendrecv\r\n",
		rand.Uint32()>>1, at, adv, at, adv, s.caller.p.rtpAddr.Port(), fmts, attrs)), nil
}

// StartRingback plays the ringback tone to the caller until the agent's
// first packet or SDP answer (EarlyAnswer must have succeeded).
func (s *Session) StartRingback() {
	if s.ring.pt.Load() == 0 && !s.callerOffers(0) {
		return
	}
	s.ring.on.Store(true)
}

func (s *Session) callerOffers(pt uint8) bool {
	s.sdpMu.Lock()
	defer s.sdpMu.Unlock()
	if s.callerSDP == nil {
		return false
	}
	for _, f := range s.callerSDP.fmts {
		if f == pt {
			return true
		}
	}
	return false
}

// Ringing reports whether the tone is playing.
func (s *Session) Ringing() bool { return s.ring.on.Load() }

// ringCaller sends the next ringback frame; false (and the tone stops)
// once the agent's media or answer arrived.
func (s *Session) ringCaller(os *osScratch) bool {
	if s.answeredAt.Load() != 0 || s.agent.lastRx.Load() != 0 || s.closing.Load() {
		s.ring.on.Store(false)
		return false
	}
	l := s.caller
	dst := l.rtpPeer.Load()
	if dst == nil {
		return true
	}
	pt := byte(s.ring.pt.Load())
	tab := &ringTables[0]
	if pt == 8 {
		tab = &ringTables[1]
	}
	s.ioMu.Lock()
	defer s.ioMu.Unlock()
	if s.ioClosed {
		return false
	}
	t := &l.tx
	now := s.now()
	if !t.have {
		t.have, t.ssrc, t.seq, t.ts, t.at = true, rand.Uint32()|1, uint16(rand.Uint32()), rand.Uint32(), now
		t.seq--
	}
	t.seq++
	t.seqAdd++
	t.ts += uint32((now - t.at) / 125000)
	t.at, t.pt = now, int(pt)
	b := s.fill.buf[:]
	b[0], b[1] = 0x80, pt
	if s.ring.frame == 0 {
		b[1] |= 0x80 // a talkspurt begins
	}
	putHeader(b, t.seq, t.ts, t.ssrc)
	f := s.ring.frame % ringAllFrames
	for i := 0; i < 160; i++ {
		if f < ringOnFrames {
			b[12+i] = tab[(f*160+i)%ringPeriod]
		} else if pt == 8 {
			b[12+i] = 0xd5
		} else {
			b[12+i] = 0xff
		}
	}
	s.ring.frame++
	if l.sendOwn(b[:12+160], *dst, os) == nil {
		s.m.fillMet.packets.WithLabelValues("ringback").Inc()
	}
	return true
}
