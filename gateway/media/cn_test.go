package media

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func recvRTP(t *testing.T, e *endpoint) (rtp.Packet, time.Time) {
	t.Helper()
	b, _, err := e.recv(5 * time.Second)
	if err != nil {
		t.Fatalf("no packet at the caller: %v", err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	return p, time.Now()
}

// While the agent is silent after the answer, the caller gets G.711
// silence every 20 ms (it offered no CN); when the agent speaks again its
// packets follow in the same sequence, renumbered after the filler.
func TestComfortNoiseSilenceThenAgentResumes(t *testing.T) {
	m, reg := runTestManager(t, nil)
	c := setupCall(t, m, nil)
	c.s.SetComfortNoise(true)
	const ssrc = 0x5151
	c.agent.sendRTP(c.toAgent, rtpPacket(ssrc, 100, 16000, bytes.Repeat([]byte{0x11}, 160)))
	first, at0 := recvRTP(t, c.caller)
	if first.SequenceNumber != 100 {
		t.Fatalf("agent's packet: seq %d", first.SequenceNumber)
	}
	var fill []rtp.Packet
	var at1 time.Time
	for len(fill) < 10 {
		p, at := recvRTP(t, c.caller)
		if len(fill) == 0 {
			at1 = at
		}
		fill = append(fill, p)
	}
	if d := at1.Sub(at0); d < 900*time.Millisecond {
		t.Fatalf("filler began %v after the agent's last packet, want about 1 s", d)
	}
	for i, p := range fill {
		if p.PayloadType != 0 || p.SSRC != ssrc || p.SequenceNumber != uint16(101+i) || !bytes.Equal(p.Payload, bytes.Repeat([]byte{0xff}, 160)) {
			t.Fatalf("filler %d: pt %d ssrc %x seq %d payload %x...", i, p.PayloadType, p.SSRC, p.SequenceNumber, p.Payload[:4])
		}
		if i > 0 && p.Timestamp-fill[i-1].Timestamp > 800 {
			t.Fatalf("filler %d: timestamp jumps %d", i, p.Timestamp-fill[i-1].Timestamp)
		}
	}
	// the agent resumes: its packets continue the sequence
	for i := 0; i < 5; i++ {
		c.agent.sendRTP(c.toAgent, rtpPacket(ssrc, uint16(101+i), 16160+uint32(i)*160, bytes.Repeat([]byte{0x22}, 160)))
	}
	var prev uint16
	seen := 0
	for seen < 5 {
		p, _ := recvRTP(t, c.caller)
		if p.Payload[0] == 0xff {
			prev = p.SequenceNumber // a filler sent before the agent's packet arrived
			continue
		}
		if prev != 0 && p.SequenceNumber != prev+1 {
			t.Fatalf("agent's packet seq %d after %d: a gap or a repeat", p.SequenceNumber, prev)
		}
		prev = p.SequenceNumber
		seen++
	}
	if v := counterValue(t, reg, "callgate_media_filler_packets_total"); v < 10 {
		t.Fatalf("callgate_media_filler_packets_total = %v", v)
	}
}

// A caller that offered CN (PT 13) gets RFC 3389 comfort noise.
func TestComfortNoiseCN(t *testing.T) {
	m, _ := runTestManager(t, nil)
	caller, agent := newEndpoint(t), newEndpoint(t)
	s, err := m.NewSession("cn-"+t.Name(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.RewriteOffer([]byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 8 13\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n", caller.addr.Port()))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RewriteAnswer(offerFor(agent)); err != nil {
		t.Fatal(err)
	}
	s.SetComfortNoise(true)
	p, _ := recvRTP(t, caller)
	if p.PayloadType != 13 || len(p.Payload) != 1 {
		t.Fatalf("filler: pt %d payload %x, want CN with a noise level", p.PayloadType, p.Payload)
	}
	q, _ := recvRTP(t, caller)
	if q.SequenceNumber != p.SequenceNumber+1 || q.SSRC != p.SSRC || q.Timestamp-p.Timestamp != 160 && q.Timestamp-p.Timestamp > 800 {
		t.Fatalf("CN stream: %v then %v", p.Header, q.Header)
	}
}
