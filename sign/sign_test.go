package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"
)

// TestHeaderIsHMACOfTimestampDotBody checks the header against an
// independent computation of the documented formula.
func TestHeaderIsHMACOfTimestampDotBody(t *testing.T) {
	secret, body := []byte("whsec_test"), []byte(`{"call_id":"abc"}`)
	at := time.Unix(1767225600, 0)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("1767225600." + string(body)))
	want := "t=1767225600,v1=" + hex.EncodeToString(m.Sum(nil))
	if got := Header(secret, at, body); got != want {
		t.Fatalf("Header = %q, want %q", got, want)
	}
	if err := Verify(secret, want, body, at.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	secret, body := []byte("s"), []byte("b")
	at := time.Unix(1767225600, 0)
	h := Header(secret, at, body)
	cases := []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"other body", secret, h, []byte("c"), at, ErrMismatch},
		{"other secret", []byte("x"), h, body, at, ErrMismatch},
		{"too old", secret, h, body, at.Add(10 * time.Minute), ErrExpired},
		{"no v1", secret, "t=1767225600", body, at, ErrMalformed},
		{"bad hex", secret, "t=1767225600,v1=zz", body, at, ErrMalformed},
		{"garbage", secret, "nonsense", body, at, ErrMalformed},
	}
	for _, c := range cases {
		if err := Verify(c.secret, c.header, c.body, c.now, 5*time.Minute); err != c.want {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}
