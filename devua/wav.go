package devua

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// SampleRate is the one rate the demo UAs use (G.711 narrowband).
const SampleRate = 8000

// maxWAVBytes caps what ReadWAV accepts (about 10 minutes at 8 kHz).
const maxWAVBytes = 10 << 20

// WAVWriter writes 8 kHz mono 16-bit PCM to a WAV file; the header's
// sizes are filled in by Close.
type WAVWriter struct {
	f *os.File
	n int64 // data bytes
}

// CreateWAV creates (or truncates) path.
func CreateWAV(path string) (*WAVWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("devua: create wav: %w", err)
	}
	w := &WAVWriter{f: f}
	if _, err := f.Write(wavHeader(0)); err != nil {
		f.Close()
		return nil, fmt.Errorf("devua: write wav: %w", err)
	}
	return w, nil
}

// Write appends samples.
func (w *WAVWriter) Write(pcm []int16) error {
	b := make([]byte, 2*len(pcm))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
	}
	n, err := w.f.Write(b)
	w.n += int64(n)
	return err
}

// Close writes the final sizes and closes the file. Later calls do nothing.
func (w *WAVWriter) Close() error {
	if w.f == nil {
		return nil
	}
	defer func() { w.f = nil }()
	_, err := w.f.WriteAt(wavHeader(w.n), 0)
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func wavHeader(dataBytes int64) []byte {
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(36 + dataBytes))
	b.WriteString("WAVEfmt ")
	le(uint32(16))
	le(uint16(1)) // PCM
	le(uint16(1)) // mono
	le(uint32(SampleRate))
	le(uint32(SampleRate * 2))
	le(uint16(2))
	le(uint16(16))
	b.WriteString("data")
	le(uint32(dataBytes))
	return b.Bytes()
}

// ErrWAVFormat is returned for a WAV file the demo UAs cannot play.
var ErrWAVFormat = errors.New("devua: wav: want 8000 Hz mono 16-bit PCM or G.711")

// ReadWAV reads an 8 kHz mono WAV file: 16-bit PCM, µ-law or A-law.
func ReadWAV(r io.Reader) ([]int16, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxWAVBytes+1))
	if err != nil {
		return nil, fmt.Errorf("devua: read wav: %w", err)
	}
	if len(b) > maxWAVBytes {
		return nil, fmt.Errorf("devua: wav: over %d bytes", maxWAVBytes)
	}
	return ParseWAV(b)
}

// ParseWAV decodes a WAV file held in memory (see ReadWAV).
func ParseWAV(b []byte) ([]int16, error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, fmt.Errorf("%w: not a RIFF/WAVE file", ErrWAVFormat)
	}
	var format, channels, bits uint16
	var rate uint32
	haveFmt := false
	for p := 12; p+8 <= len(b); {
		id, size := string(b[p:p+4]), int(binary.LittleEndian.Uint32(b[p+4:p+8]))
		p += 8
		if size < 0 || size > len(b)-p {
			if id == "data" { // a streamed file's data size may be unset
				size = len(b) - p
			} else {
				return nil, fmt.Errorf("%w: chunk %q runs past the end", ErrWAVFormat, id)
			}
		}
		body := b[p : p+size]
		switch id {
		case "fmt ":
			if size < 16 {
				return nil, fmt.Errorf("%w: short fmt chunk", ErrWAVFormat)
			}
			format = binary.LittleEndian.Uint16(body[0:])
			channels = binary.LittleEndian.Uint16(body[2:])
			rate = binary.LittleEndian.Uint32(body[4:])
			bits = binary.LittleEndian.Uint16(body[14:])
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, fmt.Errorf("%w: data before fmt", ErrWAVFormat)
			}
			if channels != 1 || rate != SampleRate {
				return nil, fmt.Errorf("%w: file has %d channels at %d Hz", ErrWAVFormat, channels, rate)
			}
			switch {
			case format == 1 && bits == 16:
				pcm := make([]int16, len(body)/2)
				for i := range pcm {
					pcm[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
				}
				return pcm, nil
			case format == 6 && bits == 8:
				return PCMA.Decode(nil, body), nil
			case format == 7 && bits == 8:
				return PCMU.Decode(nil, body), nil
			}
			return nil, fmt.Errorf("%w: format %d with %d bits", ErrWAVFormat, format, bits)
		}
		p += size + size&1 // chunks are padded to even sizes
	}
	return nil, fmt.Errorf("%w: no data chunk", ErrWAVFormat)
}
