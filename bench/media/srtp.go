//go:build linux

package main

// -srtp: every call is SRTP on both legs (SDES, AES_CM_128_HMAC_SHA1_80):
// the callers and agents encrypt what they send, the relay decrypts,
// authenticates and re-encrypts every packet under its own keys. The
// payload is then unreadable to the receivers, so the send time and
// stream id travel in the RTP header, which SRTP leaves in clear: the
// timestamp field holds the send time in microseconds (mod 2^32) and the
// SSRC the stream id + 1. The direct baseline encrypts the same way, so
// the difference is what the relay adds.

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/srtp/v3"

	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

var srtpMode bool

const benchSuite = "AES_CM_128_HMAC_SHA1_80"

// benchKey is the SRTP master key||salt a side of call i sends with.
// Both processes derive it (a benchmark's keys need not be secret).
func benchKey(side string, call int) []byte {
	h := sha256.Sum256([]byte(fmt.Sprintf("callgate-bench-srtp/%s/%d", side, call)))
	return h[:30]
}

func cryptoAttr(tag int, key []byte) string {
	return fmt.Sprintf("a=crypto:%d %s inline:%s\r\n", tag, benchSuite, base64.StdEncoding.EncodeToString(key))
}

// srtpOpens counts the sessions opened by this relay process: call i of
// a step is the i-th open.
var srtpOpens int

// openSecureSession is openSession with SRTP on both legs: the caller
// offers RTP/SAVP with its key, the agent answers the relay's tag 1
// (AES_CM_128_HMAC_SHA1_80) with its own.
func openSecureSession(m *media.Manager, id string, caller, agent netip.AddrPort) (toAgent, toCaller netip.AddrPort, err error) {
	call := srtpOpens
	srtpOpens++
	s, err := m.NewSession(id, nil)
	if err != nil {
		return toAgent, toCaller, err
	}
	s.SetSRTP(routing.SRTPCall{Caller: routing.SRTPRequired, Agent: routing.SRTPRequired, CallerTLS: true, AgentTLS: true})
	secure := func(b, key []byte) []byte {
		return append([]byte(strings.Replace(string(b), "RTP/AVP", "RTP/SAVP", 1)), cryptoAttr(1, key)...)
	}
	off, err := s.RewriteOffer(secure(sdpFor(caller), benchKey("caller", call)))
	if err != nil {
		return toAgent, toCaller, err
	}
	ans, err := s.RewriteAnswer(secure(sdpFor(agent), benchKey("agent", call)))
	if err != nil {
		return toAgent, toCaller, err
	}
	if toAgent, err = audioAddr(ans); err != nil {
		return toAgent, toCaller, err
	}
	toCaller, err = audioAddr(off)
	return toAgent, toCaller, err
}

// streamSRTP are the senders' contexts by stream id (2i: caller of call
// i, 2i+1: its agent); each is used by one sender thread only.
var streamSRTP []*srtp.Context

func setupSRTP(calls int) error {
	streamSRTP = make([]*srtp.Context, 2*calls)
	for i := 0; i < calls; i++ {
		for j, side := range []string{"caller", "agent"} {
			k := benchKey(side, i)
			c, err := srtp.CreateContext(k[:16], k[16:], srtp.ProtectionProfileAes128CmHmacSha1_80)
			if err != nil {
				return err
			}
			streamSRTP[2*i+j] = c
		}
	}
	return nil
}

// sealBench stamps pkt's header (send time, stream) and encrypts it into
// dst for stream id.
func sealBench(id uint32, pkt, dst []byte) []byte {
	binary.BigEndian.PutUint32(pkt[4:], uint32(time.Now().UnixNano()/1000))
	binary.BigEndian.PutUint32(pkt[8:], id+1)
	out, err := streamSRTP[id].EncryptRTP(dst[:0], pkt, nil)
	if err != nil {
		return nil
	}
	return out
}

// headerStamp reads the send time (ns) and stream id from an SRTP
// packet's header, given the time it arrived (ns).
func headerStamp(b []byte, arrivedNs int64) (sentNs int64, id uint32) {
	ts := binary.BigEndian.Uint32(b[4:])
	nowUs := arrivedNs / 1000
	d := uint32(nowUs) - ts // mod 2^32
	return (nowUs - int64(d)) * 1000, binary.BigEndian.Uint32(b[8:]) - 1
}
