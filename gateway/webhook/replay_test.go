package webhook

import (
	"encoding/base64"
	"testing"
	"time"
)

func sigOf(i int) string {
	var b [64]byte
	b[0], b[1] = byte(i), byte(i>>8)
	return base64.StdEncoding.EncodeToString(b[:])
}

func TestReplayCache(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	c := newReplayCache(4)
	if !c.firstUse(sigOf(1), t0, t0.Add(time.Minute)) {
		t.Fatal("first use refused")
	}
	if c.firstUse(sigOf(1), t0.Add(30*time.Second), t0.Add(time.Minute)) {
		t.Fatal("replay within the window accepted")
	}
	// Expired: the timestamp check refuses it from then on, the cache may forget it.
	if !c.firstUse(sigOf(1), t0.Add(2*time.Minute), t0.Add(3*time.Minute)) {
		t.Fatal("signature refused after its entry expired")
	}
	// Bounded: the oldest entries go first.
	for i := 2; i < 20; i++ {
		if !c.firstUse(sigOf(i), t0.Add(2*time.Minute), t0.Add(3*time.Minute)) {
			t.Fatalf("new signature %d refused", i)
		}
		if c.size() > 4 {
			t.Fatalf("cache holds %d entries, max 4", c.size())
		}
	}
	if c.firstUse(sigOf(19), t0.Add(2*time.Minute), t0.Add(3*time.Minute)) {
		t.Fatal("recent replay accepted")
	}
}
