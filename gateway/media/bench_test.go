package media

import (
	"encoding/binary"
	"testing"
)

// forwardLoop sends n RTP packets caller->agent through the relay, one at a
// time, each read by the agent before the next is sent.
func forwardLoop(tb testing.TB, c *call, pkt, buf []byte, seq *uint16, n int) {
	for i := 0; i < n; i++ {
		*seq++
		binary.BigEndian.PutUint16(pkt[2:], *seq)
		binary.BigEndian.PutUint32(pkt[4:], uint32(*seq)*160)
		if _, err := c.caller.c.WriteToUDPAddrPort(pkt, c.toCaller); err != nil {
			tb.Fatal(err)
		}
		if _, _, err := c.agent.c.ReadFromUDPAddrPort(buf); err != nil {
			tb.Fatal(err)
		}
	}
}

func benchPacket(tb testing.TB) []byte {
	b, err := rtpPacket(0xabcdef, 0, 0, make([]byte, 160)).Marshal()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestForwardDoesNotAllocate: the relay's hot path (read, latch check,
// RFC 3550 accounting, forward) makes no allocation per packet. The
// measurement is process-wide, so it covers the relay's goroutines.
func TestForwardDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	m, _ := runTestManager(t, nil)
	c := setupCall(t, m, nil)
	pkt, buf := benchPacket(t), make([]byte, 2048)
	var seq uint16
	forwardLoop(t, c, pkt, buf, &seq, 100) // warm up (latching, buffers)
	allocs := testing.AllocsPerRun(2000, func() { forwardLoop(t, c, pkt, buf, &seq, 1) })
	if allocs != 0 {
		t.Fatalf("%v allocations per forwarded packet", allocs)
	}
	if st := c.s.Stats().Caller; st.Lost != 0 || st.RTPPackets != 2101 {
		t.Fatalf("stats: %+v", st)
	}
}

// BenchmarkForward is one RTP packet (172 bytes) from the caller's socket
// through the relay to the agent's socket, on loopback: two UDP sends,
// two receives, the relay's accounting. ns/op is the round of one packet
// (not a throughput figure); allocs/op must be 0.
func BenchmarkForward(b *testing.B) {
	m, _ := runTestManager(b, nil)
	c := setupCall(b, m, nil)
	pkt, buf := benchPacket(b), make([]byte, 2048)
	var seq uint16
	forwardLoop(b, c, pkt, buf, &seq, 100)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	b.ResetTimer()
	forwardLoop(b, c, pkt, buf, &seq, b.N)
}

// BenchmarkHandlePacket is the relay's per-packet work without the
// sockets: source check, header parse, A.1/A.8 accounting.
func BenchmarkHandlePacket(b *testing.B) {
	m, _ := runTestManager(b, nil)
	c := setupCall(b, m, nil)
	l := c.s.caller
	pkt := benchPacket(b)
	sc := new(scratch)
	src := c.caller.addr
	now := int64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		now += 20e6
		l.mu.Lock()
		if l.acceptRTP(src, now) && l.parseRTP(pkt, sc) {
			l.st.rtp(sc.hdr.SSRC, sc.hdr.SequenceNumber, sc.hdr.Timestamp, l.clock.Load()[sc.hdr.PayloadType], now)
		}
		l.mu.Unlock()
	}
}
