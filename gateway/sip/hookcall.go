package sip

import (
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// Calls under call control: a routing hook to ask before routing
// (gateway/hook) and/or a fallback chain to try when the assigned agent
// cannot take the call (fallback.go). Such a call is registered (and the
// caller gets 100 Trying) at once; the hook runs on the hook client's
// bounded pool, never on a read loop, and the call goes on from its
// answer. A retransmitted INVITE finds the registered call (no second
// hook request); a CANCEL while the hook runs ends the call with 487 and
// the late answer is dropped. The ring timeout runs from the INVITE, so
// hook and fallback steps fit in it.

// callControl is what a controlled call keeps beyond a plain one.
type callControl struct {
	snap *routing.Snapshot
	dec  routing.Decision // the decision, re-targeted by the hook
	pol  routing.Policy

	hooking     bool          // the hook request is in flight
	hookOutcome string        // hook.Outcome* ("" without a hook)
	hdrs        []hook.Header // the hook's X- headers for the agent

	fallback []routing.FallbackStep
	step     int // fallback steps taken: 0 while the assigned agent is tried
	// toCarrier: the current step is a phone number, so the call leaves
	// through the carrier listener (egress), not the agent listener.
	toCarrier bool
}

// Refusals of controlled calls.
var (
	refuseHookSaturated = refusal{status: 503, phrase: "Service Unavailable", reason: "hook_saturated", retryAfter: true}
)

// controlled reports whether a decided call (number ours) is under call
// control: a routing hook applies, or it has a fallback chain and its
// assigned agent can be tried or has no healthy endpoint.
func (s *Server) controlled(d *routing.Decision) bool {
	if s.hook != nil && hook.Applies(d) {
		return true
	}
	return len(d.Fallback()) > 0 && fallbackApplies(d)
}

// fallbackApplies: routed, or refused only because every endpoint of the
// assigned agent is down.
func fallbackApplies(d *routing.Decision) bool {
	return d.Outcome == routing.OutcomeRoute || (d.Outcome == routing.OutcomeReject && d.Reason == routing.ReasonNoEndpoint)
}

// callingNumber is the calling number, E.164 when it is one.
func callingNumber(in *routing.Call) string {
	if n, ok := phone.Parse(in.Calling, in.Country); ok {
		return n
	}
	return in.Calling
}

// inviteControlled takes a new INVITE whose decision is under call
// control (see controlled).
func (s *Server) inviteControlled(req *sip.Request, from peer, txKey string, trunk *Trunk, snap *routing.Snapshot,
	in *routing.Call, dec *routing.Decision, pol routing.Policy) {
	c := &call{
		s: s, id: string(*req.CallID()), inv: req, up: replyPeer(req, from), upBranch: txKey,
		rt: routedOf(dec), trunk: trunk, start: time.Now(),
	}
	c.fromTag, _ = req.From().Params.Get("tag")
	c.rt.from, c.rt.to = callingNumber(in), dec.Called
	c.ctl = &callControl{snap: snap, dec: *dec, pol: pol, fallback: dec.Fallback()}
	ask := s.hook != nil && hook.Applies(dec)
	if !ask && !fallbackApplies(dec) {
		c.refuse(from, refusalFor(dec.Reason))
		return
	}
	if !c.admitLimits(snap, from) { // workspace limits (wslimits.go)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.serverTx.putNew(txKey, c) {
		c.releaseLimits()
		return // the same INVITE, handled concurrently by the other read loop
	}
	s.active.Add(1)
	s.metrics.ActiveCalls.Inc()
	s.replyStateless(req, from, 100, "Trying")
	c.publish(calls.Started, 0, "")
	c.ring = time.AfterFunc(s.cfg.RingTimeout, c.onCallTimer)
	if !ask {
		c.route()
		return
	}
	c.ctl.hooking = true
	region := s.cfg.Region
	secret := ""
	if ws := snap.Workspace(dec.Workspace); ws != nil {
		secret = ws.WebhookSecret
	}
	hr := hook.RequestFor(dec, c.id, c.rt.from, c.rt.to, region)
	if !s.hook.Go(dec.Hook, secret, hr, c.onHookAnswer) {
		c.ctl.hooking = false
		c.refuseRegistered(refuseHookSaturated)
	}
}

// onHookAnswer goes on with the call once its hook answered (or failed).
// It runs on the hook pool's goroutine.
func (c *call) onHookAnswer(a hook.Answer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctl := c.ctl
	ctl.hooking = false
	res := c.s.hook.Apply(ctl.snap, &ctl.dec, a, ctl.pol)
	ctl.hookOutcome = res.Outcome
	if c.ended || c.cancelled || c.state >= stCompleted {
		return // cancelled or timed out meanwhile
	}
	from, to := c.rt.from, c.rt.to
	c.rt = routedOf(&ctl.dec)
	c.rt.from, c.rt.to = from, to
	ctl.hdrs = c.hookHeaders(res.Headers) // the workspace's allow-list and limits (headers.go)
	if res.Reject {
		stop(c.ring)
		reason := "hook_reject"
		if res.Outcome != hook.OutcomeReject {
			reason = "hook_failed"
		}
		c.replyUp(res.Status, res.Reason)
		c.finish(res.Status, reason)
		return
	}
	c.route()
}

// route forwards a registered controlled call as its decision says (or
// refuses it). c.mu held.
func (c *call) route() {
	s, d := c.s, &c.ctl.dec
	if d.Outcome != routing.OutcomeRoute && !(d.Reason == routing.ReasonNoEndpoint && len(c.ctl.fallback) > 0) {
		c.refuseRegistered(refusalFor(d.Reason))
		return
	}
	c.cands = d.Candidates
	c.fwdBody = c.inv.Body()
	sp := c.s.srtpPolicy(c.trunk, c.ctl.snap, d, c.up.Proto == protoTLS) // srtp.go
	if s.media != nil && d.Media == routing.MediaRelay {
		sess, err := s.newMediaFor(c) // in each party's address family (dualstack_media.go)
		if err != nil {
			c.refuseRegistered(refuseNoMediaPorts)
			return
		}
		c.secureMedia(sess, sp)
		if len(c.fwdBody) > 0 {
			nb, err := sess.RewriteOffer(c.fwdBody)
			if err != nil {
				sess.Close()
				c.refuseRegistered(sdpRefusal(err))
				return
			}
			c.fwdBody = nb
		}
		c.media = sess
		c.attachMedia() // incall.go
	} else if rf, bad := srtpDirectRefusal(c.fwdBody, sp); bad {
		c.refuseRegistered(rf)
		return
	}
	c.earlyMedia() // 180 at once for agents that ask (ringback.go)
	c.startBranch()
}

// refuseRegistered answers a registered call with a refusal and ends it.
// c.mu held.
func (c *call) refuseRegistered(rf refusal) {
	s := c.s
	stop(c.ring)
	s.metrics.Rejected.WithLabelValues(rf.reason).Inc()
	hdrs := rf.headers
	if rf.retryAfter {
		hdrs = append(hdrs[:len(hdrs):len(hdrs)], s.retryAfter())
	}
	c.replyUp(rf.status, rf.phrase, hdrs...)
	c.finish(rf.status, rf.reason)
}
