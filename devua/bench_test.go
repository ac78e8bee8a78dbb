package devua

import "testing"

// A 20 ms frame through µ-law and back, and through the greeting check:
// the per-packet cost of the demo UAs' audio path.
func BenchmarkFrame(b *testing.B) {
	pcm := Tone(440, 0.02)
	enc := make([]byte, 0, FrameSamples)
	dec := make([]int16, 0, FrameSamples)
	d := &Detector{ToneHz: 440}
	b.ReportAllocs()
	for b.Loop() {
		enc = PCMU.Encode(enc[:0], pcm)
		dec = PCMU.Decode(dec[:0], enc)
		d.Write(dec)
	}
}
