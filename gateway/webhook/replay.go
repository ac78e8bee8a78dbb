package webhook

import (
	"crypto/ed25519"
	"encoding/base64"
	"sync"
	"time"
)

// DefaultReplayCacheSize bounds the Telnyx signatures remembered.
const DefaultReplayCacheSize = 65536

// replayCache remembers the Telnyx signatures accepted within the
// timestamp tolerance, so that a captured webhook cannot be sent again:
// after the tolerance its timestamp is refused anyway, so an entry
// expires then. It is bounded: past max entries the oldest is dropped.
type replayCache struct {
	mu   sync.Mutex
	max  int
	seen map[sigKey]time.Time // signature → expiry
	fifo []replayEntry        // insertion order (ring)
	head int                  // oldest entry in fifo
	n    int                  // entries in fifo
}

type sigKey [ed25519.SignatureSize]byte

type replayEntry struct {
	key    sigKey
	expiry time.Time
}

func newReplayCache(max int) *replayCache {
	if max <= 0 {
		max = DefaultReplayCacheSize
	}
	return &replayCache{max: max, seen: make(map[sigKey]time.Time), fifo: make([]replayEntry, max)}
}

// firstUse records a verified signature (base64, as in the header) valid
// until expiry and reports whether it was new. The decoded bytes are the
// key: base64 spelled differently is the same signature.
func (c *replayCache) firstUse(sigB64 string, now, expiry time.Time) bool {
	var k sigKey
	if n, err := base64.StdEncoding.Decode(k[:], []byte(sigB64)); err != nil || n != len(k) {
		return false // VerifyTelnyx accepted it, so this does not happen
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if exp, ok := c.seen[k]; ok && now.Before(exp) {
		return false
	}
	// Drop expired entries from the old end, and the oldest when full.
	for c.n > 0 && (c.n >= c.max || !now.Before(c.fifo[c.head].expiry)) {
		old := c.fifo[c.head]
		if exp, ok := c.seen[old.key]; ok && exp.Equal(old.expiry) {
			delete(c.seen, old.key)
		}
		c.head = (c.head + 1) % c.max
		c.n--
	}
	c.seen[k] = expiry
	c.fifo[(c.head+c.n)%c.max] = replayEntry{key: k, expiry: expiry}
	c.n++
	return true
}

// size is the number of remembered signatures.
func (c *replayCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
