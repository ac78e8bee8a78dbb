package webhook

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/url"
	"testing"
	"time"
)

// Twilio's published vectors (field-notes.md; twilio-node's and
// twilio-python's request validator tests).
const (
	twVecToken = "12345"
	twVecURL   = "https://mycompany.com/myapp.php?foo=1&bar=2"
)

func twVecParams() url.Values {
	return url.Values{
		"CallSid": {"CA1234567890ABCDE"},
		"Caller":  {"+14158675309"},
		"Digits":  {"1234"},
		"From":    {"+14158675309"},
		"To":      {"+18005551212"},
	}
}

func TestTwilioSignatureVectors(t *testing.T) {
	withReason := twVecParams()
	withReason.Set("ReasonConferenceEnded", "test")
	withReason.Set("Reason", "Participant")
	repeated, err := url.ParseQuery("Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234")
	if err != nil {
		t.Fatal(err)
	}
	const bodyHash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
	tests := []struct {
		name   string
		url    string
		params url.Values
		body   string
		want   string
	}{
		{"basic", twVecURL, twVecParams(), "", "RSOYDt4T1cUTdK1PDd93/VVr8B8="},
		{"reason", twVecURL, withReason, "", "vOEb5UThFn24KEfnOFLQY2AE5FY="},
		{"reason http", "http://mycompany.com/myapp.php?foo=1&bar=2", withReason, "", "n2xBNyzSW7rfYStDtOFiFMv7qNo="},
		{"json bodySHA256", twVecURL + "&bodySHA256=" + bodyHash, nil, `{"property": "value", "boolean": true}`, "a9nBmqA0ju/hNViExpshrM61xv4="},
		{"repeated", twVecURL, repeated, "", "IK+Dwps556ElfBT0I3Rgjkr1wJU="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := TwilioSignature(twVecToken, tc.url, tc.params); got != tc.want {
				t.Errorf("TwilioSignature = %s, want %s", got, tc.want)
			}
			if err := VerifyTwilio(twVecToken, tc.url, tc.want, tc.params, []byte(tc.body)); err != nil {
				t.Errorf("VerifyTwilio: %v", err)
			}
			if err := VerifyTwilio("54321", tc.url, tc.want, tc.params, []byte(tc.body)); !errors.Is(err, ErrBadSignature) {
				t.Errorf("VerifyTwilio with the wrong token = %v, want ErrBadSignature", err)
			}
		})
	}
}

func TestVerifyTwilioRefuses(t *testing.T) {
	const bodyHash = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
	good := "RSOYDt4T1cUTdK1PDd93/VVr8B8="
	changed := twVecParams()
	changed.Set("To", "+18005551213")
	extra := twVecParams()
	extra.Add("Digits", "9")
	tests := []struct {
		name    string
		token   string
		url     string
		sig     string
		params  url.Values
		body    string
		wantErr error
	}{
		{"missing", twVecToken, twVecURL, "", twVecParams(), "", ErrNoSignature},
		{"no token", "", twVecURL, good, twVecParams(), "", ErrNoKey},
		{"not base64", twVecToken, twVecURL, "!!!", twVecParams(), "", ErrBadSignature},
		{"short", twVecToken, twVecURL, "AAAA", twVecParams(), "", ErrBadSignature},
		{"changed param", twVecToken, twVecURL, good, changed, "", ErrBadSignature},
		{"added value", twVecToken, twVecURL, good, extra, "", ErrBadSignature},
		{"other path", twVecToken, "https://mycompany.com/other.php?foo=1&bar=2", good, twVecParams(), "", ErrBadSignature},
		{"body changed", twVecToken, twVecURL + "&bodySHA256=" + bodyHash, "a9nBmqA0ju/hNViExpshrM61xv4=", nil, `{"property": "value", "boolean": false}`, ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyTwilio(tc.token, tc.url, tc.sig, tc.params, []byte(tc.body))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("VerifyTwilio = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestVerifyTwilioDefaultPort(t *testing.T) {
	p := twVecParams()
	// Signed by Twilio without the port; we see it with the port, and back.
	sig := TwilioSignature(twVecToken, "https://mycompany.com/myapp.php?foo=1&bar=2", p)
	if err := VerifyTwilio(twVecToken, "https://mycompany.com:443/myapp.php?foo=1&bar=2", sig, p, nil); err != nil {
		t.Errorf("with :443: %v", err)
	}
	sig = TwilioSignature(twVecToken, "https://mycompany.com:443/myapp.php?foo=1&bar=2", p)
	if err := VerifyTwilio(twVecToken, "https://mycompany.com/myapp.php?foo=1&bar=2", sig, p, nil); err != nil {
		t.Errorf("without :443: %v", err)
	}
	sig = TwilioSignature(twVecToken, "https://mycompany.com:8443/myapp.php", p)
	if err := VerifyTwilio(twVecToken, "https://mycompany.com/myapp.php", sig, p, nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other port accepted: %v", err)
	}
}

// The field-notes vector: RFC 8032 test 1's seed.
const (
	txVecKey  = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
	txVecTS   = "1700000000"
	txVecBody = `{"data":{"event_type":"call.initiated"}}`
	txVecSig  = "MGVTDtGuYLW5kjFwnqNofgeDUyzsF7r4H1L6jz1lD6palyxYTP6fEPDmGoaV769eef2agFBoHmAp47aBRgOyAw=="
	txVecSeed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
)

func TestTelnyxSignatureVector(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tol := 5 * time.Minute
	if err := VerifyTelnyx(txVecKey, txVecSig, txVecTS, []byte(txVecBody), now, tol); err != nil {
		t.Fatalf("vector: %v", err)
	}
	// Our signer (used by tests) agrees with the vector.
	seed, _ := hex.DecodeString(txVecSeed)
	priv := ed25519.NewKeyFromSeed(seed)
	if got := base64.StdEncoding.EncodeToString(priv.Public().(ed25519.PublicKey)); got != txVecKey {
		t.Fatalf("public key from seed = %s", got)
	}
	if got := signTelnyx(priv, txVecTS, []byte(txVecBody)); got != txVecSig {
		t.Fatalf("signTelnyx = %s, want %s", got, txVecSig)
	}
	tests := []struct {
		name    string
		key     string
		sig     string
		ts      string
		body    string
		now     time.Time
		wantErr error
	}{
		{"4m59s late", txVecKey, txVecSig, txVecTS, txVecBody, now.Add(4*time.Minute + 59*time.Second), nil},
		{"5m early", txVecKey, txVecSig, txVecTS, txVecBody, now.Add(-5 * time.Minute), nil},
		{"5m1s late", txVecKey, txVecSig, txVecTS, txVecBody, now.Add(5*time.Minute + time.Second), ErrStaleTimestamp},
		{"5m1s early", txVecKey, txVecSig, txVecTS, txVecBody, now.Add(-5*time.Minute - time.Second), ErrStaleTimestamp},
		{"body changed", txVecKey, txVecSig, txVecTS, `{"data":{"event_type":"call.hangup"}}`, now, ErrBadSignature},
		{"timestamp changed", txVecKey, txVecSig, "1700000001", txVecBody, now, ErrBadSignature},
		{"missing sig", txVecKey, "", txVecTS, txVecBody, now, ErrNoSignature},
		{"missing ts", txVecKey, txVecSig, "", txVecBody, now, ErrNoSignature},
		{"no key", "", txVecSig, txVecTS, txVecBody, now, ErrNoKey},
		{"short key", "AAAA", txVecSig, txVecTS, txVecBody, now, ErrNoKey},
		{"sig not base64", txVecKey, "%%%", txVecTS, txVecBody, now, ErrBadSignature},
		{"ts not a number", txVecKey, txVecSig, "17e8", txVecBody, now, ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyTelnyx(tc.key, tc.sig, tc.ts, []byte(tc.body), tc.now, tol)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("VerifyTelnyx = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
