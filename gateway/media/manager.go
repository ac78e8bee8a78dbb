// Package media anchors a call's RTP and RTCP at callgate: it rewrites
// the SDP of the offer and the answer so that both legs send their media
// to a pair of local UDP ports each, forwards every packet unchanged to
// the other leg, and measures per leg packets, bytes, loss (RFC 3550
// A.1), interarrival jitter (RFC 3550 A.8) and round-trip time (RTCP
// LSR/DLSR).
//
// Lock order: Manager.mu, then Session.sdpMu, then Session.ioMu (held
// while a packet of the session is handled, and by Close), then one
// leg.mu at a time (never two leg locks at once), then a socket's ctlMu;
// Session.metMu is taken alone.
package media

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	legCaller = "caller"
	legAgent  = "agent"
)

// Manager owns the port range and the relayed sessions of one node.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	met     *Metrics
	ports   *portPool
	engine  *engine
	bindIP  netip.Addr
	advIP   netip.Addr
	six     family6 // dual stack (family.go): zero when bind_ip6 is not set
	regions map[string]bool

	srtpMet *srtpMetrics // srtp.go
	// the node's DTLS-SRTP certificate, made at first use (dtls.go)
	dtlsOnce sync.Once
	dtlsID   *dtlsIdentity
	dtlsErr  error

	// counters resolved once
	dropForeign, dropNoDest, dropSend prometheus.Counter
	legPackets, legBytes              [2]prometheus.Counter // caller, agent
	dtmfMet                           *dtmfMetrics          // dtmf.go
	fillMet                           *fillMetrics          // cn.go

	mu       sync.Mutex
	sessions map[*Session]struct{}
	closed   bool

	done chan struct{}
	wg   sync.WaitGroup
}

// NewManager validates cfg (after defaults), registers the metrics with
// reg (nil: a private registry) and starts the media-timeout watcher.
// It binds no socket until NewSession.
func NewManager(cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Manager{
		cfg:      cfg,
		log:      log.With("component", "media"),
		met:      NewMetrics(reg),
		srtpMet:  newSRTPMetrics(reg),
		dtmfMet:  newDTMFMetrics(reg),
		fillMet:  newFillMetrics(reg),
		ports:    newPortPool(cfg.PortMin, cfg.PortMax),
		bindIP:   netip.MustParseAddr(cfg.BindIP).Unmap(),
		advIP:    netip.MustParseAddr(cfg.AdvertiseIP).Unmap(),
		regions:  map[string]bool{},
		sessions: make(map[*Session]struct{}),
		done:     make(chan struct{}),
	}
	m.six = newFamily6(cfg)
	eng, err := newEngine(cfg.PortMin, cfg.PortMax, cfg.Workers)
	if err != nil {
		return nil, err
	}
	m.engine = eng
	if cfg.Region != "" {
		m.regions[cfg.Region] = true
	}
	for _, r := range cfg.Regions {
		m.regions[r] = true
	}
	for r := range m.regions {
		m.met.precreateRegion(r)
	}
	m.dropForeign = m.met.Dropped.WithLabelValues("foreign_source")
	m.dropNoDest = m.met.Dropped.WithLabelValues("no_destination")
	m.dropSend = m.met.Dropped.WithLabelValues("send_error")
	for i, l := range []string{legCaller, legAgent} {
		m.legPackets[i] = m.met.Packets.WithLabelValues(l)
		m.legBytes[i] = m.met.Bytes.WithLabelValues(l)
	}
	m.met.Ports.Set(float64(2 * m.ports.total))
	m.wg.Add(2)
	go m.watch()
	go m.runFill() // cn.go
	return m, nil
}

// Config returns the effective configuration (defaults applied).
func (m *Manager) Config() Config { return m.cfg }

// Metrics returns the manager's collectors.
func (m *Manager) Metrics() *Metrics { return m.met }

// Capacity returns how many calls the port range can relay at once.
func (m *Manager) Capacity() int { return m.ports.total / 2 }

// Active returns the number of open sessions.
func (m *Manager) Active() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

// NewSession opens a relayed session for a call labelled with the
// manager's region. onTimeout (may be nil) is called once, in its own
// goroutine and after the session is closed, when no media arrived for
// media_timeout after the answer; the signalling side should then send
// BYE to both parties. Errors: ErrNoPorts, ErrClosed (SIPStatus 503).
func (m *Manager) NewSession(callID string, onTimeout func()) (*Session, error) {
	return m.NewSessionIn(callID, m.cfg.Region, onTimeout)
}

// NewSessionIn is NewSession with the region label of the call's media
// metrics. A region not in the config's region/regions is labelled
// "other".
func (m *Manager) NewSessionIn(callID, region string, onTimeout func()) (*Session, error) {
	return m.newSessionOn(callID, region, m.bindIP, m.bindIP, onTimeout)
}

// newSessionOn binds the caller-facing leg on callerIP and the
// agent-facing one on agentIP (family.go picks them per family).
func (m *Manager) newSessionOn(callID, region string, callerIP, agentIP netip.Addr, onTimeout func()) (*Session, error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		m.met.Sessions.WithLabelValues("error").Inc()
		return nil, ErrClosed
	}
	if !m.regions[region] {
		if region == "" {
			region = "none"
		} else {
			region = "other"
		}
	}
	a, err := m.ports.bindPair(callerIP)
	if err != nil {
		m.met.Sessions.WithLabelValues("no_ports").Inc()
		m.log.Warn("media: no ports for call", "call_id", callID, "err", err)
		return nil, err
	}
	b, err := m.ports.bindPair(agentIP)
	if err != nil {
		a.rtp.close()
		a.rtcp.close()
		m.ports.put(a.port)
		m.met.Sessions.WithLabelValues("no_ports").Inc()
		m.log.Warn("media: no ports for call", "call_id", callID, "err", err)
		return nil, err
	}
	s := newSession(m, callID, region, onTimeout, a, b)

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		s.Close()
		m.met.Sessions.WithLabelValues("error").Inc()
		return nil, ErrClosed
	}
	m.sessions[s] = struct{}{}
	n := len(m.sessions)
	m.mu.Unlock()
	if err := m.engine.add(s); err != nil {
		s.Close()
		m.met.Sessions.WithLabelValues("error").Inc()
		return nil, err
	}
	m.met.Sessions.WithLabelValues("ok").Inc()
	m.met.ActiveSessions.Set(float64(n))
	m.met.PortsInUse.Set(float64(2 * m.ports.used()))
	return s, nil
}

func (m *Manager) remove(s *Session) {
	m.mu.Lock()
	delete(m.sessions, s)
	n := len(m.sessions)
	m.mu.Unlock()
	m.met.ActiveSessions.Set(float64(n))
	m.met.PortsInUse.Set(float64(2 * m.ports.used()))
}

// watch checks media timeouts and feeds the packet/byte counters.
func (m *Manager) watch() {
	defer m.wg.Done()
	tick := m.cfg.MediaTimeout / 4
	if tick > 250*time.Millisecond {
		tick = 250 * time.Millisecond // per-call timeouts (liveness.go) may be shorter than the node's
	}
	if tick < 10*time.Millisecond {
		tick = 10 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	var list []*Session
	for {
		select {
		case <-m.done:
			return
		case <-t.C:
		}
		list = list[:0]
		m.mu.Lock()
		for s := range m.sessions {
			list = append(list, s)
		}
		m.mu.Unlock()
		for _, s := range list {
			s.pushCounters()
			s.checkTimeout(m.cfg.MediaTimeout)
		}
		clear(list)
	}
}

// Close closes every session (their onTimeout is not called) and stops
// the watcher. NewSession fails with ErrClosed afterwards.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	list := make([]*Session, 0, len(m.sessions))
	for s := range m.sessions {
		list = append(list, s)
	}
	m.mu.Unlock()
	close(m.done)
	m.wg.Wait()
	for _, s := range list {
		s.Close()
	}
	m.engine.close()
	return nil
}

func (m *Manager) String() string {
	return fmt.Sprintf("media relay %s (advertised %s) ports %d-%d", m.cfg.BindIP, m.cfg.AdvertiseIP, m.cfg.PortMin, m.cfg.PortMax)
}
