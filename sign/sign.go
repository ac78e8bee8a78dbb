// Package sign signs what callgate sends to a customer (routing hook
// requests, messaging deliveries) and verifies such signatures:
//
//	X-Callgate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + "." + body)>
//
// The timestamp bounds replays; a receiver recomputes the HMAC over the
// exact body bytes and compares in constant time.
package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// HeaderName is the HTTP header that carries the signature.
const HeaderName = "X-Callgate-Signature"

// Header returns the signature header value for body sent at t.
func Header(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify.
var (
	ErrMalformed = errors.New("sign: malformed signature header: want t=<unix>,v1=<hex>")
	ErrExpired   = errors.New("sign: signature timestamp outside the tolerance")
	ErrMismatch  = errors.New("sign: signature does not match the body")
)

// Verify checks header against body. The timestamp must be within
// tolerance of now (0: not checked). Any v1 entry may match (secret
// rotation may send several).
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrMalformed
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return ErrMalformed
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrMalformed
	}
	if tolerance > 0 {
		d := now.Sub(time.Unix(sec, 0))
		if d < -tolerance || d > tolerance {
			return ErrExpired
		}
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrMismatch
}
