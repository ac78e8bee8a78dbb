package sip

import (
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
	acked      bool        // the caller's ACK for the 2xx went through
	ackTimer   *time.Timer // 2xx never ACKed → the dialog record ends (64*T1)

	lastUp  []byte // last final non-2xx sent upstream (retransmissions)
	timerG  *time.Timer
	gInt    time.Duration
	ring    *time.Timer
	release *time.Timer

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

// labels are region, carrier, origin for the setup histograms.
func (c *call) labels() []string {
	region := ""
	if c.cur != nil {
		region = c.cur.ep.Region
	}
	return []string{c.s.metrics.regions.label(region), carrierLabel(c.rt.carrier), originLabel(c.rt.origin)}
}

// finish ends the call once: event, metrics, media, tables. c.mu held.
func (c *call) finish(code int, reason string) {
	if c.ended {
		return
	}
	c.ended = true
	s := c.s
	stop(c.ring)
	stop(c.ackTimer)
	c.stopSessionTimer()
	for _, b := range c.branches {
		stop(b.timerA)
		stop(b.timerF)
	}
	s.active.Add(-1)
	s.metrics.ActiveCalls.Dec()
	c.releaseLimits()
	if code > 0 {
		s.metrics.Calls.WithLabelValues(classLabel(code)).Inc()
	} else {
		s.metrics.Calls.WithLabelValues("other").Inc()
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

// logOutcome is the one log line per call outcome (number masked).
func (c *call) logOutcome(code int, reason string) {
	c.s.log.Info("sip: call", "call_id", c.id, "number", phone.Mask(c.rt.route.Number.E164),
		"agent", agentID(c.rt.route.Agent), "region", c.regionName(), "origin", c.rt.origin,
		"status", code, "reason", reason, "setup_ms", c.setupMillis())
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

func (c *call) scheduleRelease(d time.Duration) {
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
