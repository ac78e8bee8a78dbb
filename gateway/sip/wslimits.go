package sip

import (
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// Workspace limits on the SIP edge (issue 13): a new call is counted
// against its workspace's max_concurrent_calls and max_calls_per_second
// (counted across the cluster by Deps.Limits) once routing has chosen it
// and before it is forwarded; finish releases it.

// The refusals of a workspace limit: 503 with Retry-After and a reason
// phrase naming the limit.
var (
	refuseLimitConcurrent = refusal{status: 503, phrase: "Workspace concurrent call limit", reason: "limit_concurrent"}
	refuseLimitRate       = refusal{status: 503, phrase: "Workspace call rate limit", reason: "limit_rate"}
)

// limitRefusal is the SIP refusal for a limiter's rule, with its Retry-After.
func limitRefusal(rule string, retry time.Duration) refusal {
	rf := refuseLimitConcurrent
	switch rule {
	case "max_calls_per_second", "outbound.max_calls_per_second":
		rf = refuseLimitRate
	}
	secs := int((retry + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	rf.headers = []sip.Header{sip.NewHeader("Retry-After", strconv.Itoa(secs))}
	return rf
}

// inboundCaps are the caps of workspace ws for an inbound call.
func inboundCaps(snap *routing.Snapshot, ws string) calls.LimitCaps {
	w := snap.Workspace(ws)
	if w == nil {
		return calls.LimitCaps{}
	}
	return calls.LimitCaps{MaxConcurrent: w.Limits.MaxConcurrentCalls, MaxPerSecond: w.Limits.MaxCallsPerSecond}
}

// admitLimits counts the new inbound call c against its workspace's
// limits; over a limit it refuses the call (503, event with the reason,
// metric) and reports false. c.mu not held; c is not yet visible.
func (c *call) admitLimits(snap *routing.Snapshot, from peer) bool {
	lim := c.s.guard.limiter
	if lim == nil || c.rt.route == nil || c.rt.route.Number.Workspace == "" {
		return true
	}
	ws := c.rt.route.Number.Workspace
	rule, retry, ok := lim.Admit(ws, calls.Inbound, inboundCaps(snap, ws))
	if !ok {
		if c.media != nil {
			c.media.Close()
			c.media = nil
		}
		c.refuse(from, limitRefusal(rule, retry))
		return false
	}
	c.limitDir = calls.Inbound
	return true
}

// releaseLimits gives back what admitLimits counted (once).
func (c *call) releaseLimits() {
	if c.limitDir == "" {
		return
	}
	c.s.guard.limiter.Release(c.rt.route.Number.Workspace, c.limitDir)
	c.limitDir = ""
}
