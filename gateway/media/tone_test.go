package media

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The ringback tone: a 183 body answering the caller's offer at the
// caller-facing port with its G.711 codec, then 440+480 Hz frames every
// 20 ms in that codec until the agent's first packet.
func TestRingbackToneUntilAgentMedia(t *testing.T) {
	m, reg := runTestManager(t, nil)
	caller, agent := newEndpoint(t), newEndpoint(t)
	s, err := m.NewSession("ring-"+t.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	off, err := s.RewriteOffer(offerFor(caller))
	if err != nil {
		t.Fatal(err)
	}
	body, err := s.EarlyAnswer()
	if err != nil {
		t.Fatal(err)
	}
	if got := mediaAddr(t, body); got != s.CallerAddr() {
		t.Fatalf("183 SDP points at %v, want the caller-facing %v\n%s", got, s.CallerAddr(), body)
	}
	if !strings.Contains(string(body), "m=audio ") || !strings.Contains(string(body), "RTP/AVP 0 101") {
		t.Fatalf("183 SDP:\n%s", body)
	}
	s.StartRingback()
	var samples []byte
	for i := 0; i < 5; i++ {
		p, _ := recvRTP(t, caller)
		if p.PayloadType != 0 || len(p.Payload) != 160 || p.Marker != (i == 0) {
			t.Fatalf("tone packet %d: pt %d marker %v %d bytes", i, p.PayloadType, p.Marker, len(p.Payload))
		}
		samples = append(samples, p.Payload...)
	}
	if bytes.Count(samples, []byte{0xff}) > len(samples)/4 {
		t.Fatal("the tone is silence")
	}
	for i := 0; i+ringPeriod < len(samples); i++ {
		if samples[i] != samples[i+ringPeriod] {
			t.Fatalf("sample %d differs one 25 ms period later: not the 440+480 Hz tone", i)
		}
	}
	// the agent's media stops it
	if _, err := s.RewriteAnswer(offerFor(agent)); err != nil {
		t.Fatal(err)
	}
	agent.sendRTP(mediaAddr(t, off), rtpPacket(9, 1, 1, bytes.Repeat([]byte{0x33}, 160)))
	deadline := time.Now().Add(5 * time.Second)
	for s.Ringing() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if s.Ringing() {
		t.Fatal("the tone goes on after the agent's media")
	}
	if v := counterValue(t, reg, "callgate_media_filler_packets_total"); v < 5 {
		t.Fatalf("callgate_media_filler_packets_total = %v", v)
	}
}
