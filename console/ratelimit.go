package console

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// maxSources caps the sources the login limiter remembers.
const maxSources = 10000

// loginLimiter refuses logins from a source that failed max times within
// window; the window starts at the source's first failure. Sources are
// IPv4 addresses and IPv6 /64 prefixes (one host's addresses). When the
// table is full of live entries, new sources are refused until entries
// expire: failing closed for the login form is better than letting a
// flood of sources reset everyone's counters.
type loginLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	now    func() time.Time
	m      map[string]*failures
}

type failures struct {
	n     int
	start time.Time
}

func newLoginLimiter(max int, window time.Duration, now func() time.Time) *loginLimiter {
	return &loginLimiter{max: max, window: window, now: now, m: map[string]*failures{}}
}

// allowed reports whether src may try to log in, and if not, how long to wait.
func (l *loginLimiter) allowed(src string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.m[src]
	if f == nil {
		if len(l.m) >= maxSources {
			l.sweep(now)
			if len(l.m) >= maxSources {
				return l.window, false
			}
		}
		return 0, true
	}
	if now.Sub(f.start) >= l.window {
		delete(l.m, src)
		return 0, true
	}
	if f.n >= l.max {
		return f.start.Add(l.window).Sub(now), false
	}
	return 0, true
}

// fail counts a failed login from src.
func (l *loginLimiter) fail(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.m[src]
	if f == nil || now.Sub(f.start) >= l.window {
		if f == nil && len(l.m) >= maxSources {
			l.sweep(now)
			if len(l.m) >= maxSources {
				return
			}
		}
		f = &failures{start: now}
		l.m[src] = f
	}
	f.n++
}

func (l *loginLimiter) sweep(now time.Time) {
	for k, f := range l.m {
		if now.Sub(f.start) >= l.window {
			delete(l.m, k)
		}
	}
}

// sourceOf is the request's source for rate limiting: the peer address
// (a proxy's X-Forwarded-For is not trusted), IPv6 by /64.
func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
