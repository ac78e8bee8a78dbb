package sip

import (
	"strings"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/routing"
)

// Egress: where a call to a phone number leaves for the PSTN, through the
// carrier of the gateway number used as caller ID (issue 12):
//
//   - twilio: the number's integration's Elastic SIP Trunking termination
//     URIs, at the edge of the number's voice region
//     ({domain}.pstn.twilio.com → {domain}.pstn.{edge}.twilio.com);
//   - telnyx: the integration's SIP connection (its termination URIs);
//   - sandbox: carriers.sandbox.termination_uri.
//
// The Request-URI's user is the destination in E.164.

// twilioEdges maps Twilio voice regions to the edge whose termination
// serves them (Twilio: us1 ashburn, ie1 dublin, au1 sydney). An edge name
// given as the voice region is taken as it is.
var twilioEdges = map[string]string{"us1": "ashburn", "ie1": "dublin", "au1": "sydney"}

var twilioEdgeNames = map[string]bool{"ashburn": true, "umatilla": true, "dublin": true, "frankfurt": true,
	"singapore": true, "sydney": true, "tokyo": true, "sao-paulo": true,
	"ashburn-ix": true, "san-jose-ix": true, "london-ix": true, "frankfurt-ix": true, "singapore-ix": true,
	"sydney-ix": true, "tokyo-ix": true}

// twilioEdge is the edge for a number's voice region ("" when none).
func twilioEdge(voiceRegion string) string {
	r := strings.ToLower(voiceRegion)
	if e, ok := twilioEdges[r]; ok {
		return e
	}
	if twilioEdgeNames[r] {
		return r
	}
	return ""
}

// twilioLocalize rewrites a termination host {domain}.pstn.twilio.com to
// {domain}.pstn.{edge}.twilio.com; other hosts are left alone.
func twilioLocalize(host, edge string) string {
	const suffix = ".pstn.twilio.com"
	if edge == "" || len(host) <= len(suffix) || !strings.EqualFold(host[len(host)-len(suffix):], suffix) {
		return host
	}
	domain := host[:len(host)-len(suffix)]
	if strings.Contains(domain, ".") {
		return host
	}
	return domain + ".pstn." + edge + ".twilio.com"
}

// egressTargets returns where to send a call to the phone number dest
// (E.164) through the carrier of the gateway number r, in the order to
// try them (failover on 5xx and timeouts). Empty: no termination is
// configured for that carrier.
func (s *Server) egressTargets(r *routing.Route, dest string) []routing.Endpoint {
	if r == nil || dest == "" {
		return nil
	}
	var uris []string
	edge := ""
	switch r.Number.Carrier {
	case "sandbox":
		if s.sandboxTerm != "" {
			uris = []string{s.sandboxTerm}
		}
	case "twilio", "telnyx":
		in, ok := s.table.Load().Integration(r.Number.IntegrationID)
		if !ok || in.Workspace != r.Number.Workspace {
			return nil
		}
		uris = in.Termination.URIs
		if r.Number.Carrier == "twilio" {
			edge = twilioEdge(r.Number.VoiceRegion)
		}
	}
	out := make([]routing.Endpoint, 0, len(uris))
	for _, raw := range uris {
		var u sip.Uri
		if !strings.Contains(raw, ":") || sip.ParseUri(raw, &u) != nil || u.Host == "" {
			continue
		}
		if u.Scheme != "sip" && u.Scheme != "sips" {
			continue
		}
		u.Host = twilioLocalize(u.Host, edge)
		u.User = dest
		u.Password = ""
		u.Headers = nil
		out = append(out, routing.Endpoint{Region: s.cfg.Region, URI: u.String()})
	}
	return out
}

// egressAuth is the digest credentials of the termination of r's carrier
// (empty: IP authentication).
func (s *Server) egressAuth(r *routing.Route) (user, pass string) {
	if r == nil || (r.Number.Carrier != "twilio" && r.Number.Carrier != "telnyx") {
		return "", ""
	}
	in, ok := s.table.Load().Integration(r.Number.IntegrationID)
	if !ok {
		return "", ""
	}
	return in.Termination.Username, in.Termination.Password
}
