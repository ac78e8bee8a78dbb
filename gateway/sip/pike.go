package sip

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
)

// Per-source protection of the carrier listener (issue 13): a new-call
// rate per source address, like Kamailio's pike module, and the silent
// drop of requests from known scanners' User-Agents (Kamailio secfilter
// and OpenSIPS lists).

// PikeConfig limits new calls (INVITEs outside a dialog) per source IP
// address: a token bucket of Burst INVITEs refilled at Rate per second.
type PikeConfig struct {
	Disabled bool    `yaml:"disabled" help:"no per-source limit on new calls"`
	Rate     float64 `yaml:"rate" help:"new calls (INVITEs) per second allowed per source IP address"`
	Burst    int     `yaml:"burst" help:"INVITEs a source may send at once before rate applies"`
	// Action is what a source over its rate gets: "reject" (503 with
	// Retry-After) or "drop" (no answer at all).
	Action string `yaml:"action" help:"over the rate: reject (503 with Retry-After) or drop (no answer)"`
	// TrunkSources applies the limit to the addresses of trunks' cidrs and
	// presets too. Off by default: a carrier's signalling address carries
	// the calls of all its customers (workspace limits bound those).
	TrunkSources bool `yaml:"trunk_sources" help:"apply the limit to trunks' own source ranges too (off: a carrier's signalling IPs carry every customer's calls)"`
}

// DefaultScannerUserAgents are User-Agent substrings of SIP scanners and
// war-dialers (from Kamailio's and OpenSIPS's usual lists); matched
// without regard to case.
var DefaultScannerUserAgents = []string{
	"friendly-scanner", "sipvicious", "sip-scan", "sipcli", "vaxsipuseragent", "iwar", "pplsip",
	"smap", "sipsak-scan", "sundayddr", "sipptk", "sip auditor", "voip-scan", "sip-scanner",
}

const (
	pikeReject = "reject"
	pikeDrop   = "drop"
)

func defaultPike() PikeConfig { return PikeConfig{Rate: 20, Burst: 40, Action: pikeReject} }

func (p PikeConfig) withDefaults() PikeConfig {
	d := defaultPike()
	if p.Rate == 0 {
		p.Rate = d.Rate
	}
	if p.Burst == 0 {
		p.Burst = d.Burst
	}
	if p.Action == "" {
		p.Action = d.Action
	}
	return p
}

// validatePike reports bad pike and scanner settings (key names relative to sip.).
func validatePike(c Config) []error {
	var errs []error
	p := c.Pike.withDefaults()
	if p.Rate < 0 {
		errs = append(errs, fmt.Errorf("sip.pike.rate: must be positive"))
	}
	if p.Burst < 0 {
		errs = append(errs, fmt.Errorf("sip.pike.burst: must be positive"))
	}
	if p.Action != pikeReject && p.Action != pikeDrop {
		errs = append(errs, fmt.Errorf("sip.pike.action: %q must be reject or drop", p.Action))
	}
	for i, ua := range c.ScannerUserAgents {
		if strings.TrimSpace(ua) == "" || len(ua) > 100 {
			errs = append(errs, fmt.Errorf("sip.scanner_user_agents[%d]: must be 1 to 100 characters", i))
		}
	}
	return errs
}

var refusePike = refusal{status: 503, phrase: "Service Unavailable", reason: "pike", retryAfter: true, quiet: true}

// pike is the per-source token buckets, sharded by address.
type pike struct {
	cfg    PikeConfig
	shards [16]pikeShard
}

type pikeShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// pikeMaxSources bounds the sources remembered per shard; a new source
// over it is refused (a flood of spoofed addresses must not grow memory).
const pikeMaxSources = 8192

func newPike(cfg PikeConfig) *pike {
	if cfg.Disabled {
		return nil
	}
	p := &pike{cfg: cfg.withDefaults()}
	for i := range p.shards {
		p.shards[i].m = map[netip.Addr]*bucket{}
	}
	return p
}

// allow takes a token of a's bucket.
func (p *pike) allow(a netip.Addr, now time.Time) bool {
	b16 := a.As16()
	sh := &p.shards[(b16[15]^b16[14]^b16[11])%16]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[a]
	if b == nil {
		if len(sh.m) >= pikeMaxSources {
			p.sweepLocked(sh, now)
			if len(sh.m) >= pikeMaxSources {
				return false
			}
		}
		b = &bucket{tokens: float64(p.cfg.Burst), last: now}
		sh.m[a] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * p.cfg.Rate
	if max := float64(p.cfg.Burst); b.tokens > max {
		b.tokens = max
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets sources whose bucket is full again (idle ones).
func (p *pike) sweep(now time.Time) {
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		p.sweepLocked(sh, now)
		sh.mu.Unlock()
	}
}

func (p *pike) sweepLocked(sh *pikeShard, now time.Time) {
	full := time.Duration(float64(p.cfg.Burst) / p.cfg.Rate * float64(time.Second))
	for a, b := range sh.m {
		if now.Sub(b.last) >= full {
			delete(sh.m, a)
		}
	}
}

func (p *pike) run(stop <-chan struct{}) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			p.sweep(now)
		}
	}
}

// pikeRefused applies the per-source new-call rate to an INVITE and
// answers (or drops) it when the source is over; false: go on.
func (s *Server) pikeRefused(req *sip.Request, from peer) bool {
	p := s.guard.pike
	if p == nil {
		return false
	}
	a := from.Addr.Addr()
	if !p.cfg.TrunkSources && s.trunkFor(a) != nil {
		return false
	}
	if p.allow(a, time.Now()) {
		return false
	}
	if p.cfg.Action == pikeDrop {
		s.metrics.Dropped.WithLabelValues("pike").Inc()
		return true
	}
	s.refuse(req, from, "", refusePike)
	return true
}

// scanner reports whether req comes from a known scanner (by
// User-Agent), counting the drop: such requests get no answer at all.
func (s *Server) scanner(req *sip.Request) bool {
	if len(s.guard.scanners) == 0 {
		return false
	}
	for _, h := range req.Headers() {
		if n := h.Name(); len(n) == 10 && strings.EqualFold(n, "User-Agent") && s.isScannerUA(h.Value()) {
			s.metrics.Dropped.WithLabelValues("scanner").Inc()
			return true
		}
	}
	return false
}

// isScannerUA matches a User-Agent against the list, ignoring ASCII case
// (the first 256 bytes, lowered on the stack).
func (s *Server) isScannerUA(ua string) bool {
	var buf [256]byte
	n := copy(buf[:], ua)
	for i := 0; i < n; i++ {
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	low := buf[:n]
	for _, sc := range s.guard.scanners {
		if bytes.Contains(low, []byte(sc)) {
			return true
		}
	}
	return false
}

// guard is the Server's per-source protection and workspace limits.
type guard struct {
	pike     *pike    // nil: off
	scanners []string // lower case; empty: off
	limiter  calls.Limiter
}

func newGuard(cfg Config, d Deps) guard {
	return guard{pike: newPike(cfg.Pike), scanners: lowerAll(cfg.ScannerUserAgents), limiter: d.Limits}
}

// start runs the guard's housekeeping until stop is closed.
func (g *guard) start(stop <-chan struct{}) {
	if g.pike != nil {
		go g.pike.run(stop)
	}
}

func lowerAll(in []string) []string {
	out := make([]string, 0, len(in))
	for _, v := range in {
		if v = strings.ToLower(strings.TrimSpace(v)); v != "" {
			out = append(out, v)
		}
	}
	return out
}
