package node

import (
	"net/http"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/gateway/placer"
)

// startPlacer builds the REST call placer (POST /v1/calls): the sandbox
// third-party call controller on its own SIP port, and the carriers' call
// APIs with their callbacks mounted under /webhooks/calls/.
func (n *Node) startPlacer(events calls.Publisher, extra map[string]http.Handler) error {
	cfg := n.cfg
	var uac *placer.UAC
	if cfg.Sandbox {
		u, err := placer.NewUAC(placer.UACConfig{Addr: cfg.Carriers.Sandbox.UACAddr,
			TerminationURI: cfg.Carriers.Sandbox.TerminationURI, Log: n.log})
		if err != nil {
			return err
		}
		uac = u
	}
	publicURL := cfg.PublicURL
	if publicURL == "" {
		publicURL = cfg.Webhook.PublicURL
	}
	active := func() float64 { return 0 }
	if uac != nil {
		active = func() float64 { return float64(uac.Active()) }
	}
	n.edges.placer = placer.New(placer.Config{PublicURL: publicURL}, placer.Deps{
		Table: n.table, Events: events, Carriers: n.svc, Idempotency: n.svc, Sandbox: uac, Log: n.log,
		Limits: n.limiter(), Usage: n.meter(), Health: n.edges.sip.Prober(),
		Media: media.Anchor[placer.MediaSession]{M: n.edges.media}, MediaMode: cfg.Media.Mode,
		Metrics: placer.NewMetrics(n.reg, active),
	})
	extra[placer.CallbackPath] = n.edges.placer.Handler()
	// The meter ends calls whose credits ran out: the SIP edge's, and the
	// sandbox calls the placer controls.
	if m := n.edges.limits.meter; m != nil {
		es := enders{n.edges.placer}
		if e, ok := any(n.edges.sip).(calls.Ender); ok {
			es = enders{e, n.edges.placer}
		}
		m.SetEnder(es)
	}
	return nil
}

// enders ends a call through the first Ender that has it.
type enders []calls.Ender

// EndCall implements calls.Ender.
func (es enders) EndCall(callID, reason string) bool {
	for _, e := range es {
		if e != nil && e.EndCall(callID, reason) {
			return true
		}
	}
	return false
}
