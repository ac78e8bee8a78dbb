package routing

import (
	"sort"
	"time"
)

// Health tells the selector what probing has learnt about an endpoint.
type Health interface {
	// Endpoint returns the RTT estimate and whether the endpoint is up.
	// known is false when the endpoint has not been probed yet; such an
	// endpoint is treated as up with an unknown (worst-ordered) RTT.
	Endpoint(uri string) (rtt time.Duration, up bool, known bool)
}

// Candidates returns the agent's endpoints in the order a call should try
// them: the number's voice region first when it has a healthy endpoint,
// then healthy endpoints by ascending RTT estimate (unknown RTT last),
// ties broken by region name then URI. Endpoints that are down are left
// out. h may be nil (no probing: every endpoint up, in configured order by
// the same stable rule).
func Candidates(r *Route, h Health) []Endpoint {
	if r == nil || r.Agent == nil {
		return nil
	}
	type cand struct {
		ep    Endpoint
		rtt   time.Duration
		known bool
		pref  bool
	}
	cs := make([]cand, 0, len(r.Agent.Endpoints))
	for _, ep := range r.Agent.Endpoints {
		c := cand{ep: ep}
		if h != nil {
			rtt, up, known := h.Endpoint(ep.URI)
			if known && !up {
				continue
			}
			c.rtt, c.known = rtt, known
		}
		c.pref = r.Number.VoiceRegion != "" && ep.Region == r.Number.VoiceRegion
		cs = append(cs, c)
	}
	sort.SliceStable(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.pref != b.pref {
			return a.pref
		}
		if a.known != b.known {
			return a.known
		}
		if a.rtt != b.rtt {
			return a.rtt < b.rtt
		}
		if a.ep.Region != b.ep.Region {
			return a.ep.Region < b.ep.Region
		}
		return a.ep.URI < b.ep.URI
	})
	out := make([]Endpoint, len(cs))
	for i, c := range cs {
		out[i] = c.ep
	}
	return out
}
