package devua

import "math"

// FrameSamples is one 20 ms packet of audio at 8 kHz.
const FrameSamples = SampleRate / 50

// Tone returns d seconds of a sine at hz (amplitude about -10 dBFS).
func Tone(hz float64, seconds float64) []int16 {
	n := int(seconds * SampleRate)
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16(10000 * math.Sin(2*math.Pi*hz*float64(i)/SampleRate))
	}
	return pcm
}

// goertzel returns the power of frequency hz in x, normalised so that a
// full-scale sine at hz gives about 0.25 (the same scale as meanSquare/2).
func goertzel(x []int16, hz float64) float64 {
	w := 2 * math.Pi * hz / SampleRate
	coeff := 2 * math.Cos(w)
	var s1, s2 float64
	for _, v := range x {
		s0 := float64(v)/32768 + coeff*s1 - s2
		s2, s1 = s1, s0
	}
	p := s1*s1 + s2*s2 - coeff*s1*s2
	n := float64(len(x))
	return p / (n * n)
}

// meanSquare is the frame's power (full-scale sine: 0.5).
func meanSquare(x []int16) float64 {
	var e float64
	for _, v := range x {
		f := float64(v) / 32768
		e += f * f
	}
	return e / float64(len(x))
}

// Thresholds of the greeting checks.
const (
	// minPower is the least power of a frame that counts as sound
	// (about -40 dBFS; G.711 silence and line noise are far below).
	minPower = 1e-4
	// toneShare is the least share of a frame's power at the tone.
	toneShare = 0.6
	// heardFrames is how many 20 ms frames of the greeting must be found
	// (0.4 s).
	heardFrames = 20
)

// Detector decides whether a greeting was heard in received audio: with
// ToneHz set, frames whose power is mostly at that frequency (Goertzel);
// otherwise frames of speech-band sound (power above -40 dBFS).
type Detector struct {
	ToneHz float64

	buf    []int16
	frames int // frames that matched
	quiet  int // consecutive frames below minPower, up to now
}

// Write feeds received samples.
func (d *Detector) Write(pcm []int16) {
	d.buf = append(d.buf, pcm...)
	for len(d.buf) >= FrameSamples {
		f := d.buf[:FrameSamples]
		if d.match(f) {
			d.frames++
		}
		if meanSquare(f) < minPower {
			d.quiet++
		} else {
			d.quiet = 0
		}
		d.buf = d.buf[FrameSamples:]
	}
	if cap(d.buf) > 8*FrameSamples {
		d.buf = append([]int16(nil), d.buf...)
	}
}

func (d *Detector) match(f []int16) bool {
	p := meanSquare(f)
	if p < minPower {
		return false
	}
	if d.ToneHz == 0 {
		return true
	}
	// A sine of power p gives goertzel ≈ p/2 at its frequency.
	return 2*goertzel(f, d.ToneHz) >= toneShare*p
}

// Frames returns how many 20 ms frames matched so far.
func (d *Detector) Frames() int { return d.frames }

// Quiet returns how many 20 ms frames in a row, up to the last, were quiet.
func (d *Detector) Quiet() int { return d.quiet }

// Heard reports whether enough of the greeting was found.
func (d *Detector) Heard() bool { return d.frames >= heardFrames }
