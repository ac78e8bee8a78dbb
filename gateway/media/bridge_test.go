package media

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestRepointAgent: a bridged transfer re-points the agent-facing leg at
// a new endpoint. The caller keeps sending to the same port and its
// packets reach the new endpoint (from the same agent-facing address);
// the new endpoint's packets reach the caller; the old agent, still
// sending, is neither latched onto nor forwarded, and gets nothing more.
// Malformed SDP changes nothing.
func TestRepointAgent(t *testing.T) {
	m, _ := runTestManager(t, nil)
	c := setupCall(t, m, nil)
	payload := bytes.Repeat([]byte{0xd5}, 160)
	// the call runs: the agent's leg is established
	for i := 0; i < 5; i++ {
		c.agent.sendRTP(c.toAgent, rtpPacket(0x2222, uint16(i), uint32(i*160), payload))
		if _, _, err := c.caller.recv(2 * time.Second); err != nil {
			t.Fatalf("agent->caller before the bridge: %v", err)
		}
	}
	if err := c.s.RepointAgent([]byte("v=0\r\nnot sdp")); err == nil || !errors.Is(err, ErrBadSDP) {
		t.Fatalf("RepointAgent(malformed) = %v, want ErrBadSDP", err)
	}
	human := newEndpoint(t)
	if err := c.s.RepointAgent(offerFor(human)); err != nil {
		t.Fatalf("RepointAgent: %v", err)
	}
	// the old agent keeps sending, a burst past the latching threshold
	for i := 0; i < 10; i++ {
		c.agent.sendRTP(c.toAgent, rtpPacket(0x2222, uint16(100+i), uint32(i*160), payload))
	}
	for i := 0; i < 20; i++ {
		c.agent.sendRTP(c.toAgent, rtpPacket(0x2222, uint16(200+i), uint32(i*160), payload))
		sent := c.caller.sendRTP(c.toCaller, rtpPacket(0x1111, uint16(i), uint32(i*160), payload))
		got, from, err := human.recv(2 * time.Second)
		if err != nil {
			t.Fatalf("caller->new leg packet %d: %v", i, err)
		}
		if !bytes.Equal(got, sent) || from != c.toAgent {
			t.Fatalf("caller->new leg packet %d from %s, want unchanged from %s", i, from, c.toAgent)
		}
		back := human.sendRTP(c.toAgent, rtpPacket(0x3333, uint16(i), uint32(i*160), payload))
		got, _, err = c.caller.recv(2 * time.Second)
		if err != nil {
			t.Fatalf("new leg->caller packet %d: %v", i, err)
		}
		if !bytes.Equal(got, back) {
			t.Fatalf("packet %d at the caller is not the new leg's (the old agent's got through)", i)
		}
	}
	if left := c.agent.drain(200 * time.Millisecond); len(left) != 0 {
		t.Errorf("the old agent got %d packets after the bridge", len(left))
	}
	if extra := c.caller.drain(200 * time.Millisecond); len(extra) != 0 {
		t.Errorf("the caller got %d packets besides the new leg's", len(extra))
	}
}
