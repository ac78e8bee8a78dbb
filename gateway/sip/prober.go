package sip

import (
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/routing"
)

// Prober sends SIP OPTIONS to every agent endpoint in the routing
// snapshot on an interval, keeps an EWMA of the round-trip time, and
// marks an endpoint down after probe.down_after misses in a row and up
// again after probe.up_after answers in a row. It implements
// routing.Health; Endpoint is lock-free (the hot path calls it).
type Prober struct {
	s   *Server
	cfg ProbeConfig

	eps    atomic.Pointer[map[string]*epState]         // uri → state; replaced, never mutated
	byAddr atomic.Pointer[map[netip.AddrPort]*epState] // IP literal endpoints by address (passive health)

	mu      sync.Mutex  // guards counters in epState and pending
	gmu     sync.Mutex  // serialises gauge updates (never held with mu)
	series  gaugeSeries // the label sets gauges last set (gmu)
	pending map[string]*epState
	seq     uint32
}

type epState struct {
	uri    string
	region string
	target sip.Uri

	rttNs atomic.Int64
	up    atomic.Bool
	known atomic.Bool
	// lastAlive (unix ns) is the last sign of life from real traffic or a
	// late probe answer: any response (but 503) or request from the endpoint.
	lastAlive atomic.Int64

	misses, answers int
	skip            int // RFC 3263 targets: probes go to the skip-th (mod count), moved on by a miss (probeTarget)
	inflight        string
	lastBr          string // last probe's branch: a late answer still counts as alive
	sentAt          time.Time
	lastProbe       time.Time
	timer           *time.Timer
}

// EndpointStatus is one endpoint as GET /v1/regions shows it.
type EndpointStatus struct {
	Region    string        `json:"region"`
	Index     int           `json:"index"` // within the region, by URI: the `endpoint` metric label (< 16)
	URI       string        `json:"uri"`
	RTT       time.Duration `json:"rtt_ns"`
	RTTMillis float64       `json:"rtt_ms"`
	Up        bool          `json:"up"`
	Known     bool          `json:"probed"` // false until the first answer or miss verdict
	LastProbe time.Time     `json:"last_probe,omitempty"`
}

var _ routing.Health = (*Prober)(nil)

func newProber(s *Server) *Prober {
	p := &Prober{s: s, cfg: s.cfg.Probe, pending: map[string]*epState{}}
	m := map[string]*epState{}
	p.eps.Store(&m)
	a := map[netip.AddrPort]*epState{}
	p.byAddr.Store(&a)
	return p
}

// Endpoint implements routing.Health.
func (p *Prober) Endpoint(uri string) (time.Duration, bool, bool) {
	st := (*p.eps.Load())[uri]
	if st == nil || !st.known.Load() {
		return 0, true, false
	}
	return time.Duration(st.rttNs.Load()), st.up.Load(), true
}

// Status lists every endpoint of the current routing snapshot, by region
// then URI; one not probed yet (a new agent, or probing disabled) is
// listed up with probed=false.
func (p *Prober) Status() []EndpointStatus {
	m := *p.eps.Load()
	out := make([]EndpointStatus, 0, len(m))
	p.mu.Lock()
	add := func(st *epState) {
		rtt := time.Duration(st.rttNs.Load())
		out = append(out, EndpointStatus{Region: st.region, URI: st.uri, RTT: rtt,
			RTTMillis: float64(rtt.Microseconds()) / 1000, Up: st.up.Load(), Known: st.known.Load(),
			LastProbe: st.lastProbe})
	}
	if snap := p.s.table.Load(); snap != nil {
		seen := map[string]bool{}
		snap.Agents(func(a *routing.Agent) {
			for _, ep := range a.Endpoints {
				if seen[ep.URI] {
					continue
				}
				seen[ep.URI] = true
				if st := m[ep.URI]; st != nil {
					add(st)
				} else {
					out = append(out, EndpointStatus{Region: ep.Region, URI: ep.URI, Up: true})
				}
			}
		})
	} else {
		for _, st := range m {
			add(st)
		}
	}
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Region != out[j].Region {
			return out[i].Region < out[j].Region
		}
		return out[i].URI < out[j].URI
	})
	for i := range out {
		if i > 0 && out[i].Region == out[i-1].Region {
			out[i].Index = out[i-1].Index + 1
		}
	}
	return out
}

func (p *Prober) run(stop <-chan struct{}) {
	if p.cfg.Disabled || p.cfg.Interval <= 0 {
		return
	}
	p.round()
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			p.round()
		}
	}
}

// refresh syncs the endpoint set with the current snapshot.
func (p *Prober) refresh() map[string]*epState {
	old := *p.eps.Load()
	next := make(map[string]*epState, len(old))
	p.s.table.Load().Agents(func(a *routing.Agent) {
		for _, ep := range a.Endpoints {
			if _, dup := next[ep.URI]; dup {
				continue
			}
			// a URI keeps its probe state while it stays in its region;
			// moved to another, it starts afresh under the new label
			if st, ok := old[ep.URI]; ok && st.region == ep.Region {
				next[ep.URI] = st
				continue
			}
			st := &epState{uri: ep.URI, region: ep.Region}
			if sip.ParseUri(ep.URI, &st.target) != nil {
				continue
			}
			st.up.Store(true)
			next[ep.URI] = st
		}
	})
	byAddr := make(map[netip.AddrPort]*epState, len(next))
	for _, st := range next {
		if ps, err := p.s.tp.Locate(&st.target, resolveLast); err == nil {
			for _, to := range ps { // every RFC 3263 target of a named endpoint
				byAddr[to.Addr] = st
			}
		}
	}
	p.eps.Store(&next)
	p.byAddr.Store(&byAddr)
	p.mu.Lock()
	for br, st := range p.pending { // endpoints gone from the table
		if next[st.uri] != st {
			delete(p.pending, br)
		}
	}
	p.mu.Unlock()
	return next
}

// aliveURI records a sign of life from an endpoint (lock-free: the hot
// path calls it for every response to a forwarded INVITE).
func (p *Prober) aliveURI(uri string) {
	if st := (*p.eps.Load())[uri]; st != nil {
		st.lastAlive.Store(time.Now().UnixNano())
	}
}

// aliveAddr records a sign of life from whatever endpoint has address a.
func (p *Prober) aliveAddr(a netip.AddrPort) {
	if st := (*p.byAddr.Load())[a]; st != nil {
		st.lastAlive.Store(time.Now().UnixNano())
	}
}

// recentlyAlive: the endpoint answered real traffic (or a probe, late)
// within the last probe interval plus timeout. p.mu held.
func (p *Prober) recentlyAlive(st *epState) bool {
	t := st.lastAlive.Load()
	return t != 0 && time.Since(time.Unix(0, t)) < p.cfg.Interval+p.cfg.Timeout
}

func (p *Prober) round() {
	m := p.refresh()
	for _, st := range m {
		p.probe(st)
	}
	p.gauges(m)
}

func (p *Prober) probe(st *epState) {
	s := p.s
	to, err := p.probeTarget(st)
	if err == errNeedLookup {
		// a name to look up: in another goroutine (one per name), so that
		// one slow name does not hold up the round's other probes
		s.tp.LocateThen(&st.target, func(lerr error) {
			to, err := p.probeTarget(st)
			if lerr != nil {
				err = lerr
			}
			p.probeTo(st, to, err)
		})
		return
	}
	p.probeTo(st, to, err)
}

// probeTarget is where st's next probe goes: of a named endpoint's RFC
// 3263 targets (in the order a call tries them, so that same-priority SRV
// targets are probed in proportion to their weights), the first, or after
// misses the next ones in turn, back to the first after an answer. The
// endpoint is up while a target answers: a call reaches it by failing
// over. From the cache only (errNeedLookup: look the URI up first).
func (p *Prober) probeTarget(st *epState) (peer, error) {
	ps, err := p.s.tp.Locate(&st.target, resolveCached)
	if err != nil || len(ps) == 0 {
		pr, _ := uriProto(&st.target)
		if err == nil {
			err = errNoTarget
		}
		return peer{Proto: pr}, err
	}
	p.mu.Lock()
	i := st.skip % len(ps)
	p.mu.Unlock()
	return ps[i], nil
}

// probeTo sends a probe to st at to (err: its address is unknown).
func (p *Prober) probeTo(st *epState, to peer, err error) {
	s := p.s
	if err != nil {
		p.miss(st, "")
		return
	}
	p.mu.Lock()
	if st.inflight != "" { // still waiting: its timeout counts the miss
		p.mu.Unlock()
		return
	}
	p.seq++
	br := newBranch(branchProbe)
	if st.lastBr != "" {
		delete(p.pending, st.lastBr)
	}
	st.lastBr = br
	st.inflight = br
	st.sentAt = time.Now()
	st.lastProbe = st.sentAt
	p.pending[br] = st
	seq := p.seq
	p.mu.Unlock()

	req := sip.NewRequest(sip.OPTIONS, st.target)
	req.AppendHeader(s.via(s.famPeer(sideCarrier, to, &st.target), to.Proto, br))
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "callgate", Host: trimBrackets(s.viaHost)},
		Params: sip.HeaderParams{{K: "tag", V: randHex(6)}}})
	req.AppendHeader(&sip.ToHeader{Address: st.target})
	cid := sip.CallIDHeader("probe-" + randHex(8))
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.OPTIONS})
	cl := sip.ContentLengthHeader(0)
	req.AppendHeader(&cl)
	p.mu.Lock()
	st.timer = time.AfterFunc(p.cfg.Timeout, func() { p.miss(st, br) })
	p.mu.Unlock()
	if err := s.tp.SendMsg(to, req); err != nil {
		p.mu.Lock()
		st.timer.Stop()
		delete(p.pending, br)
		st.inflight = ""
		p.mu.Unlock()
		p.miss(st, "")
	}
}

// onResponse records an answer to a probe (any final response but 503
// means the endpoint's SIP stack is alive).
func (p *Prober) onResponse(br string, code int) {
	if code < 200 {
		return
	}
	p.mu.Lock()
	st := p.pending[br]
	if st == nil {
		p.mu.Unlock()
		return
	}
	if st.inflight != br {
		// late (after its timeout counted a miss): no RTT sample, but the
		// endpoint is alive
		delete(p.pending, br)
		if code != 503 {
			st.lastAlive.Store(time.Now().UnixNano())
			st.misses = 0
		}
		p.mu.Unlock()
		return
	}
	delete(p.pending, br)
	st.inflight = ""
	if st.timer != nil {
		st.timer.Stop()
	}
	if code == 503 {
		p.mu.Unlock()
		p.miss(st, "")
		return
	}
	rtt := time.Since(st.sentAt)
	prev := st.rttNs.Load()
	if !st.known.Load() || prev == 0 {
		st.rttNs.Store(int64(rtt))
	} else {
		a := p.cfg.Alpha
		st.rttNs.Store(int64(a*float64(rtt) + (1-a)*float64(prev)))
	}
	st.misses = 0
	st.skip = 0
	st.answers++
	changed := false
	if !st.known.Load() {
		st.up.Store(true)
		st.known.Store(true)
		changed = true
	} else if !st.up.Load() && st.answers >= p.cfg.UpAfter {
		st.up.Store(true)
		changed = true
		p.s.log.Info("sip: endpoint up", "endpoint", st.uri, "region", st.region)
	}
	p.mu.Unlock()
	if changed {
		p.gauges(*p.eps.Load())
	}
	p.s.metrics.ProbeRTT.WithLabelValues(p.s.metrics.regions.label(st.region)).Observe(rtt.Seconds())
}

// miss records a probe without answer (br "" for a send failure).
func (p *Prober) miss(st *epState, br string) {
	p.mu.Lock()
	if br != "" {
		if st.inflight != br {
			p.mu.Unlock()
			return
		}
		st.inflight = "" // pending[br] stays: a late answer still counts
	}
	st.skip++ // the next probe tries the next RFC 3263 target
	if p.recentlyAlive(st) {
		// real traffic (or a late probe answer) shows the endpoint alive:
		// a slow probe or one lost INVITE does not take it down
		st.misses = 0
		p.mu.Unlock()
		return
	}
	st.answers = 0
	st.misses++
	changed := false
	if st.misses >= p.cfg.DownAfter && (st.up.Load() || !st.known.Load()) {
		st.up.Store(false)
		st.known.Store(true)
		changed = true
	}
	misses := st.misses
	p.mu.Unlock()
	if changed {
		p.s.log.Warn("sip: endpoint down", "endpoint", st.uri, "region", st.region, "misses", misses)
		p.gauges(*p.eps.Load())
	}
}

// passiveMiss: a call's INVITE got no response from the endpoint. It
// counts as a miss unless the endpoint showed life recently.
func (p *Prober) passiveMiss(uri string) {
	if st := (*p.eps.Load())[uri]; st != nil {
		p.miss(st, "")
	}
}

// gauges sets the per-region gauges (p.mu not held).
func (p *Prober) gauges(m map[string]*epState) {
	// the states are read under gmu too: an update computed from older
	// states (a round's) never overwrites a newer one (a miss's verdict)
	p.gmu.Lock()
	defer p.gmu.Unlock()
	type agg struct {
		up, down, unknown int
		best              time.Duration
	}
	by := map[string]*agg{}
	for _, st := range m {
		r := p.s.metrics.regions.label(st.region)
		a := by[r]
		if a == nil {
			a = &agg{}
			by[r] = a
		}
		switch {
		case !st.known.Load():
			a.unknown++
		case st.up.Load():
			a.up++
			if rtt := time.Duration(st.rttNs.Load()); a.best == 0 || rtt < a.best {
				a.best = rtt
			}
		default:
			a.down++
		}
	}
	// per endpoint: index within its region by URI, first 16 per region
	byRegion := map[string][]*epState{}
	for _, st := range m {
		byRegion[st.region] = append(byRegion[st.region], st)
	}
	met := p.s.metrics
	// each series is set to its new value and only the ones that left
	// are deleted afterwards: a Reset first would let a scrape in
	// between see a region or endpoint vanish for a moment
	now := gaugeSeries{}
	for region, eps := range byRegion {
		sort.Slice(eps, func(i, j int) bool { return eps[i].uri < eps[j].uri })
		r := met.regions.label(region)
		if r == "other" {
			continue
		}
		for i, st := range eps {
			if i >= maxEndpointLabels {
				break
			}
			up := 1.0
			if st.known.Load() && !st.up.Load() {
				up = 0
			}
			met.EndpointUp.WithLabelValues(r, endpointLabels[i]).Set(up)
			met.EndpointRTT.WithLabelValues(r, endpointLabels[i]).Set(time.Duration(st.rttNs.Load()).Seconds())
			now.add(seriesEndpoint, r, endpointLabels[i])
		}
	}
	// regions that left the table lose their series; a region without a
	// healthy endpoint has no RTT estimate (not 0, which reads as best)
	seen := make(map[string]bool, len(by))
	for r := range by {
		seen[r] = true
	}
	met.syncRegions(seen)
	for r, a := range by {
		met.RegionEndpoints.WithLabelValues(r, "up").Set(float64(a.up))
		met.RegionEndpoints.WithLabelValues(r, "down").Set(float64(a.down))
		met.RegionEndpoints.WithLabelValues(r, "unknown").Set(float64(a.unknown))
		now.add(seriesRegion, r, "")
		if a.up > 0 {
			met.RegionRTT.WithLabelValues(r).Set(a.best.Seconds())
			now.add(seriesRegionRTT, r, "")
		}
	}
	for k := range p.series {
		if _, ok := now[k]; ok {
			continue
		}
		switch k.kind {
		case seriesEndpoint:
			met.EndpointUp.DeleteLabelValues(k.region, k.endpoint)
			met.EndpointRTT.DeleteLabelValues(k.region, k.endpoint)
		case seriesRegion:
			for _, state := range []string{"up", "down", "unknown"} {
				met.RegionEndpoints.DeleteLabelValues(k.region, state)
			}
		case seriesRegionRTT:
			met.RegionRTT.DeleteLabelValues(k.region)
		}
	}
	p.series = now
}

// gaugeSeries: the probe gauges' label sets set in one update.
type gaugeSeries map[seriesKey]struct{}

type seriesKey struct {
	kind             int
	region, endpoint string
}

const (
	seriesEndpoint  = iota // callgate_sip_endpoint_up, _endpoint_rtt_estimate_seconds
	seriesRegion           // callgate_sip_region_endpoints (up, down, unknown)
	seriesRegionRTT        // callgate_sip_region_rtt_estimate_seconds
)

func (g gaugeSeries) add(kind int, region, endpoint string) {
	g[seriesKey{kind, region, endpoint}] = struct{}{}
}
