package audit

import (
	"fmt"
	"testing"
	"time"
)

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000":          "127.0.0.1",
		"127.0.0.1":               "127.0.0.1",
		"[::ffff:10.0.0.1]:80":    "10.0.0.1",
		"[2001:db8::1]:5000":      "2001:db8::/64",
		"[2001:db8::ffff:1]:6000": "2001:db8::/64", // same /64, same source
		"[2001:db8:0:1::1]:6000":  "2001:db8:0:1::/64",
		"nonsense":                "unknown",
	} {
		if got := sourceKey(in); got != want {
			t.Errorf("sourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLimiterBounds: per source, in total and in tracked sources, the
// limiter lets a bounded number of records through per window and
// reports the rest in the summary; a new window starts afresh.
func TestLimiterBounds(t *testing.T) {
	now := time.Unix(1700000000, 0)
	l := newLimiter(Limits{Window: time.Minute, PerSource: 2, Total: 5, Sources: 4}, now)
	allowed := 0
	for i := 0; i < 10; i++ { // 10 sources × 10 failures
		for j := 0; j < 10; j++ {
			if l.allow(fmt.Sprintf("10.0.0.%d", i)) {
				allowed++
			}
		}
	}
	if allowed != 5 {
		t.Fatalf("allowed %d records, want the total limit 5", allowed)
	}
	if len(l.sources) != 4 {
		t.Fatalf("tracks %d sources, want at most 4", len(l.sources))
	}
	s := l.roll(now.Add(time.Minute))
	if s.total != 95 || s.window != time.Minute {
		t.Fatalf("summary total %d window %s, want 95 in 1m", s.total, s.window)
	}
	var sum int64
	for _, x := range s.top {
		sum += x.n
	}
	if sum != 95 || s.top[len(s.top)-1].source != "others" || s.top[len(s.top)-1].n != 60 {
		t.Fatalf("summary by source %+v: want every suppressed failure, 60 from untracked sources", s.top)
	}
	if !l.allow("10.0.0.1") || !l.allow("10.0.0.1") || l.allow("10.0.0.1") {
		t.Fatal("the next window does not start afresh with 2 per source")
	}
	if s := l.roll(now.Add(2 * time.Minute)); s.total != 1 {
		t.Fatalf("second window suppressed %d, want 1", s.total)
	}
}
