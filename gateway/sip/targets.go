package sip

import (
	"errors"

	"github.com/emiago/sipgo/sip"
)

var errNoTarget = errors.New("sip: no target for the endpoint")

// RFC 3263 failover inside one endpoint: an endpoint named by a host name
// may have several targets (SRV records, and each one's addresses:
// transport.Locate). A call tries them in order — on 503, no answer
// (invite_timeout) or an address that cannot be reached — before it moves
// on to the endpoint's next candidate; any other 5xx or a 408 moves on to
// the next endpoint at once.

// targetCursor is where a call is in the targets of cands[ci].
type targetCursor struct {
	ci   int
	uri  string
	list []peer
	i    int
}

// endpointTarget is the target to try for cands[ci] (u parsed from its
// URI; lit its target when it is an IP literal, shared: read only): the
// cursor's, else the first of the targets in the cache now (errNeedLookup:
// look u up first). c.mu held.
func (c *call) endpointTarget(u *sip.Uri, lit []peer) (peer, error) {
	ep := c.cands[c.ci]
	if tc := &c.tgt; tc.list != nil && tc.ci == c.ci && tc.uri == ep.URI && tc.i < len(tc.list) {
		return tc.list[tc.i], nil
	}
	ps, err := lit, error(nil)
	if ps == nil {
		ps, err = c.s.tp.Locate(u, resolveCached)
	}
	if err != nil || len(ps) == 0 {
		pr, _ := uriProto(u)
		if err == nil {
			err = errNoTarget
		}
		return peer{Proto: pr}, err
	}
	c.tgt = targetCursor{ci: c.ci, uri: ep.URI, list: ps}
	return ps[0], nil
}

// nextTarget moves to the endpoint's next target when sameEndpoint and
// one is left, else to the next endpoint. c.mu held.
func (c *call) nextTarget(sameEndpoint bool) {
	tc := &c.tgt
	if sameEndpoint && tc.list != nil && tc.ci == c.ci && c.ci < len(c.cands) && tc.uri == c.cands[c.ci].URI &&
		tc.i+1 < len(tc.list) {
		tc.i++
		return
	}
	c.tgt = targetCursor{}
	c.ci++
}
