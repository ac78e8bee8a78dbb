package routing

// SRTPCall is the secure media policy of one relayed call, leg by leg, as
// the SIP edge resolves it (trunk or integration, agent, workspace) and
// gateway/media applies it. The caller leg faces whoever sent the INVITE.
type SRTPCall struct {
	Caller, Agent string // SRTPOff, SRTPOptional or SRTPRequired, per leg
	// CallerTLS, AgentTLS: signalling with that leg's peer is over TLS,
	// so SDES keys (RFC 4568) may be sent to it. Never over UDP or TCP.
	CallerTLS, AgentTLS bool
	// AllowMixed (Workspace.AllowMixedSRTP): one leg SRTP, the other RTP.
	AllowMixed bool
}

// Off reports whether callgate leaves SRTP alone on this call: SDP
// crypto lines and packets pass through untouched, as without a policy.
func (p SRTPCall) Off() bool { return p.Caller == SRTPOff && p.Agent == SRTPOff }

// StricterSRTP returns the stricter of two SRTP policies.
func StricterSRTP(a, b string) string {
	rank := func(s string) int {
		switch s {
		case SRTPRequired:
			return 2
		case SRTPOptional:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}
