package devua

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
)

// Stats are one call's RTP figures.
type Stats struct {
	PacketsIn  int
	PacketsOut int
	Lost       int           // expected minus received (RFC 3550 §6.4.1), never below 0
	Jitter     time.Duration // interarrival jitter (RFC 3550 §6.4.1)
	DTMF       string        // RFC 4733 digits received
}

func (s Stats) String() string {
	return fmt.Sprintf("rtp_in=%d rtp_out=%d lost=%d jitter=%.1fms", s.PacketsIn, s.PacketsOut, s.Lost, float64(s.Jitter)/float64(time.Millisecond))
}

// stream is one RTP session on a UDP socket: a sender paced at 20 ms
// taking frames from next, and a receiver handing decoded audio to
// onAudio. Remote address, codec and hold can change (re-INVITE).
type stream struct {
	conn      *net.UDPConn
	next      func() []int16 // the next 20 ms frame to send; nil sends nothing
	onAudio   func([]int16)  // called from the receive goroutine
	closeHook func()         // called by close after both loops ended

	mu      sync.Mutex
	remote  *net.UDPAddr
	codec   Codec
	eventPT int
	held    bool

	out     atomic.Int64
	rxMu    sync.Mutex
	rx      rxStats
	dtmf    []byte
	lastEvt uint32 // timestamp of the last event counted

	digits chan byte // RFC 4733 digits to send (in place of audio)

	stop chan struct{}
	wg   sync.WaitGroup
}

// eventSender sends one RFC 4733 digit at a time: 100 ms of event
// packets (one timestamp, growing duration, marker on the first), the
// end packet three times, then 60 ms of audio before the next digit.
type eventSender struct {
	active  bool
	ts      uint32
	n       int // packets sent for this digit
	gap     int // audio frames still due before the next digit
	payload [4]byte
}

const (
	eventPackets = 5 // 100 ms
	eventEnds    = 3
	eventGap     = 3 // 60 ms
)

// step reports whether this tick sends an event packet (its payload in
// e.payload, header set in p).
func (e *eventSender) step(s *stream, p *rtp.Packet) bool {
	s.mu.Lock()
	pt := s.eventPT
	s.mu.Unlock()
	if !e.active {
		if e.gap > 0 {
			e.gap--
			return false
		}
		var d byte
		select {
		case d = <-s.digits:
		default:
			return false
		}
		code := strings.IndexByte("0123456789*#ABCD", d)
		if pt < 0 || code < 0 {
			return false
		}
		*e = eventSender{active: true, ts: p.Timestamp, payload: [4]byte{byte(code), 10}}
		p.Marker = true
	}
	e.n++
	dur := uint16(min(e.n, eventPackets) * FrameSamples)
	e.payload[1] = 10 // volume -10 dBm0
	if e.n >= eventPackets {
		e.payload[1] |= 0x80 // E: end of event
	}
	e.payload[2], e.payload[3] = byte(dur>>8), byte(dur)
	p.PayloadType = uint8(pt)
	p.Timestamp = e.ts
	if e.n >= eventPackets+eventEnds-1 {
		e.active = false
		e.gap = eventGap
	}
	return true
}

type rxStats struct {
	packets         int
	started         bool
	baseSeq, maxSeq uint32 // extended sequence numbers
	lastTransit     float64
	haveTransit     bool
	jitter          float64 // in timestamp units
	first           time.Time
}

// listenRTP opens a UDP socket for RTP on ip, port chosen by the system.
func listenRTP(ip string) (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		return nil, fmt.Errorf("devua: rtp socket: %w", err)
	}
	return c, nil
}

func (s *stream) configure(remote *net.UDPAddr, codec Codec, eventPT int, held bool) {
	s.mu.Lock()
	s.remote, s.codec, s.eventPT, s.held = remote, codec, eventPT, held
	s.mu.Unlock()
}

func (s *stream) start() {
	s.stop = make(chan struct{})
	s.wg.Add(2)
	go s.sendLoop()
	go s.recvLoop()
}

// close stops both loops and the socket; it is safe to call once.
func (s *stream) close() {
	close(s.stop)
	s.conn.Close()
	s.wg.Wait()
	if s.closeHook != nil {
		s.closeHook()
	}
}

func (s *stream) sendLoop() {
	defer s.wg.Done()
	var ssrcB [4]byte
	_, _ = rand.Read(ssrcB[:])
	p := rtp.Packet{Header: rtp.Header{Version: 2, SSRC: binary.BigEndian.Uint32(ssrcB[:]), SequenceNumber: uint16(ssrcB[0])<<8 | uint16(ssrcB[1])}}
	p.Header.Marker = true
	buf := make([]byte, 0, 12+FrameSamples)
	payload := make([]byte, 0, FrameSamples)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var ev eventSender
	clock := binary.BigEndian.Uint32(ssrcB[:]) ^ 0x5a5a5a5a
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		s.mu.Lock()
		remote, codec, held := s.remote, s.codec, s.held
		s.mu.Unlock()
		clock += FrameSamples // the clock runs on while silent or held
		if held || remote == nil {
			s.next()
			continue
		}
		p.Header.Timestamp = clock
		if ev.step(s, &p) {
			payload = append(payload[:0], ev.payload[:]...)
		} else {
			frame := s.next()
			if frame == nil {
				continue
			}
			payload = codec.Encode(payload[:0], frame)
			p.Header.PayloadType = codec.PayloadType
		}
		p.Header.SequenceNumber++
		p.Payload = payload
		n, err := p.MarshalTo(buf[:cap(buf)])
		if err != nil {
			continue
		}
		if _, err := s.conn.WriteToUDP(buf[:n], remote); err == nil {
			s.out.Add(1)
		}
		p.Header.Marker = false
	}
}

func (s *stream) recvLoop() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	var p rtp.Packet
	var pcm []int16
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := s.conn.ReadFromUDP(buf)
		select {
		case <-s.stop:
			return
		default:
		}
		if err != nil || p.Unmarshal(buf[:n]) != nil || p.Version != 2 {
			continue
		}
		s.mu.Lock()
		codec, eventPT := s.codec, s.eventPT
		s.mu.Unlock()
		now := time.Now()
		s.rxMu.Lock()
		s.rx.update(&p, now, int(p.PayloadType) == eventPT)
		if int(p.PayloadType) == eventPT && eventPT >= 0 {
			s.event(&p)
		}
		s.rxMu.Unlock()
		if p.PayloadType == codec.PayloadType && s.onAudio != nil {
			pcm = codec.Decode(pcm[:0], p.Payload)
			s.onAudio(pcm)
		}
	}
}

// event counts an RFC 4733 event once (its first packet).
func (s *stream) event(p *rtp.Packet) {
	if len(p.Payload) < 4 || (len(s.dtmf) > 0 && p.Timestamp == s.lastEvt) || len(s.dtmf) >= 64 {
		return
	}
	s.lastEvt = p.Timestamp
	const digits = "0123456789*#ABCD"
	if e := p.Payload[0]; int(e) < len(digits) {
		s.dtmf = append(s.dtmf, digits[e])
	}
}

// update counts p; event packets (their timestamp is the event's start)
// are left out of the jitter.
func (r *rxStats) update(p *rtp.Packet, now time.Time, event bool) {
	seq := uint32(p.SequenceNumber)
	if !r.started {
		r.started = true
		r.baseSeq, r.maxSeq, r.first = seq, seq, now
	} else {
		// Extend to 32 bits, taking the value nearest the highest seen.
		ext := r.maxSeq&^0xffff | seq
		if d := int64(ext) - int64(r.maxSeq); d < -0x8000 {
			ext += 0x10000
		} else if d > 0x8000 && ext >= 0x10000 {
			ext -= 0x10000
		}
		if ext > r.maxSeq {
			r.maxSeq = ext
		}
	}
	r.packets++
	if event {
		return
	}
	arrival := now.Sub(r.first).Seconds() * SampleRate
	transit := arrival - float64(p.Timestamp)
	if r.haveTransit {
		d := transit - r.lastTransit
		if d < 0 {
			d = -d
		}
		r.jitter += (d - r.jitter) / 16
	}
	r.lastTransit, r.haveTransit = transit, true
}

func (s *stream) stats() Stats {
	s.rxMu.Lock()
	defer s.rxMu.Unlock()
	st := Stats{PacketsIn: s.rx.packets, PacketsOut: int(s.out.Load()), DTMF: string(s.dtmf)}
	if s.rx.started {
		if lost := int(s.rx.maxSeq-s.rx.baseSeq+1) - s.rx.packets; lost > 0 {
			st.Lost = lost
		}
		st.Jitter = time.Duration(s.rx.jitter / SampleRate * float64(time.Second))
	}
	return st
}
