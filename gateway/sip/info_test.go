package sip

import (
	"testing"
	"time"
)

func TestParseDTMFInfo(t *testing.T) {
	for _, tc := range []struct {
		ct, body string
		digit    byte
		dur      time.Duration
		ok       bool
	}{
		{"application/dtmf-relay", "Signal=5\r\nDuration=160\r\n", '5', 160 * time.Millisecond, true},
		{"Application/DTMF-Relay; charset=x", "signal = #\nduration= 250", '#', 250 * time.Millisecond, true},
		{"application/dtmf-relay", "Signal=*\r\n", '*', defaultInfoTone, true},
		{"application/dtmf-relay", "Signal=11\r\nDuration=100", '#', 100 * time.Millisecond, true}, // event number
		{"application/dtmf-relay", "Signal=d\r\nDuration=10", 'D', minInfoTone, true},
		{"application/dtmf-relay", "Signal=1\r\nDuration=999999", '1', maxInfoTone, true},
		{"application/dtmf-relay", "Signal=1\r\nDuration=abc", '1', defaultInfoTone, true},
		{"application/dtmf", "7\r\n", '7', defaultInfoTone, true},
		{"application/dtmf-relay", "Signal=16\r\nDuration=100", 0, 0, false}, // flash
		{"application/dtmf-relay", "Signal=1\r\nSignal=2", 0, 0, false},
		{"application/dtmf-relay", "Duration=100", 0, 0, false},
		{"application/dtmf-relay", "", 0, 0, false},
		{"application/dtmf", "12", 'A', defaultInfoTone, true}, // event number 12
		{"application/dtmf", "123", 0, 0, false},
		{"application/dtmf", "x", 0, 0, false},
	} {
		d, dur, ok := parseDTMFInfo(tc.ct, []byte(tc.body))
		if d != tc.digit || dur != tc.dur || ok != tc.ok {
			t.Errorf("%q %q: got %q %v %v, want %q %v %v", tc.ct, tc.body, d, dur, ok, tc.digit, tc.dur, tc.ok)
		}
	}
	big := make([]byte, maxInfoBody+1)
	if _, _, ok := parseDTMFInfo(ctDTMFRelay, big); ok {
		t.Error("oversized body accepted")
	}
	for ct, want := range map[string]bool{"application/dtmf-relay": true, "application/DTMF": true, "application/sdp": false, "text/plain": false, "application/dtmf-relayx": false} {
		if isDTMFInfoType(ct) != want {
			t.Errorf("isDTMFInfoType(%q) != %v", ct, want)
		}
	}
}

// FuzzParseDTMFInfo: any INFO body gives a valid digit and a bounded
// duration, or nothing; it never panics.
func FuzzParseDTMFInfo(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{ctDTMFRelay, "Signal=5\r\nDuration=160\r\n"},
		{ctDTMFRelay, "Signal=11\nDuration=-1"},
		{ctDTMF, "#"},
		{ctDTMFRelay, "Signal==\r\n=\r\n"},
		{"application/dtmf-relay;x=y", "signal= A \r\nduration=99999999999999999999"},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		d, dur, ok := parseDTMFInfo(ct, body)
		if !ok {
			return
		}
		if d == 0 || !containsByte(infoDigitsAccept, d) {
			t.Fatalf("digit %q", d)
		}
		if dur < minInfoTone || dur > maxInfoTone {
			t.Fatalf("duration %v", dur)
		}
		if got := dtmfRelayBody(d, dur); len(got) == 0 {
			t.Fatal("no body")
		}
	})
}

func containsByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}
