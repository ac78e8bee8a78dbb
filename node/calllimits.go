package node

import (
	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/limits"
	"github.com/callgate/callgate/gateway/sip"
	"github.com/callgate/callgate/gateway/usage"
)

// callLimits are the node's cluster-wide workspace limiter and usage
// meter; both share their counts with the other nodes through NATS.
type callLimits struct {
	lim   *limits.Counter
	meter *usage.Meter
}

// startCallLimits starts the limiter and the meter on the store's NATS
// connection.
func (n *Node) startCallLimits() error {
	lim, err := limits.New(n.st.NC, limits.Options{Log: n.log, Metrics: limits.NewMetrics(n.reg)})
	if err != nil {
		return err
	}
	meter, err := usage.New(n.cfg.Usage, n.svc, n.st.NC, usage.Options{Log: n.log, Metrics: usage.NewMetrics(n.reg), Now: n.now})
	if err != nil {
		lim.Close()
		return err
	}
	n.edges.limits = callLimits{lim: lim, meter: meter}
	return nil
}

// endCallsWith lets the meter end calls (credits exhausted) through the
// SIP edge when the edge can end a call (calls.Ender).
func (n *Node) endCallsWith(srv *sip.Server) {
	if e, ok := any(srv).(calls.Ender); ok && n.edges.limits.meter != nil {
		n.edges.limits.meter.SetEnder(e)
	}
}

// limiter and meter are the edges' calls.Limiter and calls.UsageMeter
// (nil interfaces before start).
func (n *Node) limiter() calls.Limiter {
	if n.edges.limits.lim == nil {
		return nil
	}
	return n.edges.limits.lim
}

func (n *Node) meter() calls.UsageMeter {
	if n.edges.limits.meter == nil {
		return nil
	}
	return n.edges.limits.meter
}

// stopCallLimits waits for the meter's charges in flight and tells the
// peers this node's calls are gone.
func (n *Node) stopCallLimits() {
	if n.edges.limits.meter != nil {
		n.edges.limits.meter.Close()
	}
	if n.edges.limits.lim != nil {
		n.edges.limits.lim.Close()
	}
}

// Limiter is the node's workspace limit counter (nil before start).
func (n *Node) Limiter() *limits.Counter { return n.edges.limits.lim }

// Meter is the node's usage meter (nil before start).
func (n *Node) Meter() *usage.Meter { return n.edges.limits.meter }
