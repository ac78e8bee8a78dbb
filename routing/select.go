package routing

import (
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
	return AppendCandidates(make([]Endpoint, 0, len(r.Agent.Endpoints)), r, h)
}

// candKey orders candidates; see Candidates.
type candKey struct {
	pref  bool
	known bool
	rtt   time.Duration
}

func (a candKey) less(b candKey, ea, eb *Endpoint) bool {
	if a.pref != b.pref {
		return a.pref
	}
	if a.known != b.known {
		return a.known
	}
	if a.rtt != b.rtt {
		return a.rtt < b.rtt
	}
	if ea.Region != eb.Region {
		return ea.Region < eb.Region
	}
	return ea.URI < eb.URI
}

// maxSortedCandidates bounds the stack buffer AppendCandidates sorts in;
// agents with more endpoints fall back to a heap-allocated buffer.
const maxSortedCandidates = 16

// AppendCandidates appends to dst the endpoints in the order Candidates
// returns them. With a dst of sufficient capacity and at most 16
// endpoints it does not allocate (the data plane's variant).
func AppendCandidates(dst []Endpoint, r *Route, h Health) []Endpoint {
	if r == nil || r.Agent == nil {
		return dst
	}
	eps := r.Agent.Endpoints
	var keysBuf [maxSortedCandidates]candKey
	var idxBuf [maxSortedCandidates]int
	keys, idx := keysBuf[:0], idxBuf[:0]
	if len(eps) > maxSortedCandidates {
		keys, idx = make([]candKey, 0, len(eps)), make([]int, 0, len(eps))
	}
	for i := range eps {
		ep := &eps[i]
		var k candKey
		if h != nil {
			rtt, up, known := h.Endpoint(ep.URI)
			if known && !up {
				continue
			}
			k.rtt, k.known = rtt, known
		}
		k.pref = r.Number.VoiceRegion != "" && ep.Region == r.Number.VoiceRegion
		// insertion sort: agents have a handful of endpoints
		j := len(keys)
		keys = append(keys, k)
		idx = append(idx, i)
		for j > 0 && k.less(keys[j-1], ep, &eps[idx[j-1]]) {
			keys[j], idx[j] = keys[j-1], idx[j-1]
			j--
		}
		keys[j], idx[j] = k, i
	}
	for _, i := range idx {
		dst = append(dst, eps[i])
	}
	return dst
}
