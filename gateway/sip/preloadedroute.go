package sip

import "github.com/emiago/sipgo/sip"

// popPreloadedRoute removes the Route entries of an initial INVITE whose
// Route set names only this gateway: a UA configured with callgate as its
// outbound proxy (baresip's `outbound=`, RFC 3261 8.1.2) preloads such a
// Route. The INVITE is then a new call like any other (the call decision,
// digest, limits). A Route set that goes on past us is left alone and
// handled as before (forwarded only inside a dialog we routed: never an
// open relay).
func (s *Server) popPreloadedRoute(req *sip.Request) {
	if headerNamed(req.Headers(), "route") == nil {
		return // no GetHeaders slice for the common INVITE
	}
	hs := req.GetHeaders("Route")
	for _, h := range hs {
		r, ok := h.(*sip.RouteHeader)
		if !ok || !s.isUs(&r.Address) {
			return
		}
	}
	for range hs {
		req.RemoveHeader("Route")
	}
}
