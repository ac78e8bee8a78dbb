package node

import (
	"context"
	"net/http"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/gateway/placer"
	"github.com/callgate/callgate/gateway/sip"
	"github.com/callgate/callgate/gateway/webhook"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
)

// edges are the data plane: SIP, webhooks, media relay.
type edges struct {
	sip     *sip.Server
	webhook *webhook.Handler
	media   *media.Manager
	done    chan struct{}
	limits  callLimits     // workspace limits and usage meter (calllimits.go)
	placer  *placer.Placer // REST calls (place.go)
	// control carries commands to running calls (transfer, DTMF) to the
	// node that holds them; edges register handlers with Handle.
	control *calls.ControlBus
}

// startEdges starts the SIP and webhook edges and the media relay.
func (n *Node) startEdges(ctx context.Context, extra map[string]http.Handler) error {
	cfg := n.cfg
	// With the embedded server, an event nobody subscribes to is not
	// published (calls.NATSPublisher.Interest).
	live := &calls.NATSPublisher{NC: n.st.NC, Region: cfg.Region, Log: n.log, Interest: n.st.SubjectInterest()}
	registerLiveEventMetrics(n.reg, live)
	events, err := n.historyEvents(live)
	if err != nil {
		return err
	}

	mm, err := media.NewManager(cfg.Media.Config, n.log, n.reg)
	if err != nil {
		return err
	}
	n.edges.media = mm

	hk, err := n.hookClient()
	if err != nil {
		return err
	}
	sc := cfg.SIP
	if sc.Region == "" {
		sc.Region = cfg.Region
	}
	if err := n.startCallLimits(); err != nil {
		return err
	}
	n.edges.control = calls.NewControlBus(n.st.NC, n.log)
	if err := n.edges.control.Start(); err != nil {
		return err
	}
	n.closers = append(n.closers, n.edges.control.Close)
	srv, err := sip.New(sc, sip.Deps{Table: n.table, Events: events, Log: n.log, Registerer: n.reg,
		Media: media.Anchor[sip.MediaSession]{M: mm}, MediaMode: cfg.Media.Mode, DialogKey: n.dialogKey,
		SandboxTermination: cfg.Carriers.Sandbox.TerminationURI, Limits: n.limiter(), Usage: n.meter(), Hook: hk, Control: n.edges.control})
	if err != nil {
		return err
	}
	n.edges.sip = srv
	n.endCallsWith(srv)
	if err := n.startPlacer(events, extra); err != nil {
		return err
	}
	n.edges.placer.RegisterControl(n.edges.control) // API transfers of Twilio calls it placed (placer/transfer.go)
	n.edges.done = make(chan struct{})
	go func() {
		defer close(n.edges.done)
		_ = srv.Serve(ctx)
	}()

	if cfg.Webhook.PublicURL != "" {
		wh, err := webhook.New(cfg.Webhook, webhook.Deps{
			Table:      n.table,
			Health:     srv.Prober(),
			Events:     events,
			Messages:   n.st.NC,
			Log:        n.log,
			Registerer: n.reg,
			MediaMode:  cfg.Media.Mode,
			Hook:       hk,
			Limits:     n.limiter(),
			CallControl: &webhook.TelnyxCallControl{
				APIBase: cfg.Carriers.Telnyx.APIBase,
				APIKey:  n.svc.IntegrationAPIKey,
			},
		})
		if err != nil {
			return err
		}
		if err := wh.Start(ctx); err != nil {
			return err
		}
		n.edges.webhook = wh
		extra["/webhooks/"] = wh.Routes()
	} else {
		extra["/webhooks/"] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "webhooks are off: set public_url (CALLGATE_PUBLIC_URL) to the URL carriers use to reach this gateway", http.StatusServiceUnavailable)
		})
	}
	return nil
}

func (n *Node) edgesReady() bool {
	return n.edges.sip != nil && n.edges.sip.Ready()
}

func (n *Node) stopEdges() {
	if n.edges.sip != nil {
		n.edges.sip.Close()
		if n.edges.done != nil {
			select {
			case <-n.edges.done:
			case <-time.After(5 * time.Second):
			}
		}
	}
	if n.edges.webhook != nil {
		n.edges.webhook.Close()
	}
	if n.edges.placer != nil {
		n.edges.placer.Close()
	}
	if n.edges.media != nil {
		n.edges.media.Close()
	}
	n.stopCallLimits()
}

// regions serves GET /v1/regions: the endpoints this node probes, grouped
// by region; of the caller's own agents (every workspace's for the admin key).
func (n *Node) regions(p provisioning.Principal) any {
	if n.edges.sip == nil {
		return []any{}
	}
	own := workspaceEndpoints(n.table.Load(), p)
	type region struct {
		Name      string               `json:"name"`
		Healthy   int                  `json:"healthy_endpoints"`
		Endpoints []sip.EndpointStatus `json:"endpoints"`
	}
	byName := map[string]*region{}
	var order []string
	for _, st := range n.edges.sip.Status() {
		if own != nil && !own[st.Region+" "+st.URI] {
			continue
		}
		r := byName[st.Region]
		if r == nil {
			r = &region{Name: st.Region}
			byName[st.Region] = r
			order = append(order, st.Region)
		}
		r.Endpoints = append(r.Endpoints, st)
		if st.Up {
			r.Healthy++
		}
	}
	out := make([]region, 0, len(order))
	for _, name := range order {
		out = append(out, *byName[name])
	}
	return out
}

// workspaceEndpoints is the set of "region uri" of p's agents' endpoints;
// nil (everything) for the admin.
func workspaceEndpoints(snap *routing.Snapshot, p provisioning.Principal) map[string]bool {
	if p.Admin {
		return nil
	}
	own := map[string]bool{}
	snap.Agents(func(a *routing.Agent) {
		if a.Workspace != p.Workspace {
			return
		}
		for _, ep := range a.Endpoints {
			own[ep.Region+" "+ep.URI] = true
		}
	})
	return own
}

// Drain stops taking new calls and waits for active ones until ctx ends.
func (n *Node) Drain(ctx context.Context) {
	if n.edges.sip != nil {
		left := n.edges.sip.Drain(ctx)
		n.log.Info("node: drained", "calls_left", left)
	}
}

// SIP is the SIP edge (tests: bound addresses).
func (n *Node) SIP() *sip.Server { return n.edges.sip }
