package sip

import (
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// SIP INFO digits (issue 18): application/dtmf-relay bodies
// ("Signal=5\r\nDuration=160", the Cisco/SIPp form, Duration in ms) and
// application/dtmf bodies (the digit alone). Parsed by hand: two
// key=value lines need no library.

const (
	maxInfoBody      = 512 // a dtmf-relay body is ~30 bytes
	defaultInfoTone  = 160 * time.Millisecond
	minInfoTone      = 40 * time.Millisecond
	maxInfoTone      = 5 * time.Second
	ctDTMFRelay      = "application/dtmf-relay"
	ctDTMF           = "application/dtmf"
	infoDigitsAccept = "0123456789*#ABCD"
)

// isDTMFInfoType reports whether a Content-Type names a DTMF INFO body.
func isDTMFInfoType(ct string) bool {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	return strings.EqualFold(ct, ctDTMFRelay) || strings.EqualFold(ct, ctDTMF)
}

// parseDTMFInfo reads one digit and its duration from an INFO body of
// content type ct. ok false: not a digit callgate understands (flash,
// an empty or oversized body, garbage); the INFO is then forwarded as is.
func parseDTMFInfo(ct string, body []byte) (digit byte, dur time.Duration, ok bool) {
	if len(body) == 0 || len(body) > maxInfoBody {
		return 0, 0, false
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	dur = defaultInfoTone
	if strings.EqualFold(strings.TrimSpace(ct), ctDTMF) {
		return infoDigit(strings.TrimSpace(string(body)), dur)
	}
	var sig string
	haveSig := false
	for _, line := range strings.Split(string(body), "\n") {
		k, v, found := strings.Cut(line, "=")
		if !found {
			continue
		}
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch k {
		case "signal":
			if haveSig {
				return 0, 0, false // two signals in one INFO: ambiguous
			}
			sig, haveSig = v, true
		case "duration":
			ms, err := strconv.Atoi(v)
			if err != nil || ms <= 0 {
				continue // a bad duration keeps the default
			}
			dur = min(max(time.Duration(ms)*time.Millisecond, minInfoTone), maxInfoTone)
		}
	}
	if !haveSig {
		return 0, 0, false
	}
	return infoDigit(sig, dur)
}

// infoDigit maps a Signal value: a digit, or an RFC 4733 event number
// (10 = *, 11 = #, 12-15 = A-D) as some gateways send.
func infoDigit(sig string, dur time.Duration) (byte, time.Duration, bool) {
	switch len(sig) {
	case 1:
		d := sig[0]
		if d >= 'a' && d <= 'd' {
			d -= 'a' - 'A'
		}
		if strings.IndexByte(infoDigitsAccept, d) >= 0 {
			return d, dur, true
		}
	case 2:
		if n, err := strconv.Atoi(sig); err == nil && n >= 10 && n <= 15 {
			return infoDigitsAccept[n], dur, true
		}
	}
	return 0, 0, false
}

// dtmfRelayBody is the INFO body callgate sends for one digit.
func dtmfRelayBody(d byte, dur time.Duration) []byte {
	return []byte("Signal=" + string(d) + "\r\nDuration=" + strconv.Itoa(int(dur.Milliseconds())) + "\r\n")
}

// isSDPBody reports whether a message's body is SDP for the relay to
// rewrite: Content-Type application/sdp, or none given (RFC 3261 20.15
// lets a missing one default to the request's type; endpoints that omit
// it send SDP). An INFO's dtmf-relay body or any other type is left alone.
func isSDPBody(m interface{ ContentType() *sip.ContentTypeHeader }) bool {
	ct := m.ContentType()
	if ct == nil {
		return true
	}
	v := ct.Value()
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.EqualFold(strings.TrimSpace(v), "application/sdp")
}
