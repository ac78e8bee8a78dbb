package devua

import (
	_ "embed"
	"sync"
)

//go:generate go run ./internal/mkgreeting greeting.wav

// greetingWAV is the demo agent's spoken greeting: recorded once with
// espeak-ng by internal/mkgreeting, 8 kHz µ-law WAV.
//
//go:embed greeting.wav
var greetingWAV []byte

var greeting = sync.OnceValues(func() ([]int16, error) { return ParseWAV(greetingWAV) })

// Greeting returns the recorded greeting as 8 kHz linear samples.
func Greeting() ([]int16, error) { return greeting() }
