package media

import (
	"math"
	"testing"
)

// Deterministic checks of RFC 3550 A.1 and A.8 without sockets.
func TestLegStatsSequence(t *testing.T) {
	type pkt struct {
		ssrc uint32
		seq  uint16
	}
	run := func(pkts []pkt) LegStats {
		var l legStats
		for i, p := range pkts {
			l.rtp(p.ssrc, p.seq, uint32(p.seq)*160, 8000, int64(i)*20e6)
		}
		return l.snapshot()
	}
	seqs := func(ssrc uint32, from, n int, skip func(int) bool) (out []pkt) {
		for i := 0; i < n; i++ {
			if skip == nil || !skip(i) {
				out = append(out, pkt{ssrc, uint16(from + i)})
			}
		}
		return out
	}
	cat := func(a ...[]pkt) (out []pkt) {
		for _, x := range a {
			out = append(out, x...)
		}
		return out
	}
	tests := []struct {
		name           string
		pkts           []pkt
		expected       uint64
		lost           int64
		ssrcs          int
		reordered      uint64
		lossRatioAbove float64
	}{
		{"wraps twice with 1 in 1000 lost", seqs(1, 0, 140000, func(i int) bool { return i%1000 == 500 }), 140000, 140, 1, 0, 0},
		{"starts near wrap", seqs(1, 65530, 20, nil), 20, 0, 1, 0, 0},
		{"duplicates give negative loss", cat(seqs(1, 10, 5, nil), seqs(1, 12, 2, nil)), 5, -2, 1, 2, 0},
		{"late packet beyond max misorder is ignored until confirmed", cat(seqs(1, 1000, 10, nil), []pkt{{1, 30000}}, seqs(1, 1010, 10, nil)), 20, 0, 1, 0, 0},
		{"restart after a jump confirmed by a second packet", cat(seqs(1, 1000, 10, nil), seqs(1, 40000, 10, nil)), 10 + 9, 0, 1, 0, 0},
		{"new SSRC starts a new source and keeps totals", cat(seqs(1, 100, 10, func(i int) bool { return i == 3 }), seqs(2, 7, 10, nil)), 20, 1, 2, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := run(tc.pkts)
			if st.Expected != tc.expected || st.Lost != tc.lost || st.SSRCs != tc.ssrcs || st.Reordered != tc.reordered {
				t.Fatalf("expected %d lost %d ssrcs %d reordered %d; want %d %d %d %d",
					st.Expected, st.Lost, st.SSRCs, st.Reordered, tc.expected, tc.lost, tc.ssrcs, tc.reordered)
			}
			if st.Lost <= 0 && st.LossRatio != 0 {
				t.Fatalf("loss ratio %v with lost %d", st.LossRatio, st.Lost)
			}
		})
	}
}

func TestLegStatsJitter(t *testing.T) {
	// Arrivals every 20 ms with timestamps every 160 (8 kHz): zero jitter.
	var l legStats
	for i := 0; i < 100; i++ {
		l.rtp(1, uint16(i), uint32(i*160), 8000, int64(i)*20e6)
	}
	if j := l.snapshot().JitterMillis; j != 0 {
		t.Fatalf("steady stream jitter %v", j)
	}
	// Every other packet 10 ms late: |D| = 10 ms per packet, so J -> 10 ms.
	l = legStats{}
	for i := 0; i < 300; i++ {
		at := int64(i) * 20e6
		if i%2 == 1 {
			at += 10e6
		}
		l.rtp(1, uint16(i), uint32(i*160), 8000, at)
	}
	if j := l.snapshot().JitterMillis; math.Abs(j-10) > 0.01 {
		t.Fatalf("jitter %v ms, want 10", j)
	}
	// A 48 kHz codec (Opus) with the same timing gives the same jitter in ms.
	l = legStats{}
	for i := 0; i < 300; i++ {
		at := int64(i) * 20e6
		if i%2 == 1 {
			at += 10e6
		}
		l.rtp(1, uint16(i), uint32(i*960), 48000, at)
	}
	if j := l.snapshot(); math.Abs(j.JitterMillis-10) > 0.01 || j.ClockRate != 48000 {
		t.Fatalf("48k jitter %v ms clock %d", j.JitterMillis, j.ClockRate)
	}
	// One 20 ms step from the first value: J = 20/16 ms (A.8 gain 1/16).
	l = legStats{}
	l.rtp(1, 0, 0, 8000, 0)
	l.rtp(1, 1, 160, 8000, 40e6)
	if j := l.snapshot().JitterMillis; math.Abs(j-1.25) > 1e-9 {
		t.Fatalf("single step jitter %v ms, want 1.25", j)
	}
}

// RFC 4733: the packets of one DTMF digit (telephone-event, PT 101 here)
// share the sequence space of the audio but repeat the digit's start
// timestamp for as long as the key is held. They count for loss; the
// jitter of a perfectly timed call stays 0 across a 200 ms digit.
func TestLegStatsDTMFDoesNotReadAsJitter(t *testing.T) {
	var l legStats
	seq, at := uint16(0), int64(0)
	audio := func(n int) {
		for i := 0; i < n; i++ {
			l.rtp(1, seq, uint32(at/125000), 8000, at) // 8 kHz timestamp of the send time
			seq++
			at += 20e6
		}
	}
	audio(50)
	start := uint32(at / 125000)
	for i := 0; i < 10; i++ { // the digit: same timestamp, 20 ms apart
		l.rtp(1, seq, start, 8000|clockEvent, at)
		seq++
		at += 20e6
	}
	audio(50)
	st := l.snapshot()
	if st.JitterMillis != 0 || st.JitterMaxMs != 0 {
		t.Fatalf("jitter %v ms (max %v) across a DTMF digit, want 0", st.JitterMillis, st.JitterMaxMs)
	}
	if st.RTPPackets != 110 || st.Expected != 110 || st.Lost != 0 || st.ClockRate != 8000 {
		t.Fatalf("counts %+v", st)
	}
	// Without the event flag the same packets would have read as jitter.
	var plain legStats
	seq, at = 0, 0
	for i := 0; i < 60; i++ {
		ts := uint32(at / 125000)
		if i >= 50 {
			ts = start
		}
		plain.rtp(1, seq, ts, 8000, at)
		seq++
		at += 20e6
	}
	if plain.snapshot().JitterMaxMs < 5 {
		t.Fatalf("control: jitter max %v ms, want the digit to show", plain.snapshot().JitterMaxMs)
	}
}

// A transit jump of exactly 2^31 timestamp units (a sender's timestamp
// leaping half its range; found by FuzzPacket) must not turn the
// jitter negative: |-2^31| does not fit in an int32.
func TestLegStatsJitterHalfRangeJump(t *testing.T) {
	var l legStats
	l.rtp(1, 0, 0, 8000, 0)
	l.rtp(1, 1, 1<<31, 8000, 0)
	st := l.snapshot()
	if st.JitterMillis <= 0 || math.IsInf(st.JitterMillis, 0) {
		t.Fatalf("jitter %v ms after a half-range timestamp jump, want a large positive value", st.JitterMillis)
	}
}
