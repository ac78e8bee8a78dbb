package sip

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/sdp/v3"

	"github.com/callgate/callgate/routing"
)

// Secure media policy of a call (issue 18): the trunk's and the number's
// integration's `srtp` (the stricter one) for the caller leg, the
// agent's for the agent leg, the workspace's allow_mixed_srtp. A relayed
// call hands it to its media session (gateway/media terminates SRTP); a
// direct-media call's SDP passes untouched, but a `required` side still
// refuses an offer without SRTP. Refusals are 488 Not Acceptable Here
// with a Warning that says why.

// srtpSession is a MediaSession that terminates SRTP (gateway/media.Session).
type srtpSession interface {
	SetSRTP(routing.SRTPCall)
}

// srtpPolicy resolves the policy of an INVITE from trunk (callerTLS: it
// came over TLS) decided as dec.
func (s *Server) srtpPolicy(trunk *Trunk, snap *routing.Snapshot, dec *routing.Decision, callerTLS bool) routing.SRTPCall {
	p := routing.SRTPCall{CallerTLS: callerTLS}
	if trunk != nil && trunk.SRTP != "off" {
		p.Caller = trunk.SRTP
	}
	if dec.Route != nil && dec.Route.Number.IntegrationID != "" {
		if in, ok := snap.Integration(dec.Route.Number.IntegrationID); ok {
			p.Caller = routing.StricterSRTP(p.Caller, in.SRTP)
		}
	}
	if dec.Agent != nil {
		p.Agent = dec.Agent.SRTP
	}
	p.AgentTLS = len(dec.Candidates) > 0
	for _, ep := range dec.Candidates {
		if !s.endpointURI(ep.URI).tls { // endpointTLS, parsed once (proxy.go)
			p.AgentTLS = false // the one offer goes to every candidate: keys only if all are TLS
		}
	}
	if ws := snap.Workspace(dec.Workspace); ws != nil {
		p.AllowMixed = ws.AllowMixedSRTP
	}
	return p
}

// endpointTLS reports whether signalling to an agent endpoint is over TLS
// (sips: or ;transport=tls).
func endpointTLS(uri string) bool {
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return false
	}
	if strings.EqualFold(u.Scheme, "sips") {
		return true
	}
	if u.UriParams != nil {
		if t, ok := u.UriParams.Get("transport"); ok && strings.EqualFold(t, "tls") {
			return true
		}
	}
	return false
}

// secureMedia hands the call's SRTP policy to its relay session and marks
// the call for the full in-dialog path (its re-INVITEs carry keys).
func (c *call) secureMedia(sess MediaSession, p routing.SRTPCall) {
	if p.Off() {
		return
	}
	if ss, ok := sess.(srtpSession); ok {
		ss.SetSRTP(p)
	}
	c.inspect.Store(true)
}

var refuseSRTPPolicy = refusal{status: 488, phrase: "Not Acceptable Here", reason: "srtp_policy"}

// sdpRefusal is the refusal for an error of RewriteOffer: the SRTP policy
// (488 with its reason in a Warning), else malformed SDP (400).
func sdpRefusal(err error) refusal {
	var pe interface {
		SIPStatus() int
		Reason() string
	}
	if errors.As(err, &pe) && pe.SIPStatus() == 488 {
		rf := refuseSRTPPolicy
		rf.headers = []sip.Header{sip.NewHeader("Warning", `399 callgate "`+strings.ReplaceAll(pe.Reason(), `"`, `'`)+`"`)}
		return rf
	}
	return refuseBadSDP
}

// srtpDirectRefusal checks a direct-media call's offer: a side that
// requires SRTP refuses an offer whose audio has neither a=crypto nor
// DTLS-SRTP. The SDP itself passes untouched.
func srtpDirectRefusal(body []byte, p routing.SRTPCall) (refusal, bool) {
	if p.Caller != routing.SRTPRequired && p.Agent != routing.SRTPRequired {
		return refusal{}, false
	}
	if len(body) == 0 {
		return refusal{}, false // a late offer: the endpoints negotiate it
	}
	if offersSRTP(body) {
		return refusal{}, false
	}
	rf := refuseSRTPPolicy
	rf.headers = []sip.Header{sip.NewHeader("Warning", `399 callgate "srtp is required and the offer has no SRTP (a=crypto or DTLS-SRTP)"`)}
	return rf, true
}

// offersSRTP reports whether the first active audio stream of an SDP is
// keyed: a=crypto (SDES) or a=fingerprint (DTLS-SRTP), at media or
// session level.
func offersSRTP(body []byte) bool {
	var sd sdp.SessionDescription
	if sd.Unmarshal(body) != nil {
		return false
	}
	for _, md := range sd.MediaDescriptions {
		if md == nil || !strings.EqualFold(md.MediaName.Media, "audio") || md.MediaName.Port.Value == 0 {
			continue
		}
		for _, a := range append(md.Attributes, sd.Attributes...) {
			switch strings.ToLower(strings.TrimSpace(a.Key)) {
			case "crypto", "fingerprint":
				return true
			}
		}
		return false
	}
	return false
}
