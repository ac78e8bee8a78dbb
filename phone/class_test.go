package phone

import (
	"fmt"
	"sync"
	"testing"
)

// classifyCases: valid numbers of several countries and classes, and
// strings that are not valid numbers.
var classifyCases = []string{
	"+14155550123", "+442071838750", "+4915112345678", "+33612345678",
	"+19005550123", "+448712345678", "+4484512345678", "+33899123456",
	"+1415", "", "+", "14155550123", "+999999999999", "+44 20 7183 8750",
	"+1415555012345678901234567890", "not a number",
}

// TestClassifyCachedAnswersAreTheParsersAnswers: a cached answer is the
// one libphonenumber gives, first time and every time after, valid or not.
func TestClassifyCachedAnswersAreTheParsersAnswers(t *testing.T) {
	for round := range 3 {
		for _, n := range classifyCases {
			wc, wcl, wok := classify(n)
			c, cl, ok := Classify(n)
			if c != wc || cl != wcl || ok != wok {
				t.Errorf("round %d: Classify(%q) = %q %q %v, libphonenumber says %q %q %v", round, n, c, cl, ok, wc, wcl, wok)
			}
		}
	}
	if c, _, ok := Classify("+442071838750"); !ok || c != "GB" {
		t.Errorf("+442071838750: %q %v, want GB", c, ok)
	}
	if _, _, ok := Classify("+1415"); ok {
		t.Error("+1415 classified as valid")
	}
}

// TestClassifyCacheIsBounded: ever new numbers never grow the cache past
// its bound, and answers stay right across the resets.
func TestClassifyCacheIsBounded(t *testing.T) {
	const bound = 64 // the real bound, classCacheSize, the same way but slower
	classCache.mu.Lock()
	classCache.max, classCache.m = bound, nil
	classCache.mu.Unlock()
	t.Cleanup(func() {
		classCache.mu.Lock()
		classCache.max, classCache.m = classCacheSize, nil
		classCache.mu.Unlock()
	})
	for i := range bound*3 + bound/2 {
		n := fmt.Sprintf("+1415%03d%04d", 555+i/10000, i%10000)
		c, cl, ok := Classify(n)
		if i%16 == 0 {
			if wc, wcl, wok := classify(n); c != wc || cl != wcl || ok != wok {
				t.Fatalf("Classify(%q) = %q %q %v, want %q %q %v", n, c, cl, ok, wc, wcl, wok)
			}
		}
		if l := cachedEntries(); l > bound || l == 0 {
			t.Fatalf("cache holds %d entries after %d numbers, bound %d", l, i+1, bound)
		}
	}
	long := "+1415555012345678901234567890"
	before := cachedEntries()
	Classify(long)
	if cachedEntries() > before {
		t.Errorf("a %d-character string was cached", len(long))
	}
}

// TestClassifyConcurrent: the cache under concurrent readers and writers
// (run with -race) gives the parser's answers.
func TestClassifyConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				n := classifyCases[(i+g)%len(classifyCases)]
				wc, wcl, wok := classify(n)
				if c, cl, ok := Classify(n); c != wc || cl != wcl || ok != wok {
					t.Errorf("Classify(%q) = %q %q %v, want %q %q %v", n, c, cl, ok, wc, wcl, wok)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkClassify: a number classified again (an agent's caller ID, a
// destination dialled before) against libphonenumber's parse each time.
func BenchmarkClassify(b *testing.B) {
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			Classify("+442071838750")
		}
	})
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			classify("+442071838750")
		}
	})
}

// cachedEntries is how many answers the cache holds.
func cachedEntries() int {
	classCache.mu.Lock()
	defer classCache.mu.Unlock()
	return len(classCache.m)
}
