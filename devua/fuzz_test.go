package devua

import (
	"bytes"
	"testing"
)

// FuzzParseSDP: any body gives media to use or ErrSDP, never a panic; what
// it accepts has a port, a codec we speak and a known direction.
func FuzzParseSDP(f *testing.F) {
	f.Add(buildSDP(mustUDP("127.0.0.1:4000"), 1, 1, []Codec{PCMU, PCMA}, telephoneEvent, "sendrecv"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\na=inactive\r\n"))
	f.Add([]byte("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP6 ::1\r\na=sendonly\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := parseSDP(body)
		if err != nil {
			return
		}
		if m.addr == nil || m.addr.Port <= 0 || len(m.codecs) == 0 {
			t.Fatalf("accepted %q as %+v", body, m)
		}
		switch m.direction {
		case "sendrecv", "sendonly", "recvonly", "inactive":
		default:
			t.Fatalf("direction %q", m.direction)
		}
	})
}

// FuzzParseWAV: any file gives samples or an error, never a panic, and a
// file we write reads back the same.
func FuzzParseWAV(f *testing.F) {
	f.Add(greetingWAV[:200])
	f.Add(append(wavHeader(8), 1, 0, 2, 0, 3, 0, 0xff, 0xff))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEdata\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pcm, err := ParseWAV(b)
		if err != nil {
			return
		}
		if len(pcm) > len(b) {
			t.Fatalf("%d samples from %d bytes", len(pcm), len(b))
		}
		round := append(wavHeader(int64(2*len(pcm))), le16(pcm)...)
		back, err := ParseWAV(round)
		if err != nil || len(back) != len(pcm) || !bytes.Equal(le16(back), le16(pcm)) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func le16(pcm []int16) []byte {
	b := make([]byte, 0, 2*len(pcm))
	for _, s := range pcm {
		b = append(b, byte(s), byte(uint16(s)>>8))
	}
	return b
}
