package webhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Signature errors. Handlers map all of them to 403.
var (
	ErrNoSignature    = errors.New("webhook: missing signature")
	ErrBadSignature   = errors.New("webhook: signature does not match")
	ErrNoKey          = errors.New("webhook: no key to verify the signature with")
	ErrStaleTimestamp = errors.New("webhook: timestamp too far from now")
)

// TwilioSignature returns the X-Twilio-Signature Twilio computes for a
// request to fullURL (scheme, host, path and query exactly as configured
// at Twilio) with the POST parameters params: base64(HMAC-SHA1(authToken,
// fullURL + name1 + value1 + name2 + value2 ...)), names sorted by byte
// order, and for a repeated name its distinct values sorted (as Twilio's
// own libraries do). For a JSON body pass nil params; fullURL then carries
// bodySHA256.
func TwilioSignature(authToken, fullURL string, params url.Values) string {
	mac := hmac.New(sha1.New, []byte(authToken))
	mac.Write([]byte(fullURL))
	writeTwilioParams(mac, params)
	var sum [sha1.Size]byte
	return base64.StdEncoding.EncodeToString(mac.Sum(sum[:0]))
}

type byteWriter interface{ Write([]byte) (int, error) }

func writeTwilioParams(w byteWriter, params url.Values) {
	w.Write(appendTwilioParams(nil, params))
}

func appendTwilioParams(dst []byte, params url.Values) []byte {
	if len(params) == 0 {
		return dst
	}
	var kbuf [32]string
	keys := kbuf[:0]
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vals := params[k]
		if len(vals) > 1 {
			vals = slices.Clone(vals)
			slices.Sort(vals)
			vals = slices.Compact(vals)
		}
		for _, v := range vals {
			dst = append(dst, k...)
			dst = append(dst, v...)
		}
	}
	return dst
}

// VerifyTwilio checks sig (the X-Twilio-Signature header) for a request
// to fullURL. When fullURL's query has bodySHA256 (Twilio's JSON bodies)
// the signature covers the URL alone and body must hash to that value;
// otherwise it covers the URL and params. Like Twilio's libraries it also
// accepts the URL with the default port added or removed. Comparisons are
// constant-time.
func VerifyTwilio(authToken, fullURL, sig string, params url.Values, body []byte) error {
	return verifyTwilio(authToken, fullURL, sig, valuesParams(params), body)
}

// signedParams appends parameters in Twilio's signing order.
type signedParams interface{ appendSigned(dst []byte) []byte }

type valuesParams url.Values

func (v valuesParams) appendSigned(dst []byte) []byte { return appendTwilioParams(dst, url.Values(v)) }

func verifyTwilio(authToken, fullURL, sig string, params signedParams, body []byte) error {
	if sig == "" {
		return ErrNoSignature
	}
	if authToken == "" {
		return ErrNoKey
	}
	var wantBuf [sha1.Size + 2]byte
	if base64.StdEncoding.DecodedLen(len(sig)) > len(wantBuf) {
		return ErrBadSignature
	}
	n, err := base64.StdEncoding.Decode(wantBuf[:], []byte(sig))
	if err != nil || n != sha1.Size {
		return ErrBadSignature
	}
	want := wantBuf[:n]
	bodyHash, hasBodyHash := queryParam(fullURL, "bodySHA256")
	if hasBodyHash {
		params = nil
	}
	ok := twilioMatch(authToken, fullURL, params, want)
	if !ok {
		if alt, changed := togglePort(fullURL); changed {
			ok = twilioMatch(authToken, alt, params, want)
		}
	}
	if !ok {
		return ErrBadSignature
	}
	if hasBodyHash {
		got := sha256.Sum256(body)
		var hx [sha256.Size * 2]byte
		hex.Encode(hx[:], got[:])
		if subtle.ConstantTimeCompare(hx[:], []byte(strings.ToLower(bodyHash))) != 1 {
			return fmt.Errorf("%w: body does not hash to bodySHA256", ErrBadSignature)
		}
	}
	return nil
}

// macs keeps keyed HMAC-SHA1 states per auth token (Reset returns an
// HMAC to its keyed state), bounded by dropping them all past maxMACKeys.
var (
	macs      sync.Map // token -> *sync.Pool of hash.Hash
	macsCount atomic.Int64
)

const maxMACKeys = 4096

func getMAC(token string) (hash.Hash, *sync.Pool) {
	p, ok := macs.Load(token)
	if !ok {
		if macsCount.Add(1) > maxMACKeys {
			macs.Clear()
			macsCount.Store(1)
		}
		key := []byte(token)
		p, _ = macs.LoadOrStore(token, &sync.Pool{New: func() any { return hmac.New(sha1.New, key) }})
	}
	pool := p.(*sync.Pool)
	m := pool.Get().(hash.Hash)
	m.Reset()
	return m, pool
}

var msgPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func twilioMatch(token, fullURL string, params signedParams, want []byte) bool {
	mac, pool := getMAC(token)
	defer pool.Put(mac)
	bp := msgPool.Get().(*[]byte)
	msg := append((*bp)[:0], fullURL...)
	if params != nil {
		msg = params.appendSigned(msg)
	}
	mac.Write(msg)
	if cap(msg) <= 256<<10 {
		*bp = msg[:0]
		msgPool.Put(bp)
	}
	var sum [sha1.Size]byte
	return hmac.Equal(mac.Sum(sum[:0]), want)
}

// queryParam finds name in rawURL's query without allocating a map.
func queryParam(rawURL, name string) (string, bool) {
	i := strings.IndexByte(rawURL, '?')
	if i < 0 {
		return "", false
	}
	q := rawURL[i+1:]
	if j := strings.IndexByte(q, '#'); j >= 0 {
		q = q[:j]
	}
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			if uv, err := url.QueryUnescape(v); err == nil {
				return uv, true
			}
			return v, true
		}
	}
	return "", false
}

// togglePort returns rawURL with its scheme's default port removed when
// present, or added when absent.
func togglePort(rawURL string) (string, bool) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "", false
	}
	def := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	if def == "" {
		return "", false
	}
	switch u.Port() {
	case def:
		u.Host = u.Hostname()
		if strings.Contains(u.Host, ":") {
			u.Host = "[" + u.Host + "]"
		}
	case "":
		u.Host = u.Host + ":" + def
	default:
		return "", false
	}
	return u.String(), true
}

// VerifyTelnyx checks a Telnyx webhook: sigB64 (telnyx-signature-ed25519)
// is an Ed25519 signature by publicKeyB64 (base64, 32 bytes) over
// timestamp + "|" + body, and timestamp (telnyx-timestamp, Unix seconds)
// is within tolerance of now.
func VerifyTelnyx(publicKeyB64, sigB64, timestamp string, body []byte, now time.Time, tolerance time.Duration) error {
	if sigB64 == "" || timestamp == "" {
		return ErrNoSignature
	}
	if publicKeyB64 == "" {
		return ErrNoKey
	}
	key, err := decodeEd25519Key(publicKeyB64)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoKey, err)
	}
	sig, err := base64.StdEncoding.DecodeString(sigB64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return ErrBadSignature
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: timestamp %q is not Unix seconds", ErrBadSignature, timestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return ErrStaleTimestamp
	}
	msg := make([]byte, 0, len(timestamp)+1+len(body))
	msg = append(msg, timestamp...)
	msg = append(msg, '|')
	msg = append(msg, body...)
	if !ed25519.Verify(key, msg, sig) {
		return ErrBadSignature
	}
	return nil
}

func decodeEd25519Key(b64 string) (ed25519.PublicKey, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("public key is not base64: %v", err)
	}
	if len(k) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key has %d bytes, want %d", len(k), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(k), nil
}
