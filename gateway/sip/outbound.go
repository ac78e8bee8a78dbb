package sip

import (
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// Outbound calls: an agent's INVITE on the agent listener is
// authenticated (agentauth.go), its caller ID must be a number of the
// agent's workspace (active) or a business line it registered for
// forwarding, its destination must pass the workspace's policy
// (routing.CheckDestination) and limits (calls.Limiter), the workspace
// must be able to pay (calls.UsageMeter); then it goes out through the
// caller-ID number's carrier (egress.go) like an inbound call goes to an
// agent: the same transaction layer, failover on 5xx and timeouts.

// outbound is what an outbound call keeps besides the routed fields
// (nil for inbound calls).
type outbound struct {
	ws       string // the credential's workspace
	dest     string // E.164 dialled
	callerID string // E.164 of the caller ID (From or P-Asserted-Identity)
	admitted bool   // counted by the Limiter: Release at the end
	metered  bool   // Usage.Answered was called: Ended at the end
	authz    string // the carrier's challenge answered: a header line with CRLF (egressauth.go)
	authzCI  int    // the candidate authz was computed for
	authed   bool   // the INVITE was re-sent with credentials once
}

// The refusals of handleOutboundInvite; reasons are metric labels
// (pre-created in metrics.go).
var (
	refuseAuthBlocked     = refusal{status: 403, phrase: "Forbidden", reason: "auth_blocked", quiet: true}
	refuseUnknownAgent    = refusal{status: 403, phrase: "Forbidden", reason: "unknown_agent"}
	refuseAgentSource     = refusal{status: 403, phrase: "Source address not allowed", reason: "agent_source"}
	refuseCallerID        = refusal{status: 403, phrase: "Caller ID not allowed", reason: "caller_id"}
	refuseNoTermination   = refusal{status: 503, phrase: "No termination for carrier", reason: "no_termination"}
	refuseNoCredits       = refusal{status: 402, phrase: "Insufficient credits", reason: "no_credits"}
	refuseInvalidDest     = refusal{status: 484, phrase: routing.RulePhrase(routing.RuleInvalidDestination), reason: "destination"}
	outboundRejectReasons = []string{"auth_blocked", "unknown_agent", "agent_source", "caller_id", "no_termination",
		"no_credits", "destination"}
)

// destinationRefusal is the 403 naming the policy rule that refused.
func destinationRefusal(rule string) refusal {
	if rule == routing.RuleInvalidDestination {
		return refuseInvalidDest
	}
	return refusal{status: 403, phrase: routing.RulePhrase(rule), reason: "destination"}
}

// limitPhrase is the reason phrase of a 503 for a Limiter rule: the
// outbound caps named as such, the workspace's as for inbound calls.
func limitPhrase(rule, workspace string) string {
	switch rule {
	case "outbound.max_concurrent_calls":
		return "Outbound concurrent call limit"
	case "outbound.max_calls_per_second":
		return "Outbound call rate limit"
	}
	return workspace
}

func (s *Server) handleOutboundInvite(req *sip.Request, from peer) {
	txKey := serverTxKey(req)
	if c, ok := s.serverTx.get(txKey); ok {
		c.mu.Lock()
		if c.lastUp != nil {
			_ = s.tpFor(c.up).Send(c.up, c.lastUp)
		}
		c.mu.Unlock()
		return
	}
	if s.draining.Load() {
		s.refuse(req, from, "", refuseDraining)
		return
	}
	if mf := req.MaxForwards(); mf != nil && *mf == 0 {
		s.refuse(req, from, "", refuseTooManyHops)
		return
	}
	snap := s.table.Load()
	if snap == nil {
		s.refuse(req, from, "", refuseNoSnapshot)
		return
	}
	now := time.Now()
	cred, res := s.ag.verifyAgent(req, snap, now)
	if res != authOK && s.pikeRefused(req, from) {
		return // challenges count against the per-source rate (sip.pike): no 407 reflector
	}
	switch res {
	case authOK:
	case authBad:
		s.metrics.AgentAuthFailures.Inc()
		if s.ag.fails.fail(from.Addr.Addr(), now) {
			s.refuse(req, from, "", refuseAuthBlocked)
			return
		}
		s.metrics.Rejected.WithLabelValues("auth").Inc()
		s.challengeAgent(req, from, false)
		return
	default:
		s.challengeAgent(req, from, res == authStale)
		return
	}
	agent, ok := snap.Agent(cred.Workspace, cred.AgentID)
	if !ok {
		s.refuse(req, from, "", refuseUnknownAgent)
		return
	}
	if len(agent.SourceCIDRs) > 0 && !inCIDRs(agent.SourceCIDRs, from.Addr.Addr()) {
		s.refuse(req, from, "", refuseAgentSource)
		return
	}
	callerID, rt, fwdFrom := s.callerRoute(snap, req, cred.Workspace)
	if rt == nil {
		s.refuse(req, from, "", refuseCallerID)
		return
	}
	dest := req.Recipient.User
	if !phone.IsE164(dest) { // national format: in the caller ID's country (libphonenumber only then)
		country, _, _ := phone.Classify(callerID)
		if d, ok := phone.Parse(dest, country); ok {
			dest = d
		}
	}
	ws := snap.Workspace(cred.Workspace)
	if rule, ok := routing.CheckDestination(ws, callerID, dest); !ok {
		s.refuse(req, from, dest, destinationRefusal(rule))
		return
	}
	targets := s.egressTargets(rt, dest)
	if len(targets) == 0 {
		s.refuse(req, from, dest, refuseNoTermination)
		return
	}
	out := &outbound{ws: cred.Workspace, dest: dest, callerID: callerID}
	if s.limits != nil {
		var caps calls.LimitCaps
		if ws != nil {
			caps = calls.LimitCaps{MaxConcurrent: ws.Limits.MaxConcurrentCalls, MaxPerSecond: ws.Limits.MaxCallsPerSecond,
				MaxOutConcurrent: ws.Outbound.MaxConcurrentCalls, MaxOutPerSecond: ws.Outbound.MaxCallsPerSecond}
		}
		rule, wait, ok := s.limits.Admit(cred.Workspace, calls.Outbound, caps)
		if !ok {
			rf := limitRefusal(rule, wait) // workspace limits as for inbound calls (wslimits.go)
			rf.phrase = limitPhrase(rule, rf.phrase)
			s.refuse(req, from, dest, rf)
			return
		}
		out.admitted = true
	}
	if s.usage != nil {
		if err := s.usage.Authorize(cred.Workspace, dest); err != nil {
			if out.admitted {
				s.limits.Release(cred.Workspace, calls.Outbound)
			}
			s.refuse(req, from, dest, refuseNoCredits)
			return
		}
	}
	carrier := rt.Number.Carrier
	c := &call{
		s: s, id: string(*req.CallID()), inv: req, up: replyPeer(req, from), upBranch: txKey,
		rt:  routed{route: &routing.Route{Number: rt.Number, Agent: agent}, origin: rt.Number.Origin, carrier: carrier, forwardedFrom: fwdFrom},
		out: out, start: now,
	}
	c.fromTag, _ = req.From().Params.Get("tag")
	c.cands = targets
	c.fwdBody = req.Body()
	relay := s.relayByDefault
	switch agent.Media {
	case routing.MediaRelay:
		relay = true
	case routing.MediaDirect:
		relay = false
	}
	if s.media != nil && relay {
		sess, err := s.newMediaFor(c) // in each party's address family (dualstack_media.go)
		if err != nil {
			c.releaseOutbound()
			s.refuse(req, from, dest, refuseNoMediaPorts)
			return
		}
		if len(c.fwdBody) > 0 {
			nb, err := sess.RewriteOffer(c.fwdBody)
			if err != nil {
				sess.Close()
				c.releaseOutbound()
				s.refuse(req, from, dest, refuseBadSDP)
				return
			}
			c.fwdBody = nb
		}
		c.media = sess
		c.attachMedia() // incall.go
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !s.serverTx.putNew(txKey, c) {
		if c.media != nil {
			c.media.Close()
		}
		c.releaseOutbound()
		return
	}
	s.active.Add(1)
	s.metrics.ActiveCalls.Inc()
	s.metrics.OutboundActive.Inc()
	s.replyStateless(req, from, 100, "Trying")
	c.publish(calls.Started, 0, "")
	c.ring = time.AfterFunc(s.cfg.RingTimeout, c.onCallTimer)
	c.startBranch()
}

// callerRoute checks the caller ID of an agent's INVITE (P-Asserted-
// Identity, else From): a number of workspace ws that is active, or a
// business line ws registered for forwarding (then the gateway number it
// forwards to carries the call). rt is nil when the caller ID is refused.
func (s *Server) callerRoute(snap *routing.Snapshot, req *sip.Request, ws string) (callerID string, rt *routing.Route, fwdFrom string) {
	user := req.From().Address.User
	if h := req.GetHeader("P-Asserted-Identity"); h != nil {
		var u sip.Uri
		v := h.Value()
		if _, err := sip.ParseAddressValue(v, &u, nil); err == nil && u.User != "" {
			user = u.User
		} else if err != nil {
			return "", nil, ""
		}
	}
	if u, ok := phone.Parse(user, ""); ok {
		callerID = u
	} else {
		return "", nil, ""
	}
	if r, ok := snap.Lookup(callerID); ok {
		if r.Number.Workspace == ws && r.Number.Status == routing.StatusActive {
			return callerID, r, ""
		}
		return "", nil, ""
	}
	if f, ok := snap.ForwardFrom(callerID); ok && f.Workspace == ws {
		if r, ok := snap.Lookup(f.GatewayNumber); ok && r.Number.Workspace == ws && r.Number.Status == routing.StatusActive {
			return callerID, r, callerID
		}
	}
	return "", nil, ""
}

func inCIDRs(cidrs []string, a netip.Addr) bool {
	for _, c := range cidrs {
		p, err := parsePrefix(c)
		if err == nil && p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// releaseOutbound gives back what an outbound call holds (its Limiter
// count; its metering once answered). Safe to call more than once.
func (c *call) releaseOutbound() {
	o := c.out
	if o == nil {
		return
	}
	if o.admitted {
		o.admitted = false
		c.s.limits.Release(o.ws, calls.Outbound)
	}
	if o.metered {
		o.metered = false
		c.s.usage.Ended(c.id, time.Now())
	}
}

// outboundAnswered starts metering an answered outbound call. c.mu held.
func (c *call) outboundAnswered() {
	if c.out == nil {
		return
	}
	if c.s.usage != nil {
		c.out.metered = true
		c.s.usage.Answered(c.id, c.out.ws, c.out.dest, c.answeredAt)
	}
}

// EndCall ends a call in progress with reason (e.g. "credits_exhausted"):
// BYE both ways for an answered call, CANCEL toward the callee and 487
// to the caller for one still ringing. false when the call is not here.
func (s *Server) EndCall(callID, reason string) bool {
	c, ok := s.dialogs.get(callID)
	if !ok {
		found := false
		s.serverTx.rangeAll(func(_ string, x *call) {
			if !found && x.id == callID {
				c, found = x, true
			}
		})
		if !found {
			return false
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return false
	}
	if c.state == stAccepted {
		c.sendByes()
		c.finish(200, reason)
		return true
	}
	c.cancelled = true
	c.cancelBranches()
	c.replyUp(487, "Request Terminated")
	c.finish(487, reason)
	return true
}

// observeSetup records a setup time: inbound calls by region, carrier and
// origin; outbound calls in their own histograms by carrier. c.mu held.
func (c *call) observeSetup(in, out *prometheus.HistogramVec, d time.Duration) {
	if c.out != nil {
		out.WithLabelValues(carrierLabel(c.rt.carrier)).Observe(d.Seconds())
		return
	}
	l := c.labels()
	in.WithLabelValues(l[:]...).Observe(d.Seconds())
}

var _ calls.Ender = (*Server)(nil)
