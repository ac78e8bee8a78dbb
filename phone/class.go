package phone

import (
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// Classes of numbers that outbound policy treats apart.
const (
	ClassPremium    = "premium_rate"
	ClassSharedCost = "shared_cost"
	ClassUAN        = "uan"
)

// Classify returns the ISO 3166 alpha-2 country of a valid E.164 number
// and, when it is a premium-rate, shared-cost or universal access number
// (libphonenumber's types), that class ("" otherwise). ok is false for a
// number that is not valid.
//
// An outbound call classifies its destination and its caller ID a few
// times each (the destination check, the price, the caller ID's
// country), and libphonenumber's parse and pattern matching cost about
// 35 µs and 149 allocations each time (7% of an outbound call's CPU in
// bench/sip; BenchmarkClassify). Answers are
// kept in a bounded cache: a workspace's caller IDs are few and its
// destinations repeat.
func Classify(e164 string) (country, class string, ok bool) {
	if len(e164) > maxCachedLen {
		return classify(e164)
	}
	if r, hit := classCache.get(e164); hit {
		return r.country, r.class, r.ok
	}
	country, class, ok = classify(e164)
	classCache.put(e164, classResult{country, class, ok})
	return country, class, ok
}

func classify(e164 string) (country, class string, ok bool) {
	num, err := phonenumbers.Parse(e164, "")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", "", false
	}
	country = phonenumbers.GetRegionCodeForNumber(num)
	switch phonenumbers.GetNumberType(num) {
	case phonenumbers.PREMIUM_RATE:
		class = ClassPremium
	case phonenumbers.SHARED_COST:
		class = ClassSharedCost
	case phonenumbers.UAN:
		class = ClassUAN
	}
	return country, class, true
}

// maxCachedLen: longer strings (no E.164 number is over 16 characters
// with its +) are classified without the cache.
const maxCachedLen = 24

// classCacheSize bounds the cache. When it is full it is emptied and
// fills again: a caller dialling ever new numbers costs the cache its
// hits, never memory beyond this bound.
const classCacheSize = 8192

type classResult struct {
	country, class string
	ok             bool
}

type boundedCache struct {
	mu  sync.Mutex
	max int
	m   map[string]classResult
}

var classCache = &boundedCache{max: classCacheSize}

func (c *boundedCache) get(k string) (classResult, bool) {
	c.mu.Lock()
	r, ok := c.m[k]
	c.mu.Unlock()
	return r, ok
}

func (c *boundedCache) put(k string, r classResult) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= c.max {
		c.m = make(map[string]classResult, min(c.max, 256))
	}
	c.m[k] = r
	c.mu.Unlock()
}
