// Command mkgreeting makes devua/greeting.wav, the demo agent's greeting:
// espeak-ng speaks the text (22050 Hz), which is low-passed and resampled
// to 8000 Hz and stored as µ-law WAV. Run once (`go generate ./devua`);
// the result is committed.
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strings"

	"github.com/callgate/callgate/devua"
)

const text = "Hello, this is the callgate demo agent. Your call works. Say something and you will hear it back."

func main() {
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "mkgreeting:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	raw, err := exec.Command("espeak-ng", "-v", "en-us", "-s", "150", "--stdout", text).Output()
	if err != nil {
		return fmt.Errorf("espeak-ng: %w", err)
	}
	in, rate, err := pcm16(raw)
	if err != nil {
		return err
	}
	// Windowed-sinc low-pass at 3.4 kHz, evaluated at each output instant.
	const taps = 64
	cut := 3400.0 / float64(rate)
	n := int(float64(len(in)) * devua.SampleRate / float64(rate))
	ulaw := make([]byte, n)
	for i := range ulaw {
		t := float64(i) * float64(rate) / devua.SampleRate
		c := int(t)
		var acc float64
		for k := c - taps/2; k <= c+taps/2; k++ {
			if k < 0 || k >= len(in) {
				continue
			}
			x := t - float64(k)
			h := 2 * cut
			if x != 0 {
				h = math.Sin(2*math.Pi*cut*x) / (math.Pi * x)
			}
			w := 0.5 + 0.5*math.Cos(math.Pi*x/(taps/2+1)) // Hann
			acc += float64(in[k]) * h * w
		}
		ulaw[i] = devua.EncodeULaw(int16(max(-32768, min(32767, acc))))
	}
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(4 + 26 + 8 + len(ulaw)))
	b.WriteString("WAVEfmt ")
	le(uint32(18))
	le(uint16(7)) // µ-law
	le(uint16(1))
	le(uint32(devua.SampleRate))
	le(uint32(devua.SampleRate))
	le(uint16(1))
	le(uint16(8))
	le(uint16(0))
	b.WriteString("data")
	le(uint32(len(ulaw)))
	b.Write(ulaw)
	return os.WriteFile(out, b.Bytes(), 0o644)
}

// pcm16 reads espeak-ng's mono 16-bit WAV (its header sizes may be unset).
func pcm16(b []byte) ([]int16, int, error) {
	if len(b) < 44 || !strings.HasPrefix(string(b), "RIFF") {
		return nil, 0, fmt.Errorf("espeak-ng output is not WAV")
	}
	rate := int(binary.LittleEndian.Uint32(b[24:]))
	i := bytes.Index(b, []byte("data"))
	b = b[i+8:]
	s := make([]int16, len(b)/2)
	for k := range s {
		s[k] = int16(binary.LittleEndian.Uint16(b[2*k:]))
	}
	return s, rate, nil
}
