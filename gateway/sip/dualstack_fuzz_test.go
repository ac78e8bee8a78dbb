package sip

import (
	"strings"
	"testing"
)

// FuzzSDPFamily: sdpV6 (the family of an SDP's first c= line, from a
// caller's untrusted body) never panics and agrees with a plain reading
// of the lines. Seeds in testdata/fuzz/FuzzSDPFamily.
func FuzzSDPFamily(f *testing.F) {
	f.Add([]byte(testSDP))
	f.Add([]byte("v=0\r\nc=IN IP6 ::1\r\n"))
	f.Add([]byte("v=0\nm=audio 1 RTP/AVP 0\nc=IN IP4 192.0.2.1\nc=IN IP6 2001:db8::1\n"))
	f.Add([]byte("c=IN IP6 "))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, body []byte) {
		v6, ok := sdpV6(body)
		wantV6, wantOK := false, false
		for _, l := range strings.Split(string(body), "\n") {
			l = strings.TrimRight(l, "\r")
			if strings.HasPrefix(l, "c=IN IP6 ") {
				wantV6, wantOK = true, true
				break
			}
			if strings.HasPrefix(l, "c=IN IP4 ") {
				wantOK = true
				break
			}
		}
		if v6 != wantV6 || ok != wantOK {
			t.Fatalf("sdpV6(%q) = %v, %v; want %v, %v", body, v6, ok, wantV6, wantOK)
		}
	})
}
