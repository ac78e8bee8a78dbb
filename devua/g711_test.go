package devua

import "testing"

// Known values from ITU-T G.711 (and the Sun reference code): silence,
// full scale and the sign bit.
func TestG711KnownValues(t *testing.T) {
	for _, tc := range []struct {
		s    int16
		ulaw byte
		alaw byte
	}{
		{0, 0xff, 0xd5},
		{-1, 0x7f, 0x55},
		{32767, 0x80, 0xaa},
		{-32768, 0x00, 0x2a},
		{1000, 0xce, 0xfa},
		{-1000, 0x4e, 0x7a},
	} {
		if got := EncodeULaw(tc.s); got != tc.ulaw {
			t.Errorf("EncodeULaw(%d) = %#x, want %#x", tc.s, got, tc.ulaw)
		}
		if got := EncodeALaw(tc.s); got != tc.alaw {
			t.Errorf("EncodeALaw(%d) = %#x, want %#x", tc.s, got, tc.alaw)
		}
	}
}

// Every code decodes to a sample that encodes back to the same code
// (µ-law's two zeros 0x7f/0xff aside), and a linear sample survives a
// round trip within the law's quantisation step (under 1/16 of the value).
func TestG711RoundTrip(t *testing.T) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		if got := EncodeULaw(DecodeULaw(b)); got != b && !(b == 0x7f && got == 0xff) {
			t.Errorf("µ-law %#x -> %d -> %#x", b, DecodeULaw(b), got)
		}
		if got := EncodeALaw(DecodeALaw(b)); got != b {
			t.Errorf("A-law %#x -> %d -> %#x", b, DecodeALaw(b), got)
		}
	}
	for s := -32768; s <= 32767; s += 7 {
		for _, c := range []Codec{PCMU, PCMA} {
			got := int(c.Decode(nil, c.Encode(nil, []int16{int16(s)}))[0])
			d := got - s
			if d < 0 {
				d = -d
			}
			a := s
			if a < 0 {
				a = -a
			}
			if d > a/16+36 {
				t.Fatalf("%s: %d -> %d (error %d)", c.Name, s, got, d)
			}
		}
	}
}
