package sip

import "github.com/callgate/callgate/routing"

// Egress: where a call to a phone number leaves for the PSTN, through the
// carrier of the gateway number used as caller ID (issue 12).

// egressTargets returns where to send a call to the phone number dest
// (E.164) through the carrier of the gateway number r, in the order to
// try them (failover on 5xx and timeouts). Empty: no termination is
// configured for that carrier.
//
// Placeholder until the outbound egress lands: no termination yet.
func (s *Server) egressTargets(r *routing.Route, dest string) []routing.Endpoint {
	_, _ = r, dest
	return nil
}
