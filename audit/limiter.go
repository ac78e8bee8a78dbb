package audit

import (
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Limits bound how many failed key uses are recorded one by one.
type Limits struct {
	// Window is how often suppressed failures are summarised (default 1m).
	Window time.Duration
	// PerSource records per source address and window (default 5). IPv6
	// sources count per /64.
	PerSource int
	// Total records of failed key use per window, all sources (default 20).
	Total int
	// Sources tracked per window (default 1024); failures from more
	// sources are only counted.
	Sources int
}

func (l Limits) withDefaults() Limits {
	if l.Window <= 0 {
		l.Window = time.Minute
	}
	if l.PerSource <= 0 {
		l.PerSource = 5
	}
	if l.Total <= 0 {
		l.Total = 20
	}
	if l.Sources <= 0 {
		l.Sources = 1024
	}
	return l
}

// limiter counts failed key uses per source within a window. Its memory
// is bounded by Limits.Sources.
type limiter struct {
	lim Limits

	mu      sync.Mutex
	start   time.Time
	written int
	sources map[string]*sourceCount
	others  int64 // suppressed from untracked sources
	total   int64 // suppressed in all
}

type sourceCount struct {
	written    int
	suppressed int64
}

func newLimiter(l Limits, now time.Time) *limiter {
	return &limiter{lim: l.withDefaults(), start: now, sources: map[string]*sourceCount{}}
}

// allow reports whether a failure from source gets its own record.
func (l *limiter) allow(source string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := l.sources[source]
	if sc == nil {
		if len(l.sources) >= l.lim.Sources {
			l.others++
			l.total++
			return false
		}
		sc = &sourceCount{}
		l.sources[source] = sc
	}
	if sc.written >= l.lim.PerSource || l.written >= l.lim.Total {
		sc.suppressed++
		l.total++
		return false
	}
	sc.written++
	l.written++
	return true
}

type sourceN struct {
	source string
	n      int64
}

type summary struct {
	window time.Duration
	total  int64
	top    []sourceN // the sources that were suppressed most, at most 10
	others int64     // suppressed from sources not in top
}

// roll ends the window and returns what it suppressed.
func (l *limiter) roll(now time.Time) summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := summary{window: now.Sub(l.start), total: l.total, others: l.others}
	for src, sc := range l.sources {
		if sc.suppressed > 0 {
			s.top = append(s.top, sourceN{src, sc.suppressed})
		}
	}
	sort.Slice(s.top, func(i, j int) bool {
		if s.top[i].n != s.top[j].n {
			return s.top[i].n > s.top[j].n
		}
		return s.top[i].source < s.top[j].source
	})
	if len(s.top) > 10 {
		for _, t := range s.top[10:] {
			s.others += t.n
		}
		s.top = s.top[:10]
	}
	if s.others > 0 {
		s.top = append(s.top, sourceN{"others", s.others})
	}
	l.start, l.written, l.others, l.total = now, 0, 0, 0
	clear(l.sources)
	return s
}

// sourceKey is the limiter's key for a remote address: the IP, or its
// /64 for IPv6 (one host can use a whole /64).
func sourceKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	var a netip.Addr
	if err == nil {
		a = ap.Addr()
	} else if a, err = netip.ParseAddr(remote); err != nil {
		return "unknown"
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
