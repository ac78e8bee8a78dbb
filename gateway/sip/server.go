// Package sip is callgate's SIP edge: a transaction-stateful,
// record-routing proxy on github.com/emiago/sipgo's parser and message
// types. A carrier's INVITE is accepted by source address (trunk CIDRs),
// routed from the current routing.Snapshot to the assigned agent's
// endpoint in the nearest healthy region, and the proxy stays in the
// signalling path (Record-Route) for the whole dialog.
//
// Concurrency: each UDP read loop (and each TCP/TLS connection) parses
// and handles a message inline; timers are runtime timers
// (time.AfterFunc), so no goroutine is parked per call. Locks: call.mu
// (one call's state) may be held while taking a table shard lock; never
// the other way round. The transport layer's locks (gateway/sip/transport)
// are leaf locks; no lock is held across a DNS lookup.
package sip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/gateway/sip/transport"
	"github.com/callgate/callgate/routing"
)

// Deps are the SIP edge's collaborators.
type Deps struct {
	Table      *routing.Table
	Events     calls.Publisher       // nil: events discarded
	Log        *slog.Logger          // nil: discarded
	Registerer prometheus.Registerer // nil: metrics not registered
	Media      MediaAnchor           // nil: media flows directly
	// MediaMode is the node's default for agents whose Media is empty:
	// "direct" (default) or "relay". An agent's own setting wins.
	MediaMode string
	// DialogKey is the node's secret from which the key of the MACs in
	// our Record-Route is derived; every node sharing a NATS has the same,
	// so any of them can verify a dialog another routed. nil: a random
	// key (record-routes verify only in this process).
	DialogKey []byte
	// Limits counts calls against workspace limits across the cluster;
	// nil: no limits.
	Limits calls.Limiter
	// Usage charges outbound minutes; nil: outbound calls are free.
	Usage calls.UsageMeter
	// Hook asks routing hooks about new inbound calls (hookcall.go);
	// nil: routing hooks are off.
	Hook *hook.Client
	// SandboxTermination is where outbound calls of sandbox numbers go
	// (carriers.sandbox.termination_uri); empty: they cannot call out.
	SandboxTermination string
	// Control carries API commands to this node's calls (transfer, DTMF):
	// the server registers its handler with Control.Handle; nil: none.
	Control *calls.ControlBus
}

// trunkPrefix is one allowed source range.
type trunkPrefix struct {
	p     netip.Prefix
	trunk *Trunk
}

// Server is the SIP edge.
type Server struct {
	cfg            Config
	table          *routing.Table
	events         calls.Publisher
	log            *slog.Logger
	media          MediaAnchor
	relayByDefault bool
	metrics        *Metrics
	xm             *coreMetrics // session timers, header policy (coremetrics.go)
	prober         *Prober

	tp                  *transport.Transport
	prefixes            []trunkPrefix
	anyAuth             *Trunk // a trunk with credentials and no CIDRs: any source may try
	advHost             string
	rrUDP, rrTCP, rrTLS string   // Record-Route values
	macs                *macPool // Record-Route MACs (dialogauth.go)
	viaHost             string
	six                 *names6 // the carrier side's IPv6 listeners (dualstack.go); nil: none

	serverTx shardMap[*call]  // caller's INVITE top Via branch → call
	clientTx shardMap[*call]  // our branch → call
	dialogs  shardMap[*call]  // Call-ID → call
	epURIs   shardMap[*epURI] // endpoint URI → parsed (proxy.go)

	active   atomic.Int64
	draining atomic.Bool
	started  atomic.Bool
	serving  atomic.Bool   // Serve has started the listeners and every background loop
	idle     chan struct{} // signalled when active drops to 0 while draining
	idleOnce sync.Mutex

	agentAddrs atomic.Pointer[agentSet]

	hook *hook.Client // routing hooks; nil: off

	ag          *agentSide // the agent-facing listener and outbound calls (agent.go); nil: off
	limits      calls.Limiter
	usage       calls.UsageMeter
	sandboxTerm string // carriers.sandbox.termination_uri
	guard       guard  // per-source protection and workspace limits (pike.go, wslimits.go)

	noAckTimeout time.Duration // a 2xx not ACKed this long ends the dialog record (64*T1)

	xferMetrics *transferMetrics // transfermetrics.go
	fast        fastPath         // fastpath.go
	bridges     sync.Map         // a bridged transfer's new leg: its Call-ID → *bridgeLeg (bridge.go)
	retx        sync.Map         // branch → *bridgeRetx: bridge requests retransmitted until answered
	releases    releaseQueues    // calls waiting for releaseTx (call.go)

	refuseTokens atomic.Int64 // 403 replies left in this second
	refuseSecond atomic.Int64

	stop   chan struct{}
	closed sync.Once
}

type agentSet struct {
	snap  *routing.Snapshot
	gen   uint64 // the resolver's generation the host names were read at
	addrs map[netip.Addr]struct{}
}

// New builds the SIP edge and binds its listeners (so that Addrs is known
// before Serve). Call Serve to start handling messages.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if d.Table == nil {
		return nil, errors.New("sip: Deps.Table is required")
	}
	if d.MediaMode != "" && d.MediaMode != "direct" && d.MediaMode != "relay" {
		return nil, fmt.Errorf("sip: Deps.MediaMode %q: want direct or relay", d.MediaMode)
	}
	s := &Server{
		cfg:            cfg,
		table:          d.Table,
		events:         d.Events,
		log:            d.Log,
		media:          d.Media,
		relayByDefault: d.MediaMode == "relay",
		metrics:        NewMetrics(d.Registerer),
		idle:           make(chan struct{}),
		stop:           make(chan struct{}),
		noAckTimeout:   cfg.noAckTimeout,
		macs:           newMacPool(deriveRRKey(d.DialogKey)),
		hook:           d.Hook,
	}
	s.metrics.homeRegion(cfg.Region)
	s.xm = newCoreMetrics(d.Registerer, s.metrics)
	if s.noAckTimeout <= 0 {
		s.noAckTimeout = 64 * t1
	}
	if s.events == nil {
		s.events = calls.Discard{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for i := range cfg.Trunks {
		t := &cfg.Trunks[i]
		cidrs := append([]string(nil), t.CIDRs...)
		cidrs = append(cidrs, Presets[t.Preset]...)
		for _, c := range cidrs {
			p, _ := parsePrefix(c)
			s.prefixes = append(s.prefixes, trunkPrefix{p: p, trunk: t})
		}
		if len(cidrs) == 0 && t.Username != "" && s.anyAuth == nil {
			s.anyAuth = t
		}
	}
	tp, err := transport.New(transport.Config{
		Addr: cfg.Addr, TLSAddr: cfg.TLSAddr, TLSCert: cfg.TLSCert, TLSKey: cfg.TLSKey,
		TLSCAFile: cfg.TLSCAFile, TLSClientCert: cfg.TLSClientCert, TLSClientKey: cfg.TLSClientKey,
		MessageTimeout: cfg.MessageTimeout, MaxConnections: cfg.MaxConnections,
		MaxConnectionsPerSource: cfg.MaxConnectionsPerSource, DNS: cfg.DNS,
		Addr6: cfg.Addr6, TLSAddr6: cfg.TLSAddr6,
	}, (*edge)(s), transport.Metrics{Dropped: s.metrics.Dropped, Rejected: s.metrics.Rejected,
		ConnsRefused: s.metrics.ConnsRefused, Conns: s.metrics.Conns, SendErrors: s.metrics.SendErrors}, s.log)
	if err != nil {
		return nil, err
	}
	s.tp = tp
	s.advHost = cfg.AdvertiseHost
	if s.advHost == "" {
		s.advHost = s.tp.UDPAddr().Addr().String()
	}
	host := s.advHost
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	s.viaHost = host
	s.rrUDP = "<sip:" + host + ":" + strconv.Itoa(int(s.tp.UDPAddr().Port())) + ";lr>"
	s.rrTCP = "<sip:" + host + ":" + strconv.Itoa(int(s.tp.TCPAddr().Port())) + ";transport=tcp;lr>"
	if s.tp.HasTLS() {
		s.rrTLS = "<sip:" + host + ":" + strconv.Itoa(int(s.tp.TLSAddr().Port())) + ";transport=tls;lr>"
	}
	s.six = newNames6(s.tp, cfg.AdvertiseHost6)
	s.prober = newProber(s)
	s.guard = newGuard(cfg, d)
	s.registerDTMF(d.Control) // API digits (dtmf.go)
	if err := s.newAgentSide(cfg, d); err != nil {
		s.tp.Close()
		return nil, err
	}
	s.registerControl(d.Control) // transferapi.go: API transfers of this node's calls
	s.xferMetrics = newTransferMetrics(d.Registerer)
	return s, nil
}

// UDPAddr is the bound UDP address.
func (s *Server) UDPAddr() netip.AddrPort { return s.tp.UDPAddr() }

// TCPAddr is the bound TCP address.
func (s *Server) TCPAddr() netip.AddrPort { return s.tp.TCPAddr() }

// TLSAddr is the bound TLS address (zero when TLS is off).
func (s *Server) TLSAddr() netip.AddrPort { return s.tp.TLSAddr() }

// Metrics returns the server's collectors.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Prober returns the endpoint prober (routing.Health, Status).
func (s *Server) Prober() *Prober { return s.prober }

// Status lists every probed agent endpoint (for GET /v1/regions).
func (s *Server) Status() []EndpointStatus { return s.prober.Status() }

// ActiveCalls is the number of calls in progress.
func (s *Server) ActiveCalls() int { return int(s.active.Load()) }

// tableSizes reports the entries in the server transaction, client
// transaction and dialog tables.
func (s *Server) tableSizes() (serverTx, clientTx, dialogs int) {
	return s.serverTx.len(), s.clientTx.len(), s.dialogs.len()
}

// Ready reports whether the listeners are serving and a routing snapshot is loaded.
func (s *Server) Ready() bool { return s.serving.Load() && s.table.Load() != nil }

// Serve handles SIP until ctx ends, then closes the listeners (active
// calls are abandoned: call Drain first for a graceful stop).
func (s *Server) Serve(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("sip: Serve called twice")
	}
	w := s.cfg.Workers
	if w == 0 {
		w = runtime.GOMAXPROCS(0)
	}
	s.tp.Serve(w)
	if s.ag != nil {
		s.ag.tp.Serve(w)
	}
	go s.prober.run(s.stop)
	go s.janitor(s.stop)
	go s.releases.run(s.stop)
	go s.returnMemory(s.stop, time.Second, time.Minute)
	s.guard.start(s.stop)
	s.serving.Store(true) // Ready from here: the listeners read and every loop runs
	s.log.Info("sip: listening", "udp", s.tp.UDPAddr().String(), "tcp", s.tp.TCPAddr().String(),
		"tls", s.tlsString(), "udp6", s.tp.UDPAddr6().String(), "region", s.cfg.Region)
	select {
	case <-ctx.Done():
	case <-s.stop:
	}
	s.Close()
	return nil
}

func (s *Server) tlsString() string {
	if !s.tp.HasTLS() {
		return ""
	}
	return s.tp.TLSAddr().String()
}

// Close stops the listeners and timers at once.
func (s *Server) Close() error {
	s.closed.Do(func() {
		close(s.stop)
		s.tp.Close()
		if s.ag != nil {
			s.ag.tp.Close()
		}
	})
	return nil
}

// Drain stops taking new calls (INVITEs get 503 with Retry-After) and
// waits until active calls end, ctx ends or the drain timeout passes.
// It returns the number of calls still active.
func (s *Server) Drain(ctx context.Context) int {
	s.draining.Store(true)
	t := time.NewTimer(s.cfg.DrainTimeout)
	defer t.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for s.active.Load() > 0 {
		select {
		case <-ctx.Done():
			return int(s.active.Load())
		case <-t.C:
			return int(s.active.Load())
		case <-tick.C:
		}
	}
	return 0
}

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// allowedSource is the pre-parse filter: trunk CIDRs, agent endpoint
// addresses from the routing snapshot, our own address (loops), and (only
// when a credentials-only trunk exists) any source.
func (s *Server) allowedSource(a netip.Addr) bool {
	if s.trunkFor(a) != nil {
		return true
	}
	if s.isAgentAddr(a) {
		return true
	}
	if s.isOwnAddr(a) {
		return true // our own requests that loop back (482) and the answers to them
	}
	if s.isEgressAddr(a) {
		return true // a carrier termination an outbound call went to (agent.go)
	}
	return s.anyAuth != nil
}

func (s *Server) trunkFor(a netip.Addr) *Trunk {
	for i := range s.prefixes {
		if s.prefixes[i].p.Contains(a) {
			return s.prefixes[i].trunk
		}
	}
	return nil
}

func (s *Server) isAgentAddr(a netip.Addr) bool {
	snap := s.table.Load()
	set := s.agentAddrs.Load()
	if set == nil || set.snap != snap || set.gen != s.tp.DNSGeneration() {
		set = s.buildAgentSet(snap)
	}
	_, ok := set.addrs[a]
	return ok
}

func (s *Server) buildAgentSet(snap *routing.Snapshot) *agentSet {
	set := &agentSet{snap: snap, gen: s.tp.DNSGeneration(), addrs: map[netip.Addr]struct{}{}}
	snap.Agents(func(ag *routing.Agent) {
		for _, ep := range ag.Endpoints {
			var u sip.Uri
			if sip.ParseUri(ep.URI, &u) != nil {
				continue
			}
			h := u.Host
			if a, err := netip.ParseAddr(trimBrackets(h)); err == nil {
				set.addrs[a.Unmap()] = struct{}{}
				continue
			}
			for _, a := range s.tp.LastAddrs(&u) { // the name's address and its RFC 3263 targets'
				set.addrs[a] = struct{}{}
			}
		}
	})
	s.agentAddrs.Store(set)
	return set
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

// refuseSource answers an unlisted source 403 (rate-limited, and only
// for what parses as a request) or drops it when silent_reject is set.
func (s *Server) refuseSource(data []byte, from peer) {
	s.metrics.Rejected.WithLabelValues("unknown_source").Inc()
	if s.cfg.SilentReject || !s.refuseToken() {
		return
	}
	m, err := s.tp.Parser().ParseSIP(data)
	if err != nil {
		return
	}
	req, ok := m.(*sip.Request)
	if !ok || req.IsAck() || !hasTxHeaders(req) || s.scanner(req) {
		return
	}
	s.replyStateless(req, from, 403, "Forbidden")
}

// refuseToken allows 100 refusals per second (no reflection amplifier).
func (s *Server) refuseToken() bool {
	now := time.Now().Unix()
	if s.refuseSecond.Load() != now {
		s.refuseSecond.Store(now)
		s.refuseTokens.Store(100)
	}
	return s.refuseTokens.Add(-1) >= 0
}

// handleDatagram parses one UDP datagram and handles it.
func (s *Server) handleDatagram(data []byte, from peer) {
	if len(data) <= 4 {
		empty := true
		for _, c := range data {
			if c != '\r' && c != '\n' && c != 0 {
				empty = false
			}
		}
		if empty { // keep-alive
			return
		}
	}
	if s.fastPath(data, from) { // fastpath.go: plain ACK/BYE of a dialog, and BYE answers
		return
	}
	m, err := s.parseDatagram(data) // sipgo's message, fewer allocations (parse.go)
	if err != nil {
		s.malformed(data, m, from, err)
		return
	}
	s.handleMessage(m, from)
}

// malformed answers 400 when the broken message is a request whose
// transaction headers parsed (so a response can be routed), else drops it.
func (s *Server) malformed(data []byte, m sip.Message, from peer, err error) {
	req, ok := m.(*sip.Request)
	if ok && !req.IsAck() && canReply(req) && s.refuseToken() {
		s.metrics.Rejected.WithLabelValues("malformed").Inc()
		setReceived(req, from)
		fillFromRaw(req, data)
		s.replyStateless(req, from, 400, "Bad Request")
		return
	}
	if _, isRes := m.(*sip.Response); !isRes && s.refuseToken() && s.replyUnparsed(data, from) {
		s.metrics.Rejected.WithLabelValues("malformed").Inc()
		return
	}
	s.metrics.Dropped.WithLabelValues("malformed").Inc()
	s.log.Debug("sip: malformed message dropped", "from", from.Addr.String(), "err", err)
}

// replyUnparsed answers a request whose start line did not parse (LWS or
// brackets in the Request-URI, extra spaces, an unknown URI scheme) with
// 400, or 416 for an unknown scheme, echoing its Via, From, To, Call-ID
// and CSeq lines. It reports whether it answered.
func (s *Server) replyUnparsed(data []byte, from peer) bool {
	text := string(data)
	if i := strings.Index(text, "\r\n\r\n"); i >= 0 {
		text = text[:i]
	}
	lines := strings.Split(text, "\r\n")
	start := strings.Fields(lines[0])
	if len(start) < 3 || strings.HasPrefix(start[0], "SIP/") || !strings.HasPrefix(start[len(start)-1], "SIP/") ||
		strings.EqualFold(start[0], "ACK") {
		return false
	}
	code, reason := 400, "Bad Request"
	if i := strings.IndexByte(start[1], ':'); i > 0 && len(start) == 3 {
		sch := strings.ToLower(start[1][:i])
		if sch != "sip" && sch != "sips" && sch != "tel" && isToken(sch) {
			code, reason = 416, "Unsupported URI Scheme"
		}
	}
	var b strings.Builder
	b.WriteString("SIP/2.0 " + strconv.Itoa(code) + " " + reason + "\r\n")
	var via *sip.ViaHeader
	have := map[string]bool{}
	for _, l := range lines[1:] {
		name, _, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		switch n := strings.ToLower(strings.TrimSpace(name)); n {
		case "via", "v":
			if via == nil {
				hs, err := sip.HeadersParser(sip.DefaultHeadersParser()).ParseHeader(nil, []byte(l))
				if err != nil || len(hs) == 0 {
					return false
				}
				via, _ = hs[0].(*sip.ViaHeader)
				if via != nil && via.Host != "" && trimBrackets(via.Host) != from.Addr.Addr().String() &&
					!via.Params.Has("received") && len(hs) == 1 {
					l += ";received=" + from.Addr.Addr().String() // RFC 3261 18.2.1
				}
			}
			b.WriteString(l + "\r\n")
		case "from", "f", "to", "t", "call-id", "i", "cseq":
			if !have[n] {
				have[n] = true
				if (n == "to" || n == "t") && !rawHasTag(l) {
					l += ";tag=" + randHex(8) // RFC 3261 8.2.6.2
				}
				b.WriteString(l + "\r\n")
			}
		}
	}
	if via == nil || via.Host == "" {
		return false
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	to := from
	if from.Proto == protoUDP {
		port := via.Port
		if rp, ok := via.Params.Get("rport"); ok && rp != "" {
			port = int(from.Addr.Port())
		}
		if port <= 0 || port > 65535 {
			port = 5060
		}
		to.Addr = netip.AddrPortFrom(from.Addr.Addr(), uint16(port))
	}
	s.metrics.Responses.WithLabelValues("other", codeLabel(code)).Inc()
	_ = s.tpFor(to).Send(to, []byte(b.String()))
	return true
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return s != ""
}

// canReply: a response can be routed back by the top Via.
func canReply(req *sip.Request) bool {
	v := req.Via()
	return v != nil && v.Host != ""
}

func hasTxHeaders(req *sip.Request) bool {
	v := req.Via()
	return v != nil && v.Host != "" && req.CallID() != nil && req.CSeq() != nil &&
		req.From() != nil && req.To() != nil
}

// validate checks what the proxy relies on; "" means fine.
func validate(req *sip.Request) string {
	if !hasTxHeaders(req) {
		return "missing Via, From, To, Call-ID or CSeq"
	}
	// sipgo upper-cases the request-line method, not CSeq's
	if !strings.EqualFold(string(req.CSeq().MethodName), string(req.Method)) {
		return "CSeq method does not match the request method"
	}
	var n [6]int
	for _, h := range req.Headers() {
		switch h.(type) {
		case *sip.CallIDHeader:
			n[0]++
		case *sip.FromHeader:
			n[1]++
		case *sip.ToHeader:
			n[2]++
		case *sip.CSeqHeader:
			n[3]++
		case *sip.MaxForwardsHeader:
			n[4]++
		case *sip.ContentLengthHeader:
			n[5]++
		}
	}
	if n[0] > 1 || n[1] > 1 || n[2] > 1 || n[3] > 1 || n[4] > 1 || n[5] > 1 {
		return "repeated Call-ID, From, To, CSeq, Max-Forwards or Content-Length"
	}
	if req.Recipient.Headers != nil && req.Recipient.Headers.Length() > 0 {
		return "headers in the Request-URI"
	}
	if *req.CallID() == "" {
		return "empty Call-ID"
	}
	if cl := req.ContentLength(); cl != nil && int(*cl) != len(req.Body()) {
		return "Content-Length does not match the body"
	}
	if req.SipVersion != "SIP/2.0" {
		return "unsupported SIP version"
	}
	return ""
}

// handleMessage dispatches one parsed message.
func (s *Server) handleMessage(m sip.Message, from peer) {
	switch msg := m.(type) {
	case *sip.Request:
		s.handleRequest(msg, from)
	case *sip.Response:
		s.handleResponse(msg, from)
	}
}

func (s *Server) handleRequest(req *sip.Request, from peer) {
	if s.scanner(req) {
		return // known scanners get no answer at all
	}
	s.metrics.request(string(req.Method)).Inc()
	setReceived(req, from) // before any reply: 400 and 505 carry received= too
	if why := validate(req); why != "" {
		if req.IsAck() || !canReply(req) {
			s.metrics.Dropped.WithLabelValues("malformed").Inc()
			return
		}
		if req.SipVersion != "SIP/2.0" {
			s.metrics.Rejected.WithLabelValues("malformed").Inc()
			req.SipVersion = "SIP/2.0"
			s.replyStateless(req, from, 505, "Version Not Supported")
			return
		}
		s.metrics.Rejected.WithLabelValues("malformed").Inc()
		if unknownMethodMismatch(req) { // RFC 4475 3.1.2.18: 501 for a method we do not implement
			s.replyStateless(req, from, 501, "Not Implemented", sip.NewHeader("Allow", allowMethods),
				sip.NewHeader("Warning", `399 callgate "`+why+`"`))
			return
		}
		s.replyStateless(req, from, 400, "Bad Request", sip.NewHeader("Warning", `399 callgate "`+why+`"`))
		return
	}
	if req.Method != sip.OPTIONS && s.looped(req) {
		s.refuseLoop(req, from)
		return
	}
	switch req.Method {
	case sip.ACK:
		s.handleAck(req, from)
		return
	case sip.CANCEL:
		s.handleCancel(req, from)
		return
	}
	toTag := ""
	if to := req.To(); to.Params != nil {
		toTag, _ = to.Params.Get("tag")
	}
	if toTag == "" && req.Method == sip.INVITE {
		s.popPreloadedRoute(req) // a UA with callgate as its outbound proxy
	}
	if toTag != "" && s.bridgeRequest(req, from) {
		return // in a bridged transfer's new leg (bridge.go)
	}
	if s.refuseSmallSession(req, from) { // RFC 4028: 422 below sip.session_timers.min_se (sessiontimer.go)
		return
	}
	if toTag != "" || s.routeIsUs(req) {
		s.forwardInDialog(req, from)
		return
	}
	if sch := strings.ToLower(req.Recipient.Scheme); sch != "sip" && sch != "sips" && sch != "tel" {
		s.metrics.Rejected.WithLabelValues("bad_uri_scheme").Inc()
		s.replyStateless(req, from, 416, "Unsupported URI Scheme")
		return
	}
	if pr := proxyRequireUnsupported(headerValuesAll(req, "proxy-require")); len(pr) > 0 { // "timer" is ours (sessiontimer.go)
		s.metrics.Rejected.WithLabelValues("bad_extension").Inc()
		s.replyStateless(req, from, 420, "Bad Extension", sip.NewHeader("Unsupported", strings.Join(pr, ", ")))
		return
	}
	switch req.Method {
	case sip.INVITE:
		if from.Side == sideAgent {
			s.handleOutboundInvite(req, from) // agent.go: only calls out arrive here
			return
		}
		s.handleInvite(req, from)
	case sip.OPTIONS:
		if mf := req.MaxForwards(); mf != nil && *mf == 0 && !s.isUs(&req.Recipient) {
			s.replyStateless(req, from, 483, "Too Many Hops")
			return
		}
		s.replyStateless(req, from, 200, "OK",
			sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, REFER, NOTIFY"),
			sip.NewHeader("Accept", "application/sdp"))
	default:
		if methodLabel(string(req.Method)) == "other" {
			// an unknown method outside a dialog: no route for it here
			s.replyStateless(req, from, 404, "Not Found")
			return
		}
		s.replyStateless(req, from, 405, "Method Not Allowed",
			sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK, REFER, NOTIFY"))
	}
}

// headerValuesAll returns the comma-separated values of every header
// named lower (a lower-case name).
func headerValuesAll(req *sip.Request, lower string) []string {
	var out []string
	for _, h := range req.Headers() {
		if !nameIs(h.Name(), lower) {
			continue
		}
		for _, v := range strings.Split(h.Value(), ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// setReceived adds received (and rport when asked for, or on streams) to
// the top Via (RFC 3261 18.2.1, RFC 3581) so that responses find their way.
func setReceived(req *sip.Request, from peer) {
	v := req.Via()
	if v == nil || v.Host == "" || v.Params.Has("received") {
		return
	}
	var ipb [64]byte
	ipt := from.Addr.Addr().AppendTo(ipb[:0]) // the address as text, built only when added
	if trimBrackets(v.Host) != string(ipt) {
		v.Params = v.Params.Add("received", string(ipt))
	}
	if rp, ok := v.Params.Get("rport"); (ok && rp == "") || from.Proto != protoUDP {
		v.Params = v.Params.Add("rport", strconv.Itoa(int(from.Addr.Port())))
		if !v.Params.Has("received") {
			v.Params = v.Params.Add("received", string(ipt))
		}
	}
}

// isUs reports whether u names this proxy (host and one of our ports).
func (s *Server) isUs(u *sip.Uri) bool {
	if s.isUs6(u) {
		return true
	}
	if u != nil && s.ag != nil && s.ag.isUs(u) {
		return true
	}
	if u == nil || trimBrackets(u.Host) != trimBrackets(s.advHost) {
		if u == nil {
			return false
		}
		a, err := netip.ParseAddr(trimBrackets(u.Host))
		if err != nil || a.Unmap() != s.tp.UDPAddr().Addr() {
			return false
		}
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return port == int(s.tp.UDPAddr().Port()) || port == int(s.tp.TCPAddr().Port()) ||
		(s.tp.HasTLS() && port == int(s.tp.TLSAddr().Port()))
}

func (s *Server) routeIsUs(req *sip.Request) bool {
	r := topRoute(req)
	return r != nil && s.isUs(&r.Address)
}

// tidyTag drops the LWS the parser keeps around a tag parameter's name
// and value (";tag = 1918181833n", RFC 4475 wsinv): the tag is the same,
// written without it, and is not taken for missing.
func tidyTag(ps sip.HeaderParams) {
	for i := range ps {
		k := ps[i].K
		if k != "tag" && strings.EqualFold(strings.TrimSpace(k), "tag") {
			ps[i].K = "tag"
			ps[i].V = strings.TrimSpace(ps[i].V)
		}
	}
}

// rawHasTag reports whether a raw To/From line has a tag parameter.
func rawHasTag(l string) bool {
	l = strings.ToLower(l)
	for i := strings.IndexByte(l, ';'); i >= 0; {
		rest := strings.TrimLeft(l[i+1:], " \t")
		if strings.HasPrefix(rest, "tag") && strings.HasPrefix(strings.TrimLeft(rest[3:], " \t"), "=") {
			return true
		}
		j := strings.IndexByte(l[i+1:], ';')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// rawHeaderNames are the transaction headers fillFromRaw recovers, with
// their compact forms.
var rawHeaderNames = map[string]string{"from": "From", "f": "From", "to": "To", "t": "To",
	"call-id": "Call-ID", "i": "Call-ID", "cseq": "CSeq"}

// fillFromRaw adds to a partly parsed request the From, To, Call-ID and
// CSeq that it lacks, from the raw message (a parse error stops sipgo's
// parser before later headers): parsed when they parse, else verbatim,
// so that the 400 copies them (RFC 3261 8.2.6.2).
func fillFromRaw(req *sip.Request, data []byte) {
	if req.From() != nil && req.To() != nil && req.CallID() != nil && req.CSeq() != nil {
		return
	}
	text := string(data)
	if i := strings.Index(text, "\r\n\r\n"); i >= 0 {
		text = text[:i]
	}
	var unfolded []string
	for i, l := range strings.Split(text, "\r\n") {
		if i == 0 {
			continue
		}
		if (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")) && len(unfolded) > 0 {
			unfolded[len(unfolded)-1] += " " + strings.TrimSpace(l)
			continue
		}
		unfolded = append(unfolded, l)
	}
	done := map[string]bool{}
	for _, l := range unfolded {
		name, value, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		canon, ok := rawHeaderNames[strings.ToLower(strings.TrimSpace(name))]
		if !ok || done[canon] {
			continue
		}
		done[canon] = true
		var have bool
		switch canon {
		case "From":
			have = req.From() != nil
		case "To":
			have = req.To() != nil
		case "Call-ID":
			have = req.CallID() != nil
		case "CSeq":
			have = req.CSeq() != nil
		}
		if have {
			continue
		}
		if hs, err := sip.HeadersParser(sip.DefaultHeadersParser()).ParseHeader(nil, []byte(l)); err == nil && len(hs) == 1 {
			req.AppendHeader(hs[0])
			continue
		}
		req.AppendHeader(sip.NewHeader(canon, strings.TrimSpace(value)))
	}
}

// writeRawHeader writes a transaction header that did not parse, as it
// came (To gets a tag on a response other than 100 if it has none).
func writeRawHeader(buf *bytes.Buffer, req *sip.Request, name string, code int) {
	for _, h := range req.Headers() {
		if !strings.EqualFold(h.Name(), name) {
			continue
		}
		v := h.Value()
		buf.WriteString(name)
		buf.WriteString(": ")
		buf.WriteString(v)
		if name == "To" && code > 100 && !rawHasTag(v) {
			buf.WriteString(";tag=")
			buf.WriteString(randHex(8))
		}
		buf.WriteString("\r\n")
		return
	}
}

// topRoute is req.Route() without its allocation when there is no Route.
func topRoute(req *sip.Request) *sip.RouteHeader {
	if headerNamed(req.Headers(), "route") == nil {
		return nil
	}
	return req.Route()
}

// headerNamed is sipgo's GetHeader for a lower-case name without its
// allocations (GetHeader lower-cases, in a new string, the name of every
// header it passes that sipgo does not parse: Subject, User-Agent, ...).
func headerNamed(hs []sip.Header, lower string) sip.Header {
	for _, h := range hs {
		if nameIs(h.Name(), lower) {
			return h
		}
	}
	return nil
}

// nameIs reports whether a header name is lower once its ASCII letters
// are lower-cased (sipgo's HeaderToLower(name) == lower).
func nameIs(name, lower string) bool {
	if len(name) != len(lower) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// replyStateless sends a response built from req to its sender.
// It is written straight into a pooled buffer (no response object).
func (s *Server) replyStateless(req *sip.Request, to peer, code int, reason string, hdrs ...sip.Header) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	writeResponse(buf, req, code, reason, hdrs...)
	to = replyPeer(req, to)
	s.metrics.response(string(req.Method), code).Inc()
	if err := s.tpFor(to).Send(to, buf.Bytes()); err != nil {
		s.log.Debug("sip: send response", "to", to.Addr.String(), "err", err)
	}
	if buf.Cap() <= 1<<16 {
		bufPool.Put(buf)
	}
}

// writeResponse serialises a response to req (RFC 3261 8.2.6): every Via
// in order, Record-Route on 18x/2xx, From, To (with a tag added on
// responses other than 100 when the request's To has none), Call-ID,
// CSeq, Timestamp on 100, then hdrs and an empty body.
func writeResponse(buf *bytes.Buffer, req *sip.Request, code int, reason string, hdrs ...sip.Header) {
	buf.WriteString("SIP/2.0 ")
	buf.Write(strconv.AppendInt(buf.AvailableBuffer(), int64(code), 10))
	buf.WriteByte(' ')
	buf.WriteString(reason)
	buf.WriteString("\r\n")
	copyRR := req.Method != sip.REGISTER && !req.IsAck() && ((code >= 180 && code < 190) || (code >= 200 && code < 300))
	for _, h := range req.Headers() {
		switch h.(type) {
		case *sip.ViaHeader:
		case *sip.RecordRouteHeader:
			if !copyRR {
				continue
			}
		default:
			if code != 100 || !strings.EqualFold(h.Name(), "timestamp") {
				continue
			}
		}
		writeHdr(buf, h)
	}
	if h := req.From(); h != nil {
		tidyTag(h.Params)
		writeHdr(buf, h)
	} else {
		writeRawHeader(buf, req, "From", code)
	}
	if h := req.To(); h != nil {
		tidyTag(h.Params)
		buf.WriteString("To: ")
		writeNameAddr(buf, h.DisplayName, &h.Address, h.Params)
		if code > 100 && !h.Params.Has("tag") {
			buf.WriteString(";tag=")
			buf.WriteString(randHex(8))
		}
		buf.WriteString("\r\n")
	} else {
		writeRawHeader(buf, req, "To", code)
	}
	if h := req.CallID(); h != nil {
		writeHdr(buf, h)
	} else {
		writeRawHeader(buf, req, "Call-ID", code)
	}
	if h := req.CSeq(); h != nil {
		writeHdr(buf, h)
	} else {
		writeRawHeader(buf, req, "CSeq", code)
	}
	for _, h := range hdrs {
		writeHeaderLine(buf, h)
	}
	buf.WriteString("Content-Length: 0\r\n\r\n")
}

// replyPeer is where a response to req goes (RFC 3261 18.2.2, RFC 3581):
// on a stream, the connection it came on; on UDP the source address
// (received) and the Via's sent-by port, or the source port when rport
// was asked for.
func replyPeer(req *sip.Request, from peer) peer {
	if from.Proto != protoUDP {
		return from
	}
	v := req.Via()
	if v == nil {
		return from
	}
	if rp, ok := v.Params.Get("rport"); ok && rp != "" {
		return from
	}
	port := v.Port
	if port <= 0 || port > 65535 {
		port = 5060
	}
	return peer{Proto: protoUDP, Addr: netip.AddrPortFrom(from.Addr.Addr(), uint16(port)), Side: from.Side}
}

// retryAfter is the Retry-After header for 503 replies.
func (s *Server) retryAfter() sip.Header {
	return sip.NewHeader("Retry-After", strconv.Itoa(s.cfg.RetryAfter))
}

// janitor drops dialog records older than max_call_duration.
func (s *Server) janitor(stop <-chan struct{}) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			var old []*call
			s.dialogs.rangeAll(func(_ string, c *call) {
				c.mu.Lock()
				if !c.start.IsZero() && now.Sub(c.start) > s.cfg.MaxCallDuration {
					old = append(old, c)
				}
				c.mu.Unlock()
			})
			for _, c := range old {
				c.mu.Lock()
				c.finish(0, "max_duration")
				c.mu.Unlock()
			}
		}
	}
}

// busyEntries is the table size (transactions and dialogs) above which
// the tables count as having been busy.
const busyEntries = 1000

// returnMemory hands freed memory back to the OS once the transaction
// and dialog tables drain to empty after having been busy (at most once
// per minGap): the Go scavenger alone returns it over many minutes.
func (s *Server) returnMemory(stop <-chan struct{}, every, minGap time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	peak := 0
	var last time.Time
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			a, b, c := s.tableSizes()
			n := a + b + c
			if n > peak {
				peak = n
			}
			if n == 0 && peak >= busyEntries && now.Sub(last) >= minGap {
				debug.FreeOSMemory()
				s.log.Debug("sip: tables drained, memory returned to the OS", "peak_entries", peak)
				peak, last = 0, now
			}
		}
	}
}

func (s *Server) String() string {
	return fmt.Sprintf("sip.Server{udp=%s tcp=%s}", s.tp.UDPAddr(), s.tp.TCPAddr())
}
