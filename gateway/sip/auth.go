package sip

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Digest authentication of trunk INVITEs (RFC 3261 22, RFC 2617 MD5,
// qop=auth). Nonces are stateless: a timestamp signed with a per-process
// key, valid for nonceTTL.

const nonceTTL = 5 * time.Minute

var (
	nonceKeyOnce sync.Once
	nonceKey     [32]byte
)

func nonceSecret() []byte {
	nonceKeyOnce.Do(func() { _, _ = rand.Read(nonceKey[:]) })
	return nonceKey[:]
}

func makeNonce(now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 16)
	m := hmac.New(sha256.New, nonceSecret())
	m.Write([]byte(ts))
	return ts + "." + hex.EncodeToString(m.Sum(nil)[:12])
}

func nonceValid(n string, now time.Time) bool {
	ts, sig, ok := strings.Cut(n, ".")
	if !ok {
		return false
	}
	m := hmac.New(sha256.New, nonceSecret())
	m.Write([]byte(ts))
	want := hex.EncodeToString(m.Sum(nil)[:12])
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return false
	}
	age := now.Sub(time.Unix(sec, 0))
	return age >= -time.Minute && age <= nonceTTL
}

func md5hex(parts ...string) string {
	h := md5.New()
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{':'})
		}
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// checkDigest verifies Proxy-Authorization against the trunk's
// credentials; on failure it answers 407 with a fresh challenge and
// returns false.
func (s *Server) checkDigest(req *sip.Request, from peer, t *Trunk) bool {
	realm := "callgate"
	now := time.Now()
	stale := false
	if h := req.GetHeader("Proxy-Authorization"); h != nil {
		cr, err := digest.ParseCredentials(h.Value())
		if err == nil && cr.Username == t.Username && cr.Realm == realm {
			if !nonceValid(cr.Nonce, now) {
				stale = true
			} else {
				ha1 := md5hex(t.Username, realm, t.Password)
				ha2 := md5hex(string(req.Method), cr.URI)
				var want string
				if cr.QOP == "auth" {
					want = md5hex(ha1, cr.Nonce, strconv.FormatInt(int64(cr.Nc), 16), cr.Cnonce, cr.QOP, ha2)
					want2 := md5hex(ha1, cr.Nonce, leftPad8(cr.Nc), cr.Cnonce, cr.QOP, ha2)
					if subtle.ConstantTimeCompare([]byte(cr.Response), []byte(want2)) == 1 {
						return true
					}
				} else {
					want = md5hex(ha1, cr.Nonce, ha2)
				}
				if subtle.ConstantTimeCompare([]byte(cr.Response), []byte(want)) == 1 {
					return true
				}
			}
		}
	}
	s.metrics.Rejected.WithLabelValues("auth").Inc()
	ch := digest.Challenge{Realm: realm, Nonce: makeNonce(now), Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
	s.replyStateless(req, from, 407, "Proxy Authentication Required", sip.NewHeader("Proxy-Authenticate", ch.String()))
	return false
}

func leftPad8(n int) string {
	s := strconv.FormatInt(int64(n), 16)
	for len(s) < 8 {
		s = "0" + s
	}
	return s
}
