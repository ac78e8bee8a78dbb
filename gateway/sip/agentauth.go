package sip

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/callgate/callgate/routing"
)

// Digest authentication of agents on the agent listener (RFC 3261 22.3,
// RFC 7616 SHA-256 and RFC 2617 MD5, qop=auth), challenged with 407 and
// both algorithms offered, SHA-256 first. The credential's HA1s come from
// the routing snapshot (Snapshot.Credential); the password is never here.
// Nonces are stateless: a timestamp and its HMAC under a key derived
// from the node's dialog key, so that any node of a cluster verifies a
// nonce another issued; an expired one is answered with stale=true.
// Failed authentications are counted per source (failLimiter): past the
// limit the source is refused before parsing (403, no challenge).

// agentNonceTTL is how long a nonce is accepted.
const agentNonceTTL = 5 * time.Minute

var nonceB64 = base64.RawURLEncoding

// deriveKey derives a key for one purpose from the node's secret (nil: a
// random key, valid in this process only).
func deriveKey(secret []byte, purpose string) []byte {
	k := deriveRRKey(secret) // random when secret is empty
	m := hmac.New(sha256.New, k)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

func (ag *agentSide) nonce(now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 16)
	m := hmac.New(sha256.New, ag.nonceKey)
	m.Write([]byte(ts))
	return ts + "." + nonceB64.EncodeToString(m.Sum(nil)[:16])
}

// checkNonce reports whether n is a nonce of ours (ok) and whether it
// has expired (stale).
func (ag *agentSide) checkNonce(n string, now time.Time) (ok, stale bool) {
	ts, sig, found := strings.Cut(n, ".")
	if !found || len(ts) > 16 {
		return false, false
	}
	m := hmac.New(sha256.New, ag.nonceKey)
	m.Write([]byte(ts))
	want := nonceB64.EncodeToString(m.Sum(nil)[:16])
	if subtle.ConstantTimeCompare([]byte(sig), []byte(want)) != 1 {
		return false, false
	}
	sec, err := strconv.ParseInt(ts, 16, 64)
	if err != nil {
		return false, false
	}
	age := now.Sub(time.Unix(sec, 0))
	if age < -time.Minute || age > agentNonceTTL {
		return true, true
	}
	return true, false
}

// authResult is the outcome of an agent's authentication.
type authResult int

const (
	authNone  authResult = iota // no credentials for our realm: challenge
	authOK                      // verified
	authStale                   // a good response to an expired nonce: challenge with stale=true
	authBad                     // wrong: counted, then challenged (or refused when over the limit)
)

// verifyAgent checks the request's Proxy-Authorization for our realm
// against the credential in snap.
func (ag *agentSide) verifyAgent(req *sip.Request, snap *routing.Snapshot, now time.Time) (*routing.SIPCredential, authResult) {
	res := authNone
	for _, h := range req.GetHeaders("Proxy-Authorization") {
		v := h.Value()
		if len(v) > 4096 {
			return nil, authBad
		}
		cr, err := digest.ParseCredentials(v)
		if err != nil {
			res = authBad
			continue
		}
		if cr.Realm != ag.realm {
			continue // another proxy's credentials
		}
		cred, ok := snap.Credential(cr.Username)
		if !ok {
			return nil, authBad
		}
		var ha1 string
		switch alg := strings.ToUpper(cr.Algorithm); {
		case (alg == "" || alg == "MD5") && ag.offers("MD5"):
			ha1 = cred.HA1MD5
		case alg == "SHA-256" && ag.offers("SHA-256"):
			ha1 = cred.HA1SHA256
		}
		if ha1 == "" || cr.QOP != "auth" || cr.Nc <= 0 || cr.Cnonce == "" || (cred.Realm != "" && cred.Realm != ag.realm) {
			return nil, authBad
		}
		known, stale := ag.checkNonce(cr.Nonce, now)
		if !known {
			return nil, authBad
		}
		want, err := digest.Digest(&digest.Challenge{Realm: cr.Realm, Nonce: cr.Nonce, Algorithm: cr.Algorithm,
			QOP: []string{"auth"}}, digest.Options{Method: string(req.Method), URI: cr.URI, Count: cr.Nc,
			Username: cr.Username, A1: ha1, Cnonce: cr.Cnonce})
		if err != nil || subtle.ConstantTimeCompare([]byte(strings.ToLower(cr.Response)), []byte(want.Response)) != 1 {
			return nil, authBad
		}
		if stale {
			return nil, authStale
		}
		return cred, authOK
	}
	return nil, res
}

func (ag *agentSide) offers(alg string) bool {
	for _, a := range ag.algs {
		if a == alg {
			return true
		}
	}
	return false
}

// challengeAgent answers 407 with one challenge per algorithm offered
// (sip.agents.digest_algorithms: SHA-256 then MD5 by default).
func (s *Server) challengeAgent(req *sip.Request, from peer, stale bool) {
	n := s.ag.nonce(time.Now())
	hdrs := make([]sip.Header, 0, len(s.ag.algs))
	for _, a := range s.ag.algs {
		ch := digest.Challenge{Realm: s.ag.realm, Nonce: n, Algorithm: a, QOP: []string{"auth"}, Stale: stale}
		hdrs = append(hdrs, sip.NewHeader("Proxy-Authenticate", ch.String()))
	}
	s.replyStateless(req, from, 407, "Proxy Authentication Required", hdrs...)
}

// failLimiter counts failed authentications per source address: max
// failures within window block the source for block.
type failLimiter struct {
	max    int
	window time.Duration
	block  time.Duration

	mu sync.RWMutex // blocked (every datagram on the agent listener) only reads
	m  map[netip.Addr]*failEntry
}

type failEntry struct {
	first   time.Time // start of the current window
	n       int
	blocked time.Time // refused until then
}

// maxFailEntries bounds the sources tracked (a scan from many addresses
// must not grow memory without limit).
const maxFailEntries = 65536

// fail counts a failure from a; it reports whether a is now blocked.
func (f *failLimiter) fail(a netip.Addr, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.m[a]
	if e == nil {
		if len(f.m) >= maxFailEntries {
			f.prune(now)
		}
		e = &failEntry{first: now}
		f.m[a] = e
	}
	if now.Sub(e.first) > f.window {
		e.first, e.n = now, 0
	}
	e.n++
	if e.n >= f.max {
		e.blocked = now.Add(f.block)
		e.first, e.n = now, 0
		return true
	}
	return false
}

// blocked reports whether a is refused now (the pre-parse source filter,
// asked for every datagram on the agent listener: the clock is read only
// for a source with an entry).
func (f *failLimiter) blocked(a netip.Addr) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	e := f.m[a]
	return e != nil && time.Now().Before(e.blocked)
}

// prune drops entries with nothing left to remember. f.mu held.
func (f *failLimiter) prune(now time.Time) {
	for a, e := range f.m {
		if now.After(e.blocked) && now.Sub(e.first) > f.window {
			delete(f.m, a)
		}
	}
	if len(f.m) >= maxFailEntries { // all busy: forget the lot rather than grow
		clear(f.m)
	}
}
