package node

import (
	"context"
	"net/http"
	"strings"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/console"
)

// mountConsole adds the web console (/console/) to the HTTP handlers: the
// same provisioning service and audit log as the API, endpoint health
// from this node's SIP prober, Secure cookies when public_url is https.
func (n *Node) mountConsole(ctx context.Context, extra map[string]http.Handler, al *audit.Log) error {
	c, err := console.New(ctx, console.Options{
		Service:       n.svc,
		Audit:         al,
		Health:        n.consoleHealth,
		Calls:         n.callHistory(),
		ActiveCalls:   n.consoleActiveCalls,
		Log:           n.log,
		SecureCookies: strings.HasPrefix(n.cfg.PublicURL, "https://"),
	})
	if err != nil {
		return err
	}
	extra[console.Prefix] = c
	extra["GET /console"] = http.RedirectHandler(console.Prefix, http.StatusMovedPermanently)
	return nil
}

func (n *Node) consoleHealth() []console.EndpointHealth {
	if n.edges.sip == nil {
		return nil
	}
	sts := n.edges.sip.Status()
	out := make([]console.EndpointHealth, len(sts))
	for i, st := range sts {
		out[i] = console.EndpointHealth{Region: st.Region, URI: st.URI, Up: st.Up, Probed: st.Known, RTT: st.RTT}
	}
	return out
}

// consoleActiveCalls is workspace ws's calls in progress on every node,
// as the workspace limiter counts them (each routed call is admitted
// there, capped or not).
func (n *Node) consoleActiveCalls(ws string) (int64, bool) {
	lim := n.Limiter()
	if lim == nil {
		return 0, false
	}
	c, _ := lim.Totals(ws)
	return c, true
}
