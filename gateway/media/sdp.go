package media

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// sdpInfo is what the relay learns from one side's SDP.
type sdpInfo struct {
	rtp    netip.AddrPort // where that side wants RTP (invalid: unknown/on hold)
	rtcp   netip.AddrPort // where it wants RTCP
	mux    bool           // a=rtcp-mux
	clocks map[uint8]uint32
	fmts   []uint8 // the m= line's payload types (cn.go)
}

// iceAttrs are removed from rewritten SDP: the relay does not do ICE,
// and candidates would let the endpoints bypass it.
var iceAttrs = map[string]bool{
	"candidate": true, "remote-candidates": true, "end-of-candidates": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true,
	"ice-mismatch": true, "ice-pacing": true,
}

// attrKey normalises an attribute name (case, stray whitespace such as a
// doubled CR).
func attrKey(k string) string { return strings.ToLower(strings.TrimSpace(k)) }

func dropICE(attrs []sdp.Attribute) []sdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		if !iceAttrs[attrKey(a.Key)] {
			out = append(out, a)
		}
	}
	return out
}

// rewriteSDP parses raw, records the sender's media address, and points
// the first active audio stream at local (RTP) / local+1 (RTCP), with
// advertise in c= and o=. Other active streams are disabled (port 0):
// the relay anchors one audio stream.
func rewriteSDP(raw []byte, advertise netip.Addr, localRTP, localRTCP uint16) ([]byte, *sdpInfo, error) {
	if len(raw) == 0 {
		return nil, nil, &sdpError{what: "empty body"}
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(raw); err != nil {
		return nil, nil, &sdpError{what: "parse", err: err}
	}
	idx := -1
	for i, md := range sd.MediaDescriptions {
		if md == nil {
			continue
		}
		if md.MediaName.Port.Value < 0 || md.MediaName.Port.Value > 65535 {
			return nil, nil, &sdpError{what: fmt.Sprintf("m= port %d out of range", md.MediaName.Port.Value)}
		}
		if idx < 0 && strings.EqualFold(md.MediaName.Media, "audio") && md.MediaName.Port.Value != 0 {
			idx = i
		}
	}
	if idx < 0 {
		return nil, nil, &sdpError{what: "no active audio stream (m=audio with a port)"}
	}
	md := sd.MediaDescriptions[idx]

	conn := md.ConnectionInformation
	if conn == nil {
		conn = sd.ConnectionInformation
	}
	if conn == nil || conn.Address == nil {
		return nil, nil, &sdpError{what: "no connection address (c=) for the audio stream"}
	}
	info := &sdpInfo{clocks: make(map[uint8]uint32), fmts: parseFormats(md.MediaName.Formats)}
	port := md.MediaName.Port.Value
	// An address we cannot use (hostname, 0.0.0.0 hold, multicast) leaves
	// the peer unknown: the leg then waits for latching.
	if ip, err := netip.ParseAddr(conn.Address.Address); err == nil && !ip.IsUnspecified() && !ip.IsMulticast() {
		ip = ip.Unmap()
		info.rtp = netip.AddrPortFrom(ip, uint16(port))
		info.rtcp = netip.AddrPortFrom(ip, uint16(port+1))
	} else if err != nil && !looksLikeHost(conn.Address.Address) {
		return nil, nil, &sdpError{what: fmt.Sprintf("bad connection address %q", conn.Address.Address)}
	}

	for _, a := range md.Attributes {
		switch attrKey(a.Key) {
		case "rtcp":
			// a=rtcp:<port> [IN IP4 <addr>]  (RFC 3605)
			f := strings.Fields(a.Value)
			if len(f) == 0 {
				return nil, nil, &sdpError{what: "empty a=rtcp"}
			}
			p, err := strconv.Atoi(f[0])
			if err != nil || p <= 0 || p > 65535 {
				return nil, nil, &sdpError{what: fmt.Sprintf("bad a=rtcp port %q", f[0])}
			}
			ip := info.rtp.Addr()
			if len(f) >= 4 {
				if x, err := netip.ParseAddr(f[3]); err == nil && !x.IsUnspecified() {
					ip = x.Unmap()
				}
			}
			if ip.IsValid() {
				info.rtcp = netip.AddrPortFrom(ip, uint16(p))
			}
		case "rtcp-mux":
			info.mux = true
		case "rtpmap":
			// a=rtpmap:<pt> <encoding>/<clock>[/<channels>]
			f := strings.Fields(a.Value)
			if len(f) < 2 {
				return nil, nil, &sdpError{what: fmt.Sprintf("bad a=rtpmap %q", a.Value)}
			}
			pt, err := strconv.Atoi(f[0])
			if err != nil || pt < 0 || pt > 127 {
				return nil, nil, &sdpError{what: fmt.Sprintf("bad a=rtpmap payload type %q", f[0])}
			}
			enc := strings.Split(f[1], "/")
			if len(enc) < 2 {
				return nil, nil, &sdpError{what: fmt.Sprintf("bad a=rtpmap %q", a.Value)}
			}
			clk, err := strconv.ParseUint(enc[1], 10, 32)
			if err != nil || clk == 0 {
				return nil, nil, &sdpError{what: fmt.Sprintf("bad a=rtpmap clock rate %q", enc[1])}
			}
			if clk&clockEvent != 0 {
				break // no codec clocks at 2 GHz; keep the flag bit free
			}
			if strings.EqualFold(enc[0], "telephone-event") {
				clk |= clockEvent
			}
			info.clocks[uint8(pt)] = uint32(clk)
		}
	}

	// Rewrite.
	adv := advertise.Unmap()
	addrType := "IP4"
	if !adv.Is4() {
		addrType = "IP6"
	}
	setConn := func(c *sdp.ConnectionInformation) {
		c.NetworkType = "IN"
		c.AddressType = addrType
		c.Address = &sdp.Address{Address: adv.String()}
	}
	if sd.ConnectionInformation != nil {
		setConn(sd.ConnectionInformation)
	}
	if md.ConnectionInformation != nil {
		setConn(md.ConnectionInformation)
	}
	sd.Origin.NetworkType = "IN"
	sd.Origin.AddressType = addrType
	sd.Origin.UnicastAddress = adv.String()
	sd.Attributes = dropICE(sd.Attributes)
	md.MediaName.Port = sdp.RangedPort{Value: int(localRTP)}
	md.Attributes = dropICE(md.Attributes)
	for i := range md.Attributes {
		if attrKey(md.Attributes[i].Key) == "rtcp" {
			md.Attributes[i].Value = fmt.Sprintf("%d IN %s %s", localRTCP, addrType, adv)
		}
	}
	for i, other := range sd.MediaDescriptions {
		if i != idx && other != nil && other.MediaName.Port.Value != 0 {
			other.MediaName.Port = sdp.RangedPort{Value: 0}
			other.Attributes = dropICE(other.Attributes)
		}
	}
	out, err := sd.Marshal()
	if err != nil {
		return nil, nil, &sdpError{what: "marshal", err: err}
	}
	return out, info, nil
}

// looksLikeHost reports whether s could be a domain name (RFC 4566 allows
// an FQDN in c=). The relay does not resolve it; the leg latches instead.
func looksLikeHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
		default:
			return false
		}
	}
	return strings.ContainsAny(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
}

// clockEvent marks, in a clock table entry, a payload type that carries
// RFC 4733 events (telephone-event): all packets of one DTMF digit share
// the timestamp of its start, so they count for loss but not for jitter.
const clockEvent = 1 << 31

// staticClock holds RFC 3551 static payload type clock rates.
var staticClock = func() (t [128]uint32) {
	for _, pt := range []int{0, 3, 4, 5, 7, 8, 9, 12, 13, 15, 18} {
		t[pt] = 8000
	}
	t[6] = 16000
	t[10], t[11] = 44100, 44100
	t[16], t[17] = 11025, 22050
	for _, pt := range []int{14, 25, 26, 28, 31, 32, 33, 34} {
		t[pt] = 90000
	}
	return t
}()

// clockTable merges payload type clock rates: static ones, then those of
// the other side's SDP, then those of the receiving side's SDP (the PT
// numbers a sender uses are the ones its peer advertised).
func clockTable(receiver, other *sdpInfo) *[128]uint32 {
	t := staticClock
	for _, in := range []*sdpInfo{other, receiver} {
		if in == nil {
			continue
		}
		for pt, c := range in.clocks {
			if pt < 128 {
				t[pt] = c
			}
		}
	}
	return &t
}
