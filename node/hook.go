package node

import (
	"net/netip"

	"github.com/callgate/callgate/gateway/hook"
)

// hookClient is the routing hook client both edges share: its requests
// may reach the internal networks messaging deliveries may
// (webhook.messaging.allow_networks), and an endpoint a hook answers is
// checked as an agent endpoint is (provisioning's CheckEndpoint).
func (n *Node) hookClient() (*hook.Client, error) {
	var allow []netip.Prefix
	for _, s := range n.cfg.Webhook.Messaging.AllowNetworks {
		if p, err := netip.ParsePrefix(s); err == nil { // validated with the config
			allow = append(allow, p.Masked())
		}
	}
	return hook.New(hook.Options{Allow: allow, Endpoint: n.svc.CheckEndpoint, Registerer: n.reg, Log: n.log})
}
