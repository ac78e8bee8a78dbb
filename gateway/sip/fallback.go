package sip

import "github.com/callgate/callgate/routing"

// The fallback chain of a number (routing.NumberControl.Fallback): when
// the assigned agent cannot take the call before answer (every endpoint
// down, timed out or answering 5xx/408; never after 486, 603 or another
// final 4xx/6xx, which go to the caller), the steps are tried in order:
// another agent of the workspace, a SIP URI, or a phone number reached
// through the number's carrier (egressTargets). All within the ring
// timeout. The call's events record the step in use (Event.FallbackStep,
// 1-based; 0 is the assigned agent) and the endpoint.

// nextFallback loads the next fallback step that has somewhere to go into
// c.cands. false when the chain is done (or the call has none). c.mu held.
func (c *call) nextFallback() bool {
	ctl := c.ctl
	if ctl == nil || c.cancelled || c.ended || c.state >= stAccepted {
		return false
	}
	for ctl.step < len(ctl.fallback) {
		st := ctl.fallback[ctl.step]
		ctl.step++
		var eps []routing.Endpoint
		if st.Number != "" {
			eps = c.s.egressTargets(c.rt.route, st.Number)
		} else {
			var a *routing.Agent
			eps, a = routing.FallbackEndpoints(ctl.snap, &ctl.dec, st, c.s.prober)
			if a != nil && len(eps) > 0 {
				c.rt.route = &routing.Route{Number: c.rt.route.Number, Agent: a}
			}
		}
		if len(eps) == 0 {
			c.s.log.Debug("sip: fallback step has nowhere to go", "call_id", c.id, "step", ctl.step)
			continue
		}
		c.cands, c.ci = eps, 0
		ctl.toCarrier = st.Number != ""
		return true
	}
	return false
}
