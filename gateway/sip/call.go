package sip

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// A call: one INVITE from a carrier and the dialog it creates, its state
// and timers, and how it ends (the outcome line, the events, the release
// of its transactions).

// Call states (server side, towards the caller).
const (
	stCalling    = iota // INVITE forwarded, no provisional forwarded yet
	stProceeding        // a provisional was forwarded
	stAccepted          // a 2xx was forwarded: dialog confirmed
	stCompleted         // a final non-2xx was sent upstream
)

const (
	t1 = 500 * time.Millisecond
	t2 = 4 * time.Second
	// linger keeps a finished call's transactions to absorb stray
	// retransmissions (INVITE, ACK, 2xx, downstream 487).
	linger = 5 * time.Second
	// timerH bounds waiting for the ACK of a non-2xx final response.
	timerH = 32 * time.Second
)

// call is one INVITE from a carrier and the dialog it creates.
type call struct {
	s  *Server
	mu sync.Mutex

	id       string // Call-ID
	inv      *sip.Request
	up       peer // where the INVITE came from; responses go there
	upBranch string
	fromTag  string
	rt       routed    // what the call keeps of its routing.Decision
	out      *outbound // outbound call from an agent (outbound.go); nil: inbound
	// cseqDelta is added to the CSeq of the caller's requests toward the
	// callee once an INVITE was re-sent with a carrier's credentials
	// (egressauth.go); set before the dialog is recorded, then fixed.
	cseqDelta uint32
	trunk     *Trunk
	start     time.Time

	cands    []routing.Endpoint
	ci       int
	cur      *branch
	branches []*branch
	b0       branch     // the first branch, allocated with the call (newBranchState)
	br0      [1]*branch // the first backing array of branches
	fwdBody  []byte

	resolving bool // cands[ci]'s host name is being looked up (lookupThenBranch)

	tgt targetCursor // cands[ci]'s RFC 3263 targets (targets.go)

	limitDir string // direction counted by the workspace limiter; "": not counted (wslimits.go)

	// inspect is set when a feature of this call must see every in-dialog
	// request and response fully parsed (session timers, REFER, INFO DTMF,
	// header policy, SRTP): a fast path that forwards messages without
	// sipgo's parser must leave such calls to the full path.
	inspect atomic.Bool

	state      int
	cancelled  bool
	provSeen   bool
	answeredAt time.Time
	ended      bool
	acked      bool // the caller's ACK for the 2xx went through

	lastUp []byte // last final non-2xx sent upstream (retransmissions)
	timerG *time.Timer
	gInt   time.Duration
	// ring is the ring timeout until the call is answered, then the same
	// timer, re-armed, the 2xx's no-ACK timeout (onCallTimer): one
	// runtime timer and one func value per call, not two.
	ring    *time.Timer
	release *time.Timer // releaseTx for a delay that is not queued (scheduleRelease)
	// releaseAt (unix ns) is when the queued release is due (s.releases);
	// 0: none. An entry of the queue for another time is stale.
	releaseAt int64

	log atomic.Pointer[slog.Logger] // call-scoped (call_id); see logger

	media       MediaSession
	answerIn    []byte // last 2xx SDP from the agent and its rewrite
	answerOut   []byte
	callerSDP   []byte // direct media: the caller's last SDP in the dialog (bridge3pcc.go)
	agentTag    string
	agentTarget *sip.Uri // agent's Contact (for BYE on media timeout)

	ctl *callControl // routing hook and fallback chain (hookcall.go); nil for plain calls

	st *sessionTimer // RFC 4028 session timer (sessiontimer.go); nil: none

	// header policy (headers.go): the workspace's sip_headers, the
	// custom bytes of the forwarded INVITE, the headers kept for history
	hp          atomic.Pointer[routing.SIPHeaders]
	customBytes int
	kept        map[string]string

	dtmf *callDTMF // INFO digits sent by callgate and the CSeq renumbering (dtmf.go); nil: none

	xs *xferState // transfers (transfer.go); nil until the call's first in-dialog request
}

// routed is what a call keeps of its routing.Decision (number known):
// the whole Decision would move every call into a larger size class.
type routed struct {
	route                         *routing.Route
	origin, carrier               string
	forwardedFrom, originalCalled string
	from, to                      string // calling and called numbers (E.164 when numbers)
}

func routedOf(d *routing.Decision) routed {
	return routed{route: d.Route, origin: d.Origin, carrier: d.Carrier,
		forwardedFrom: d.ForwardedFrom, originalCalled: d.OriginalCalled}
}

func stop(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

// labels are region, carrier, origin for the setup histograms (an
// array: passed as l[:] it stays on the caller's stack).
func (c *call) labels() [3]string {
	region := ""
	if c.cur != nil {
		region = c.cur.ep.Region
	}
	return [3]string{c.s.metrics.regions.label(region), carrierLabel(c.rt.carrier), originLabel(c.rt.origin)}
}

// finish ends the call once: event, metrics, media, tables. c.mu held.
func (c *call) finish(code int, reason string) {
	if c.ended {
		return
	}
	c.ended = true
	s := c.s
	stop(c.ring)
	c.stopSessionTimer()
	for _, b := range c.branches {
		stop(b.timer)
	}
	s.active.Add(-1)
	s.metrics.ActiveCalls.Dec()
	c.releaseLimits()
	if code > 0 {
		s.metrics.call(code).Inc()
	} else {
		s.metrics.call(0).Inc() // other
	}
	if c.out != nil {
		s.metrics.OutboundActive.Dec()
		s.metrics.OutboundCalls.WithLabelValues(classLabel(code)).Inc()
		c.releaseOutbound()
	}
	c.endBridge() // bridge.go: the new leg of a bridged transfer ends too
	c.publish(calls.Ended, code, reason)
	s.dialogs.delIf(c.id, c)
	// Keep only what stray retransmissions need until release: the
	// forwarded INVITE of a branch still waiting for its final response
	// (to ACK a late 487), the final response sent upstream.
	for _, b := range c.branches {
		b.raw = nil
		if b.final || !b.gotResp {
			b.inv = nil
		}
	}
	c.inv = nil
	c.cands = nil
	c.fwdBody = nil
	c.answerIn = nil
	c.callerSDP = nil
	if c.lastUp != nil && c.up.Proto == protoUDP {
		c.scheduleRelease(timerH) // until the ACK comes
	} else {
		c.scheduleRelease(linger)
	}
	c.logOutcome(code, reason)
}

// logOutcome is the one log line per call outcome (number masked). Its
// attributes are made only when the line is written (Info enabled).
func (c *call) logOutcome(code int, reason string) {
	ctx := context.Background()
	if !c.s.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	c.s.log.LogAttrs(ctx, slog.LevelInfo, "sip: call", slog.String("call_id", c.id),
		slog.String("number", phone.Mask(c.rt.route.Number.E164)), slog.String("agent", agentID(c.rt.route.Agent)),
		slog.String("region", c.regionName()), slog.String("origin", c.rt.origin),
		slog.Int("status", code), slog.String("reason", reason), slog.Float64("setup_ms", c.setupMillis()))
}

// logger is the call's logger: the server's with the call_id attached,
// made on first use (safe without c.mu). The per-call outcome line
// (logOutcome) writes call_id itself: building a logger costs
// allocations that every call would pay.
func (c *call) logger() *slog.Logger {
	if l := c.log.Load(); l != nil {
		return l
	}
	l := c.s.log.With("call_id", c.id)
	if !c.log.CompareAndSwap(nil, l) {
		l = c.log.Load()
	}
	return l
}

// scheduleRelease has releaseTx run d from now (replacing an earlier
// schedule): queued in s.releases for linger and timerH, the two delays
// used, else a runtime timer. c.mu held.
func (c *call) scheduleRelease(d time.Duration) {
	at := time.Now().Add(d).UnixNano()
	c.releaseAt = at
	if c.s.releases.push(d, c, at) {
		stop(c.release)
		return
	}
	if c.release == nil {
		c.release = time.AfterFunc(d, c.releaseTx)
		return
	}
	c.release.Reset(d)
}

// releaseTx drops the call's transaction entries (it stays in dialogs
// while the dialog lives).
func (c *call) releaseTx() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseLocked()
}

// releaseDue runs a queued release unless it was scheduled again since.
func (c *call) releaseDue(at int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.releaseAt == at {
		c.releaseLocked()
	}
}

// releaseLocked is releaseTx with c.mu held.
func (c *call) releaseLocked() {
	c.releaseAt = 0
	s := c.s
	s.serverTx.delIf(c.upBranch, c)
	stop(c.timerG)
	c.timerG = nil
	if !c.ended {
		// answered: keep client branch entries for 2xx retransmissions
		// until the dialog ends (finish schedules another release)
		return
	}
	for _, b := range c.branches {
		s.clientTx.delIf(b.id, c)
		b.raw, b.inv = nil, nil
	}
	c.branches = nil
	c.inv = nil
	c.lastUp = nil
}

func (c *call) regionName() string {
	if c.cur != nil {
		return c.cur.ep.Region
	}
	if len(c.cands) > 0 {
		return c.cands[0].Region
	}
	return c.s.cfg.Region // no endpoint chosen: this node's region
}

func (c *call) setupMillis() float64 {
	if c.answeredAt.IsZero() {
		return 0
	}
	return float64(c.answeredAt.Sub(c.start).Microseconds()) / 1000
}

func agentID(a *routing.Agent) string {
	if a == nil {
		return ""
	}
	return a.ID
}

func (c *call) publish(kind string, status int, reason string) {
	e := calls.Event{
		Kind: kind, CallID: c.id, Time: time.Now(), Number: c.rt.route.Number.E164, Workspace: c.rt.route.Number.Workspace,
		Agent: agentID(c.rt.route.Agent), Region: c.regionName(), Carrier: c.rt.carrier, Origin: c.rt.origin,
		Source: "sip", Status: status, Reason: reason, SetupMillis: c.setupMillis(),
		Direction: calls.Inbound, From: c.rt.from, To: c.rt.to, ForwardedFrom: c.rt.forwardedFrom,
	}
	if c.cur != nil {
		e.Endpoint = c.cur.ep.URI
	}
	if c.ctl != nil {
		e.HookOutcome, e.FallbackStep = c.ctl.hookOutcome, c.ctl.step
	}
	if c.out != nil {
		e.Direction, e.From, e.To, e.Workspace = calls.Outbound, c.out.callerID, c.out.dest, c.out.ws
	}
	if kind == calls.Ended {
		if !c.answeredAt.IsZero() {
			e.Duration = time.Since(c.answeredAt)
		}
		if c.media != nil {
			e.Media = c.media.Close()
			c.media = nil
		}
		e.Transfer = c.transferInfo() // transfer.go
	}
	e.ForwardedFrom = c.rt.forwardedFrom // the registered business line, for the history
	if kind == calls.Started {
		c.admitHeaders() // the workspace's header policy, applied to the INVITE (headers.go)
	}
	e.Headers = c.keptHeaders()
	c.s.events.Publish(e)
}

// releaseTick is how often the release queues are looked at: a call's
// transactions go up to this much after their linger (or Timer H).
const releaseTick = 100 * time.Millisecond

// releaseQueues hold the calls waiting for releaseTx, one FIFO per delay
// (linger, timerH): each delay is a constant, so each queue is in due
// order and one goroutine (run) releases what is due every releaseTick,
// where a runtime timer per call would start a goroutine per call.
type releaseQueues struct {
	mu sync.Mutex
	q  [2]releaseQueue // linger, timerH
}

type releaseQueue struct {
	e    []releaseEntry
	head int
}

type releaseEntry struct {
	c  *call
	at int64 // c.releaseAt when queued
}

// push queues c's release due at at; false when d has no queue.
func (r *releaseQueues) push(d time.Duration, c *call, at int64) bool {
	i := 0
	switch d {
	case linger:
	case timerH:
		i = 1
	default:
		return false
	}
	r.mu.Lock()
	q := &r.q[i]
	if q.head > 0 && q.head >= len(q.e)/2 { // reuse the front
		n := copy(q.e, q.e[q.head:])
		clear(q.e[n:])
		q.e, q.head = q.e[:n], 0
	}
	q.e = append(q.e, releaseEntry{c: c, at: at})
	r.mu.Unlock()
	return true
}

// due moves the entries due at now into out.
func (r *releaseQueues) due(now int64, out []releaseEntry) []releaseEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.q {
		q := &r.q[i]
		for q.head < len(q.e) && q.e[q.head].at <= now {
			out = append(out, q.e[q.head])
			q.e[q.head] = releaseEntry{}
			q.head++
		}
		if q.head == len(q.e) {
			q.e, q.head = q.e[:0], 0
		}
	}
	return out
}

// run releases the calls that are due until stop is closed.
func (r *releaseQueues) run(stop <-chan struct{}) {
	t := time.NewTicker(releaseTick)
	defer t.Stop()
	var batch []releaseEntry
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			batch = r.due(now.UnixNano(), batch[:0])
			for i, e := range batch {
				e.c.releaseDue(e.at)
				batch[i] = releaseEntry{}
			}
		}
	}
}
