package media

import "math"

// RFC 3550 A.1 constants.
const (
	maxDropout  = 3000
	maxMisorder = 100
	seqMod      = 1 << 16
)

// srcStats is the reception state of one RTP source (SSRC): RFC 3550
// A.1 (sequence numbers, extended with wrap cycles) and A.8
// (interarrival jitter). Probation (MIN_SEQUENTIAL) is 1: the relay only
// counts packets from a source it has accepted.
type srcStats struct {
	ssrc        uint32
	maxSeq      uint16
	cycles      uint32 // shifted count of wraps
	baseSeq     uint32
	badSeq      uint32
	received    uint64
	reordered   uint64 // packets older than the highest seen
	transit     uint32 // last transit time, RTP units
	haveTransit bool
	jitter      float64 // RTP timestamp units (A.8, *not* scaled by 16)
	clock       uint32  // clock rate of the last packet
}

func (s *srcStats) init(ssrc uint32, seq uint16) {
	*s = srcStats{ssrc: ssrc, maxSeq: seq, baseSeq: uint32(seq), badSeq: seqMod + 1}
}

// update applies A.1's update_seq. It returns counted=false for a packet
// after a large jump (a second sequential one is needed to confirm a
// restart) and restart=true when that confirmation arrives: the caller
// must then fold the current figures away and init_seq.
func (s *srcStats) update(seq uint16) (counted, restart bool) {
	udelta := seq - s.maxSeq
	switch {
	case udelta < maxDropout:
		if seq < s.maxSeq {
			s.cycles += seqMod
		}
		s.maxSeq = seq
	case udelta <= seqMod-maxMisorder:
		if uint32(seq) == s.badSeq {
			return true, true
		}
		s.badSeq = (uint32(seq) + 1) & (seqMod - 1)
		return false, false
	default:
		// duplicate or reordered packet
		s.reordered++
	}
	s.received++
	return true, false
}

func (s *srcStats) extMax() uint32 { return s.cycles + uint32(s.maxSeq) }

func (s *srcStats) expected() uint64 {
	if s.received == 0 {
		return 0
	}
	return uint64(s.extMax()) - uint64(s.baseSeq) + 1
}

// jitterUpdate applies A.8 for a packet with RTP timestamp ts arriving at
// arrival (in the same clock units).
func (s *srcStats) jitterUpdate(arrival, ts uint32) {
	transit := arrival - ts
	if s.haveTransit {
		// The difference is taken modulo 2^32 (timestamps wrap); its
		// magnitude in 64 bits, as -(-2^31) does not fit in an int32.
		d := int64(int32(transit - s.transit))
		if d < 0 {
			d = -d
		}
		s.jitter += (float64(d) - s.jitter) / 16
	}
	s.transit = transit
	s.haveTransit = true
}

// legStats is everything measured about what one leg's endpoint sends to
// the relay, plus RTT and what the endpoint reports in RTCP.
type legStats struct {
	cur      srcStats
	haveCur  bool
	sources  int
	prevExp  uint64 // expected/received of earlier SSRCs
	prevRecv uint64
	prevReor uint64

	packets    uint64 // every accepted packet (RTP and RTCP)
	bytes      uint64
	rtpPackets uint64
	rtcpPkts   uint64
	foreign    uint64 // packets from sources that were not accepted
	noDest     uint64 // accepted but no destination known yet
	malformed  uint64 // accepted and forwarded, but not parseable RTP

	jitterSumSec float64 // sum of per-packet jitter estimates, seconds
	jitterN      uint64
	jitterMaxSec float64

	rttN      uint64
	rttSumSec float64
	rttMaxSec float64
	rttLast   float64

	// latest RTCP report block sent by this leg's endpoint
	repHave     bool
	repFraction uint8
	repLost     uint32
	repJitter   uint32 // RTP units of the stream it receives
}

// rtp accounts one RTP packet. arrivalNs is monotonic nanoseconds; clock
// is the payload type's entry of the clock table: its rate, with
// clockEvent set for telephone-event packets, which count for loss only.
func (l *legStats) rtp(ssrc uint32, seq uint16, ts uint32, clock uint32, arrivalNs int64) {
	l.rtpPackets++
	newSource := !l.haveCur || l.cur.ssrc != ssrc
	if !newSource {
		counted, restart := l.cur.update(seq)
		if !counted {
			return
		}
		newSource = restart
	}
	if newSource {
		if l.haveCur {
			l.prevExp += l.cur.expected()
			l.prevRecv += l.cur.received
			l.prevReor += l.cur.reordered
		}
		if !l.haveCur || l.cur.ssrc != ssrc {
			l.sources++
		}
		l.cur.init(ssrc, seq)
		l.haveCur = true
		l.cur.received++
	}
	if clock&clockEvent != 0 {
		// A DTMF digit's packets repeat its start timestamp while time
		// goes on: as interarrival jitter they would read as a delay
		// growing 20 ms per packet.
		return
	}
	if clock == 0 {
		clock = 8000
	}
	if clock != l.cur.clock {
		// codec clock changed (e.g. telephone-event at another rate):
		// transit times are not comparable, restart the estimate.
		l.cur.haveTransit = false
		l.cur.clock = clock
	}
	arrival := uint32(uint64(arrivalNs) * uint64(clock) / 1e9)
	l.cur.jitterUpdate(arrival, ts)
	j := l.cur.jitter / float64(clock)
	l.jitterSumSec += j
	l.jitterN++
	if j > l.jitterMaxSec {
		l.jitterMaxSec = j
	}
}

func (l *legStats) rtt(sec float64) {
	l.rttN++
	l.rttSumSec += sec
	l.rttLast = sec
	if sec > l.rttMaxSec {
		l.rttMaxSec = sec
	}
}

// LegStats are the figures for one leg of a relayed call. Counts and
// loss are about what the leg's endpoint sent to callgate (caller leg:
// the carrier's media towards the agent; agent leg: the agent's media
// towards the caller). RTT is between callgate and that endpoint.
type LegStats struct {
	Packets        uint64  `json:"packets"`          // accepted packets, RTP and RTCP
	Bytes          uint64  `json:"bytes"`            // UDP payload bytes of those
	RTPPackets     uint64  `json:"rtp_packets"`      //
	RTCPPackets    uint64  `json:"rtcp_packets"`     //
	Expected       uint64  `json:"expected"`         // RFC 3550 A.1, summed over SSRCs
	Lost           int64   `json:"lost"`             // expected - received (negative with duplicates)
	LossRatio      float64 `json:"loss_ratio"`       // lost/expected, clamped to [0,1]
	Reordered      uint64  `json:"reordered"`        // packets older than the highest sequence seen
	JitterMillis   float64 `json:"jitter_ms"`        // last A.8 estimate
	JitterMeanMs   float64 `json:"jitter_mean_ms"`   // mean of the estimate over the call
	JitterMaxMs    float64 `json:"jitter_max_ms"`    //
	ClockRate      uint32  `json:"clock_rate"`       // of the last RTP packet
	SSRCs          int     `json:"ssrcs"`            // sources seen
	RTTMillis      float64 `json:"rtt_ms,omitempty"` // mean RTT callgate<->endpoint (RTCP LSR/DLSR)
	RTTMaxMillis   float64 `json:"rtt_max_ms,omitempty"`
	RTTSamples     uint64  `json:"rtt_samples"`
	Ignored        uint64  `json:"ignored"`                          // packets from other sources (spoofed, stray)
	Undeliverable  uint64  `json:"undeliverable"`                    // no destination known yet
	NotRTP         uint64  `json:"not_rtp"`                          // forwarded, but not parseable as RTP
	Latched        bool    `json:"latched"`                          // switched to a source not in the SDP
	ReportedLoss   float64 `json:"reported_fraction_lost,omitempty"` // endpoint's last RTCP report about the media it receives
	ReportedLost   uint32  `json:"reported_lost,omitempty"`
	ReportedJitter float64 `json:"reported_jitter_ms,omitempty"`
	// SRTP is the crypto suite when the relay terminated SRTP on this leg
	// (srtp.go); its packets failing authentication or replayed were dropped.
	SRTP             string `json:"srtp,omitempty"`
	SRTPAuthFailures uint64 `json:"srtp_auth_failures,omitempty"`
	SRTPReplays      uint64 `json:"srtp_replays,omitempty"`
}

// CallStats is the final media report of a relayed call (Session.Close).
type CallStats struct {
	CallID          string   `json:"call_id"`
	Region          string   `json:"region,omitempty"`
	DurationSeconds float64  `json:"duration_s"`
	TimedOut        bool     `json:"timed_out,omitempty"`
	Caller          LegStats `json:"caller"`
	Agent           LegStats `json:"agent"`
}

func (l *legStats) snapshot() LegStats {
	exp, recv, reor := l.prevExp, l.prevRecv, l.prevReor
	if l.haveCur {
		exp += l.cur.expected()
		recv += l.cur.received
		reor += l.cur.reordered
	}
	out := LegStats{
		Packets: l.packets, Bytes: l.bytes, RTPPackets: l.rtpPackets, RTCPPackets: l.rtcpPkts,
		Expected: exp, Lost: int64(exp) - int64(recv), Reordered: reor,
		SSRCs: l.sources, RTTSamples: l.rttN,
		Ignored: l.foreign, Undeliverable: l.noDest, NotRTP: l.malformed,
	}
	if exp > 0 && out.Lost > 0 {
		out.LossRatio = math.Min(1, float64(out.Lost)/float64(exp))
	}
	if l.haveCur && l.cur.clock > 0 {
		out.ClockRate = l.cur.clock
		out.JitterMillis = l.cur.jitter / float64(l.cur.clock) * 1000
	}
	if l.jitterN > 0 {
		out.JitterMeanMs = l.jitterSumSec / float64(l.jitterN) * 1000
		out.JitterMaxMs = l.jitterMaxSec * 1000
	}
	if l.rttN > 0 {
		out.RTTMillis = l.rttSumSec / float64(l.rttN) * 1000
		out.RTTMaxMillis = l.rttMaxSec * 1000
	}
	if l.repHave {
		out.ReportedLoss = float64(l.repFraction) / 256
		out.ReportedLost = l.repLost
	}
	return out
}
