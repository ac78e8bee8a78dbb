package media

import (
	"testing"
)

// BenchmarkHandlePacketSRTP is the relay's per-packet work on a call
// with SRTP on both legs, without the sockets: decrypt and authenticate
// (AES_CM_128_HMAC_SHA1_80, replay check), the accounting, encrypt
// under the relay's key toward the other leg. Compare with
// BenchmarkHandlePacket (plain RTP).
func BenchmarkHandlePacketSRTP(b *testing.B) {
	m, _ := runTestManager(b, nil)
	c, err := setupSecureCall(b, m, tlsBoth, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80")
	if err != nil {
		b.Fatal(err)
	}
	l := c.s.caller
	st, out := l.srtp.Load(), l.other.srtp.Load()
	if st == nil || out == nil {
		b.Fatal("legs not SRTP")
	}
	peer := srtpCtx(b, "AES_CM_128_HMAC_SHA1_80", c.callerKey)
	const chunk = 4096
	pkts := make([][]byte, chunk)
	sc := new(scratch)
	src := c.caller.addr
	now := int64(0)
	seq := uint16(0)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		b.StopTimer()
		n := min(chunk, b.N-done)
		for i := 0; i < n; i++ {
			seq++
			pkts[i] = seal(b, peer, rtpPacket(0xabcdef, seq, uint32(seq)*160, make([]byte, 160)))
		}
		b.StartTimer()
		for i := 0; i < n; i++ {
			p, ok := l.unprotect(st, pkts[i], false, sc)
			if !ok {
				b.Fatal("unprotect failed")
			}
			now += 20e6
			l.mu.Lock()
			if l.acceptRTP(src, now) && l.parseRTP(p, sc) {
				l.st.rtp(sc.hdr.SSRC, sc.hdr.SequenceNumber, sc.hdr.Timestamp, l.clock.Load()[sc.hdr.PayloadType], now)
			}
			l.mu.Unlock()
			if _, ok := l.other.protect(out, p, false, sc); !ok {
				b.Fatal("protect failed")
			}
		}
		done += n
	}
}

// TestSRTPForwardDoesNotAllocate: with SRTP on both legs the relay's hot
// path (decrypt, replay check, accounting, encrypt, forward) still makes
// no allocation per packet.
func TestSRTPForwardDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	m, _ := runTestManager(t, nil)
	c, err := setupSecureCall(t, m, tlsBoth, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80")
	if err != nil {
		t.Fatal(err)
	}
	peer := srtpCtx(t, "AES_CM_128_HMAC_SHA1_80", c.callerKey)
	const runs = 2000
	pkts := make([][]byte, runs+101)
	for i := range pkts {
		pkts[i] = seal(t, peer, rtpPacket(0xabcdef, uint16(i+1), uint32(i)*160, make([]byte, 160)))
	}
	buf := make([]byte, 2048)
	next := 0
	send := func() {
		if _, err := c.caller.c.WriteToUDPAddrPort(pkts[next], c.toCaller); err != nil {
			t.Fatal(err)
		}
		next++
		if _, _, err := c.agent.c.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		send() // warm up
	}
	if allocs := testing.AllocsPerRun(runs, send); allocs != 0 {
		t.Fatalf("%v allocations per forwarded SRTP packet", allocs)
	}
	if st := c.s.Stats().Caller; st.Lost != 0 || st.RTPPackets != runs+101 || st.SRTPAuthFailures != 0 {
		t.Fatalf("stats: %+v", st)
	}
}
