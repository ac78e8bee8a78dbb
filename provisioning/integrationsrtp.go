package provisioning

import "github.com/callgate/callgate/routing"

// applyIntegrationSRTP sets an integration's secure media policy from a
// PATCH: calls from this carrier account to the workspace's numbers use
// the stricter of it and the SIP trunk's (gateway/sip/srtp.go).
func applyIntegrationSRTP(v *ValidationError, rec *integrationRecord, val string) {
	switch val {
	case routing.SRTPOff, "off":
		rec.SRTP = routing.SRTPOff
	case routing.SRTPOptional, routing.SRTPRequired:
		rec.SRTP = val
	default:
		v.Add("srtp", "%q: want off, optional or required", val)
	}
}
