package devua

// G.711 µ-law (PCMU, RTP payload type 0) and A-law (PCMA, payload type 8),
// as in ITU-T G.711 and the public-domain Sun reference code (g711.c).
// Written out here because the algorithm is a few lines and no well-kept Go
// module offers it alone.

const (
	ulawBias = 0x84
	ulawClip = 32635
)

// EncodeULaw returns the µ-law byte for a 16-bit linear sample.
func EncodeULaw(s int16) byte {
	v := int(s)
	sign := 0
	if v < 0 {
		v = -v
		sign = 0x80
	}
	if v > ulawClip {
		v = ulawClip
	}
	v += ulawBias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// DecodeULaw returns the 16-bit linear sample of a µ-law byte.
func DecodeULaw(u byte) int16 {
	u = ^u
	t := (int(u&0x0f) << 3) + ulawBias
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(ulawBias - t)
	}
	return int16(t - ulawBias)
}

// EncodeALaw returns the A-law byte for a 16-bit linear sample.
func EncodeALaw(s int16) byte {
	v := int(s) >> 3 // 13-bit magnitude
	mask := byte(0xd5)
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}
	var seg int
	for seg = 0; seg < 8; seg++ {
		if v <= (0x1f<<seg)|((1<<seg)-1) && v < 0x20<<seg {
			break
		}
	}
	if seg >= 8 {
		return 0x7f ^ mask
	}
	a := byte(seg << 4)
	if seg < 2 {
		a |= byte(v>>1) & 0x0f
	} else {
		a |= byte(v>>seg) & 0x0f
	}
	return a ^ mask
}

// DecodeALaw returns the 16-bit linear sample of an A-law byte.
func DecodeALaw(a byte) int16 {
	a ^= 0x55
	t := int(a&0x0f) << 4
	seg := int(a&0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}

// Codec is a G.711 variant negotiated for a call.
type Codec struct {
	Name        string // "PCMU" or "PCMA"
	PayloadType uint8
}

// The two codecs the demo UAs speak, in order of preference.
var (
	PCMU = Codec{Name: "PCMU", PayloadType: 0}
	PCMA = Codec{Name: "PCMA", PayloadType: 8}
)

// Encode appends the codec's bytes for pcm to dst.
func (c Codec) Encode(dst []byte, pcm []int16) []byte {
	for _, s := range pcm {
		if c.PayloadType == PCMA.PayloadType {
			dst = append(dst, EncodeALaw(s))
		} else {
			dst = append(dst, EncodeULaw(s))
		}
	}
	return dst
}

// Decode appends the linear samples of payload to dst.
func (c Codec) Decode(dst []int16, payload []byte) []int16 {
	for _, b := range payload {
		if c.PayloadType == PCMA.PayloadType {
			dst = append(dst, DecodeALaw(b))
		} else {
			dst = append(dst, DecodeULaw(b))
		}
	}
	return dst
}
