package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// eventPacket is an RFC 4733 packet (PT 101 unless pt is given).
func eventPacket(pt uint8, ssrc uint32, seq uint16, ts uint32, marker bool, ev byte, end bool, dur uint16) *rtp.Packet {
	pl := []byte{ev, 10, 0, 0}
	if end {
		pl[1] |= 0x80
	}
	binary.BigEndian.PutUint16(pl[2:], dur)
	return &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, Marker: marker, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc}, Payload: pl}
}

type dtmfLog struct {
	mu  sync.Mutex
	got []string
}

func (d *dtmfLog) add(from string, digit byte) {
	d.mu.Lock()
	d.got = append(d.got, from+":"+string(digit))
	d.mu.Unlock()
}

func (d *dtmfLog) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

func waitDigits(t *testing.T, d *dtmfLog, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got := d.list(); len(got) >= len(want) {
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("digits: got %v, want %v", got, want)
			}
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("digits: got %v, want %v", d.list(), want)
}

// One key press per event whatever the Marker bit, lost start or end
// packets, redundant ends, long presses in segments; every packet is
// relayed byte for byte.
func TestDTMFDecodedTolerantlyAndRelayedUntouched(t *testing.T) {
	m, reg := runTestManager(t, nil)
	c := setupCall(t, m, nil)
	var log dtmfLog
	c.s.OnDTMF(log.add)

	const ssrc = 0x1234
	seq, ts := uint16(100), uint32(8000)
	var sent [][]byte
	send := func(p *rtp.Packet) {
		sent = append(sent, c.caller.sendRTP(c.toCaller, p))
	}
	// audio first (latches the caller leg)
	for i := 0; i < 3; i++ {
		send(rtpPacket(ssrc, seq, ts, make([]byte, 160)))
		seq++
		ts += 160
	}
	// '1': no Marker bit at all, three redundant end packets
	for k := uint16(1); k <= 4; k++ {
		send(eventPacket(101, ssrc, seq, ts, false, 1, false, k*160))
		seq++
	}
	for i := 0; i < 3; i++ {
		send(eventPacket(101, ssrc, seq, ts, false, 1, true, 800))
		seq++
	}
	ts += 1600
	// '2': start packets lost (first seen is a middle one), end packets lost
	send(eventPacket(101, ssrc, seq+2, ts, false, 2, false, 480))
	send(eventPacket(101, ssrc, seq+3, ts, false, 2, false, 640))
	seq += 10
	ts += 1600
	// '#': a long press in two segments (RFC 4733 2.5.1.3), then the same digit again
	send(eventPacket(101, ssrc, seq, ts, true, 11, false, 0xff00))
	seq++
	send(eventPacket(101, ssrc, seq, ts+0xff00, false, 11, false, 800))
	seq++
	send(eventPacket(101, ssrc, seq, ts+0xff00, false, 11, true, 1600))
	seq++
	send(eventPacket(101, ssrc, seq, ts+0xff00, false, 11, true, 1600))
	seq++
	ts += 0xff00 + 3200
	send(eventPacket(101, ssrc, seq, ts, true, 11, false, 160))
	seq++
	send(eventPacket(101, ssrc, seq, ts, false, 11, true, 800))
	// the agent sends 'A'
	c.agent.sendRTP(c.toAgent, eventPacket(101, 0x99, 1, 500, true, 12, true, 800))

	waitDigits(t, &log, []string{"caller:1", "caller:2", "caller:#", "caller:#", "agent:A"})
	for i, want := range sent {
		got, _, err := c.agent.recv(5 * time.Second)
		if err != nil {
			t.Fatalf("packet %d not relayed: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("packet %d changed by the relay:\n got %x\nwant %x", i, got, want)
		}
	}
	if v := counterValue(t, reg, "callgate_media_dtmf_events_total"); v != 5 {
		t.Fatalf("callgate_media_dtmf_events_total = %v, want 5", v)
	}
}

// The event payload type comes from each side's SDP: here the caller
// maps telephone-event to 96 and the agent to 101; PT 101 from the
// caller is then audio of another codec only if nobody maps it.
func TestDTMFPayloadTypeFromSDP(t *testing.T) {
	m, _ := runTestManager(t, nil)
	caller, agent := newEndpoint(t), newEndpoint(t)
	s, err := m.NewSession("pt-"+t.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	off := []byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 8 96\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n", caller.addr.Port()))
	o, err := s.RewriteOffer(off)
	if err != nil {
		t.Fatal(err)
	}
	ans := []byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n", agent.addr.Port()))
	a, err := s.RewriteAnswer(ans)
	if err != nil {
		t.Fatal(err)
	}
	var log dtmfLog
	s.OnDTMF(log.add)
	caller.sendRTP(mediaAddr(t, a), eventPacket(96, 7, 1, 100, false, 5, true, 800))
	agent.sendRTP(mediaAddr(t, o), eventPacket(101, 8, 1, 100, false, 9, true, 800))
	caller.sendRTP(mediaAddr(t, a), eventPacket(8, 7, 2, 260, false, 3, false, 800)) // PCMA, not an event
	caller.sendRTP(mediaAddr(t, a), eventPacket(96, 7, 3, 900, false, 7, true, 800))
	agent.sendRTP(mediaAddr(t, o), eventPacket(101, 8, 2, 100, false, 9, true, 800)) // the same press again (redundant end)
	// each leg keeps its order; the two legs may be handled in parallel
	deadline := time.Now().Add(10 * time.Second)
	for len(log.list()) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var fromCaller, fromAgent []string
	for _, d := range log.list() {
		if d[0] == 'c' {
			fromCaller = append(fromCaller, d)
		} else {
			fromAgent = append(fromAgent, d)
		}
	}
	if fmt.Sprint(fromCaller) != "[caller:5 caller:7]" || fmt.Sprint(fromAgent) != "[agent:9]" {
		t.Fatalf("digits %v", log.list())
	}
	if got := s.eventPT(s.caller); got != 96 {
		t.Fatalf("event PT toward the caller = %d, want 96", got)
	}
	if got := s.eventPT(s.agent); got != 101 {
		t.Fatalf("event PT toward the agent = %d, want 101", got)
	}
}

// SendDTMF plays digits toward the caller as RFC 4733 events inside the
// agent's forwarded stream: same SSRC, sequence numbers without a gap
// (the agent's later packets renumbered), durations growing by 160 per
// 20 ms, three end packets, w = 0.5 s pause.
func TestSendDTMFToCaller(t *testing.T) {
	m, reg := runTestManager(t, nil)
	c := setupCall(t, m, nil)
	const ssrc = 0xabcdef
	seq, ts := uint16(65530), uint32(1000) // wraps during the test
	audio := func() {
		c.agent.sendRTP(c.toAgent, rtpPacket(ssrc, seq, ts, make([]byte, 160)))
		seq++
		ts += 160
	}
	for i := 0; i < 3; i++ {
		audio()
	}
	for i := 0; i < 3; i++ {
		if _, _, err := c.caller.recv(5 * time.Second); err != nil {
			t.Fatalf("audio not relayed: %v", err)
		}
	}
	if err := c.s.SendDTMF(true, "1w#", 0); err != nil {
		t.Fatal(err)
	}
	if err := c.s.SendDTMF(true, "1x", 0); !errors.Is(err, ErrBadDigits) {
		t.Fatalf("bad digits: %v", err)
	}
	type rx struct {
		p  rtp.Packet
		at time.Time
	}
	var got []rx
	// 2 digits × (8 + 2) packets
	for len(got) < 20 {
		b, _, err := c.caller.recv(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d packets: %v", len(got), err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		got = append(got, rx{p, time.Now()})
	}
	audio() // after the digits: renumbered
	b, _, err := c.caller.recv(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var after rtp.Packet
	if err := after.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	want := uint16(65532) // last audio forwarded before the digits
	for i, r := range got {
		want++
		h := r.p.Header
		if h.PayloadType != 101 || h.SSRC != ssrc || h.SequenceNumber != want {
			t.Fatalf("packet %d: pt %d ssrc %x seq %d, want pt 101 ssrc %x seq %d", i, h.PayloadType, h.SSRC, h.SequenceNumber, ssrc, want)
		}
		k := i % 10
		ev, end, dur := r.p.Payload[0], r.p.Payload[1]&0x80 != 0, binary.BigEndian.Uint16(r.p.Payload[2:])
		wantEv := byte(1)
		if i >= 10 {
			wantEv = 11
		}
		wantDur := uint16(min(k+1, 8) * 160)
		if ev != wantEv || dur != wantDur || end != (k >= 7) || h.Marker != (k == 0) {
			t.Fatalf("packet %d: event %d end %v dur %d marker %v; want %d %v %d %v", i, ev, end, dur, h.Marker, wantEv, k >= 7, wantDur, k == 0)
		}
		if k > 0 && h.Timestamp != got[i-k].p.Timestamp {
			t.Fatalf("packet %d: timestamp %d differs from its event's %d", i, h.Timestamp, got[i-k].p.Timestamp)
		}
	}
	if after.SequenceNumber != want+1 || after.SSRC != ssrc {
		t.Fatalf("audio after the digits: seq %d, want %d", after.SequenceNumber, want+1)
	}
	if d := got[10].at.Sub(got[0].at); d < DTMFToneDuration+DTMFPause {
		t.Fatalf("second digit %v after the first; want at least tone + pause %v", d, DTMFToneDuration+DTMFPause)
	}
	if d := got[7].at.Sub(got[0].at); d < 120*time.Millisecond {
		t.Fatalf("a 160 ms digit took %v to send", d)
	}
	if v := counterValue(t, reg, "callgate_media_dtmf_packets_sent_total"); v != 20 {
		t.Fatalf("callgate_media_dtmf_packets_sent_total = %v", v)
	}
}

func TestSendDTMFNeedsTelephoneEvent(t *testing.T) {
	m, _ := runTestManager(t, nil)
	caller := newEndpoint(t)
	s, err := m.NewSession("te-"+t.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.RewriteOffer([]byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\n", caller.addr.Port()))); err != nil {
		t.Fatal(err)
	}
	if s.CanSendDTMF(true) {
		t.Fatal("CanSendDTMF true without telephone-event")
	}
	if err := s.SendDTMF(true, "1", 0); !errors.Is(err, ErrNoTelephoneEvent) {
		t.Fatalf("SendDTMF: %v, want ErrNoTelephoneEvent", err)
	}
}

// BenchmarkDTMFHooks measures what the DTMF work adds to a relayed
// packet: for audio, the telephone-event bit test and the outgoing
// stream's bookkeeping (txRTP); for an event packet, its decoding.
func BenchmarkDTMFHooks(b *testing.B) {
	m, _ := runTestManager(b, nil)
	c := setupCall(b, m, nil)
	l := c.s.caller
	sc := new(scratch)
	for _, tc := range []struct {
		name string
		pkt  *rtp.Packet
	}{
		{"audio", rtpPacket(1, 1, 160, make([]byte, 160))},
		{"event", eventPacket(101, 1, 1, 160, false, 5, false, 320)},
	} {
		raw, _ := tc.pkt.Marshal()
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				binary.BigEndian.PutUint16(raw[2:], uint16(i))
				if !l.parseRTP(raw, sc) {
					b.Fatal("not RTP")
				}
				if l.clock.Load()[sc.hdr.PayloadType&0x7f]&clockEvent != 0 {
					l.dtmfPacket(raw, sc)
				}
				c.s.agent.txRTP(raw, sc, int64(i))
			}
		})
	}
}
