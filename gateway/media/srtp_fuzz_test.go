package media

import (
	"encoding/base64"
	"errors"
	"testing"

	"github.com/callgate/callgate/routing"
)

// FuzzParseCrypto: any a=crypto value parses or is ignored, never
// panics, and what parses formats back to itself.
func FuzzParseCrypto(f *testing.F) {
	k30 := base64.StdEncoding.EncodeToString(make([]byte, 30))
	for _, s := range []string{
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + k30,
		"1 AES_CM_128_HMAC_SHA1_32 inline:" + k30 + "|2^31|1:1",
		"2 AEAD_AES_128_GCM inline:" + base64.StdEncoding.EncodeToString(make([]byte, 28)),
		"1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + " KDR=1",
		"99999999999 AES_CM_128_HMAC_SHA1_80 inline:",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, ok := parseCrypto(v)
		if !ok {
			return
		}
		if len(c.key) != c.suite.keyLen+c.suite.saltLen {
			t.Fatalf("key of %d bytes for %s", len(c.key), c.suite.name)
		}
		back, ok := parseCrypto(c.value())
		if !ok || back.tag != c.tag || back.suite != c.suite || string(back.key) != string(c.key) {
			t.Fatalf("%q does not round-trip", v)
		}
	})
}

// FuzzSecureSDP: arbitrary SDP from the caller and the agent of a call
// whose legs may speak SRTP: no panic, and every error is malformed SDP
// (400) or the SRTP policy (488).
func FuzzSecureSDP(f *testing.F) {
	k30 := base64.StdEncoding.EncodeToString(make([]byte, 30))
	off := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + k30 + "\r\n"
	f.Add([]byte(off), []byte(off), true)
	f.Add([]byte("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 UDP/TLS/RTP/SAVP 0\r\na=fingerprint:sha-256 00\r\na=setup:actpass\r\n"), []byte(off), false)
	f.Add([]byte(off), []byte("v=0\r\n"), true)
	m, _ := runTestManager(f, nil)
	f.Fuzz(func(t *testing.T, offer, answer []byte, mixed bool) {
		s, err := m.NewSession("fuzz", nil)
		if err != nil {
			t.Skip(err)
		}
		defer s.Close()
		s.SetSRTP(routing.SRTPCall{Caller: routing.SRTPOptional, Agent: routing.SRTPOptional, CallerTLS: true, AgentTLS: true, AllowMixed: mixed})
		check := func(err error) {
			if err != nil && !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrSRTPPolicy) {
				t.Fatalf("unexpected error %v", err)
			}
		}
		_, err = s.RewriteOffer(offer)
		check(err)
		_, err = s.RewriteAnswer(answer)
		check(err)
		_, err = s.RewriteAnswer(answer)
		check(err)
	})
}

// FuzzSRTPPacket: arbitrary datagrams from the caller's address to an
// SRTP leg: no panic, and none is forwarded (none is authentic).
func FuzzSRTPPacket(f *testing.F) {
	f.Add([]byte{0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3}, false)
	f.Add([]byte{0x81, 0xc8, 0, 6, 0, 0, 0, 1}, true)
	f.Add([]byte{0x80, 0xc9, 0, 1, 0, 0, 0, 1, 0x80, 0, 0, 0}, false)
	f.Add([]byte{}, false)
	m, _ := runTestManager(f, nil)
	c, err := setupSecureCall(f, m, tlsBoth, "RTP/SAVP", "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80")
	if err != nil {
		f.Fatal(err)
	}
	l := c.s.caller
	sc := new(scratch)
	f.Fuzz(func(t *testing.T, b []byte, onRTCP bool) {
		if len(b) > maxPacket {
			b = b[:maxPacket]
		}
		before := c.s.Stats().Caller
		c.s.ioMu.Lock()
		l.packet(append([]byte(nil), b...), c.caller.addr, onRTCP, sc)
		c.s.ioMu.Unlock()
		after := c.s.Stats().Caller
		if after.Packets != before.Packets {
			t.Fatalf("a forged datagram was accepted")
		}
		if after.SRTPAuthFailures+after.SRTPReplays != before.SRTPAuthFailures+before.SRTPReplays+1 {
			t.Fatalf("a dropped datagram was not counted")
		}
	})
}
