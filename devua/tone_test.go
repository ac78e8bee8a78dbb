package devua

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func feed(d *Detector, pcm []int16) *Detector {
	for len(pcm) > 0 {
		n := min(len(pcm), 123) // not frame-aligned on purpose
		d.Write(pcm[:n])
		pcm = pcm[n:]
	}
	return d
}

func TestDetector(t *testing.T) {
	noise := make([]int16, SampleRate)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range noise {
		noise[i] = int16(r.IntN(6001) - 3000)
	}
	greeting, err := Greeting()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		hz    float64
		audio []int16
		heard bool
	}{
		{"tone at its frequency", 440, Tone(440, 1), true},
		{"tone through µ-law", 440, PCMU.Decode(nil, PCMU.Encode(nil, Tone(440, 1))), true},
		{"tone through A-law", 1000, PCMA.Decode(nil, PCMA.Encode(nil, Tone(1000, 1))), true},
		{"other tone", 440, Tone(1000, 1), false},
		{"noise is no tone", 440, noise, false},
		{"silence", 440, make([]int16, 2*SampleRate), false},
		{"silence, speech check", 0, make([]int16, 2*SampleRate), false},
		{"µ-law silence bytes, speech check", 0, PCMU.Decode(nil, bytes.Repeat([]byte{0xff}, 2*SampleRate)), false},
		{"too short a tone", 440, Tone(440, 0.2), false},
		{"recorded greeting, speech check", 0, PCMU.Decode(nil, PCMU.Encode(nil, greeting)), true},
	} {
		d := feed(&Detector{ToneHz: tc.hz}, tc.audio)
		if d.Heard() != tc.heard {
			t.Errorf("%s: heard %v (%d frames), want %v", tc.name, d.Heard(), d.Frames(), tc.heard)
		}
	}
}
