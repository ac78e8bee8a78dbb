package webhook

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/callgate/callgate/internal/netguard"
)

// Deliveries to agents' messaging URLs dial through internal/netguard
// (the same guard as routing hook requests): internal addresses are
// refused unless inside Messaging.AllowNetworks.

// internalReason says why addr is an internal (non-public) destination.
func internalReason(addr netip.Addr) string { return netguard.InternalReason(addr) }

// refusedError is the dial error for an internal destination.
type refusedError = netguard.RefusedError

// addressGuard refuses connections to internal addresses outside allow.
type addressGuard struct {
	allow []netip.Prefix
}

func (g addressGuard) guard() netguard.Guard {
	return netguard.Guard{Allow: g.allow, What: "messaging URL", Key: "webhook.messaging.allow_networks"}
}

// check judges the IP actually being connected to.
func (g addressGuard) check(address string) error { return g.guard().Check(address) }

// guardedClient returns a client for deliveries whose every connection
// goes through g (see netguard.Client).
func guardedClient(base *http.Client, g addressGuard) (*http.Client, error) {
	c, err := netguard.Client(base, g.guard())
	if err != nil {
		return nil, fmt.Errorf("webhook: Deps.HTTPClient: %w", err)
	}
	return c, nil
}

// isRefused reports whether err comes from the internal-address check.
func isRefused(err error) (*refusedError, bool) { return netguard.IsRefused(err) }
