package media

import (
	"math"
	"testing"

	"github.com/pion/rtcp"
)

// FuzzPacket feeds arbitrary datagrams from a call's accepted caller
// source to the relay's per-packet handler, on the RTP and on the RTCP
// socket: RTP header parsing, RFC 3550 accounting, compound RTCP walking
// (SR/RR report blocks, LSR/DLSR). Nothing may panic, every datagram is
// counted once, and the figures stay in range.
func FuzzPacket(f *testing.F) {
	rtpPkt, _ := rtpPacket(0xabcdef, 65535, 160, make([]byte, 160)).Marshal()
	sr, _ := (&rtcp.SenderReport{SSRC: 0x2222, NTPTime: 0x83aa7e80_00000000, RTPTime: 1, PacketCount: 1, OctetCount: 160,
		Reports: []rtcp.ReceptionReport{{SSRC: 1, FractionLost: 255, TotalLost: 0xffffff, LastSenderReport: 7, Delay: 0xffffffff}}}).Marshal()
	rr := rtcpRR(0x1111, 0x7e800000, 65536)
	for _, seed := range []struct {
		b    []byte
		rtcp bool
	}{
		{rtpPkt, false},
		{rtpPkt[:5], false},
		{append(append([]byte{}, sr...), rr...), true},
		{sr, false}, // RTCP multiplexed on the RTP port
		{rr[:len(rr)-3], true},
		{[]byte{0x81, 0xc8, 0xff, 0xff}, true}, // length beyond the datagram
		{[]byte{0x80, 0xc9, 0x00, 0x00}, true}, // empty RR
		{nil, false},
	} {
		f.Add(seed.b, seed.rtcp)
	}
	m, _ := runTestManager(f, nil)
	c := setupCall(f, m, nil)
	l, src, rtcpSrc := c.s.caller, c.caller.addr, c.caller.rtcpAddr
	sc := new(scratch)
	f.Fuzz(func(t *testing.T, b []byte, onRTCP bool) {
		from := src
		if onRTCP {
			from = rtcpSrc
		}
		before := l.snapshotPackets()
		c.s.ioMu.Lock()
		l.packet(b, from, onRTCP, sc)
		c.s.ioMu.Unlock()
		st := c.s.Stats().Caller
		if st.Packets != before+1 {
			t.Fatalf("%d packets counted after %d, want one more", st.Packets, before)
		}
		for name, v := range map[string]float64{"loss_ratio": st.LossRatio, "jitter_ms": st.JitterMillis,
			"jitter_mean_ms": st.JitterMeanMs, "jitter_max_ms": st.JitterMaxMs, "rtt_ms": st.RTTMillis, "rtt_max_ms": st.RTTMaxMillis} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
				t.Fatalf("%s = %v", name, v)
			}
		}
		if st.LossRatio > 1 {
			t.Fatalf("loss ratio %v", st.LossRatio)
		}
	})
}

// snapshotPackets is the leg's accepted packet count.
func (l *leg) snapshotPackets() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.packets
}
