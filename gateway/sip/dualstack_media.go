package sip

import (
	"bytes"
	"net/netip"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/sip/transport"
)

// MediaFamilyAnchor is a MediaAnchor that binds each leg of a relayed
// call in the address family of the party it faces (gateway/media with
// media.bind_ip6: media.Anchor implements it). With it a call crossing
// families is relayed between an IPv4 and an IPv6 socket, the SDP toward
// each party naming the relay's address of that party's family.
type MediaFamilyAnchor interface {
	NewSessionFamilies(callID string, callerV6, agentV6 bool, onTimeout func()) (MediaSession, error)
}

// newMediaFor opens c's relay session: the caller-facing leg in the
// family of the caller's SDP (c=; without one, of its signalling
// address), the agent-facing leg in the family of the first candidate's
// address (a host name not in the DNS cache counts as IPv4, as the
// resolver prefers A records). c.cands is set.
func (s *Server) newMediaFor(c *call) (MediaSession, error) {
	fa, ok := s.media.(MediaFamilyAnchor)
	if !ok {
		return s.media.NewSession(c.id, c.onMediaTimeout)
	}
	callerV6 := transport.IsV6(c.up.Addr.Addr())
	if c.inv != nil {
		if v6, ok := sdpV6(c.inv.Body()); ok {
			callerV6 = v6
		}
	}
	agentV6 := false
	if len(c.cands) > 0 {
		agentV6 = s.uriV6(c.cands[0].URI)
	}
	return fa.NewSessionFamilies(c.id, callerV6, agentV6, c.onMediaTimeout)
}

// uriV6 reports whether the URI's host is (or is cached as) an IPv6 address.
func (s *Server) uriV6(raw string) bool {
	var u sip.Uri
	if err := sip.ParseUri(raw, &u); err != nil {
		return false
	}
	if a, err := netip.ParseAddr(trimBrackets(u.Host)); err == nil {
		return transport.IsV6(a)
	}
	p, err := s.tp.URIPeerCached(&u)
	return err == nil && transport.IsV6(p.Addr.Addr())
}

// sdpV6 reports the family of an SDP body's connection address (the
// session-level c= line, else the first media-level one); ok false when
// there is none.
func sdpV6(body []byte) (v6, ok bool) {
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		line = bytes.TrimRight(line, "\r")
		if bytes.HasPrefix(line, []byte("c=IN IP6 ")) {
			return true, true
		}
		if bytes.HasPrefix(line, []byte("c=IN IP4 ")) {
			return false, true
		}
	}
	return false, false
}

// mediaFamilyFor re-opens c's relay session when the endpoint about to be
// tried (to) is of the other address family than the session's agent leg
// (a failover from an IPv4 endpoint to an IPv6 one, or the reverse), so
// that the offer it gets names the relay's address of its own family.
// Only while nothing went to the caller (no provisional, so no SDP of
// ours): the caller leg's address is not yet promised. When the relay has
// one family only, or no ports, the session stays as it is. c.mu held.
func (c *call) mediaFamilyFor(to peer) {
	s := c.s
	if c.media == nil || c.state != stCalling || !to.Addr.IsValid() {
		return
	}
	fa, ok := s.media.(MediaFamilyAnchor)
	if !ok {
		return
	}
	cur, ok := c.media.(interface{ AgentAddr() netip.AddrPort })
	want := transport.IsV6(to.Addr.Addr())
	if !ok || transport.IsV6(cur.AgentAddr().Addr()) == want {
		return
	}
	callerV6 := transport.IsV6(c.up.Addr.Addr())
	if v6, ok := sdpV6(c.inv.Body()); ok {
		callerV6 = v6
	}
	sess, err := fa.NewSessionFamilies(c.id, callerV6, want, c.onMediaTimeout)
	if err != nil {
		return
	}
	if n, ok := sess.(interface{ AgentAddr() netip.AddrPort }); !ok || transport.IsV6(n.AgentAddr().Addr()) != want {
		sess.Close() // one family only: nothing to gain
		return
	}
	body := c.inv.Body()
	if len(body) > 0 {
		nb, err := sess.RewriteOffer(body)
		if err != nil {
			sess.Close()
			return
		}
		c.fwdBody = nb
	}
	c.media.Close()
	c.media = sess
}
