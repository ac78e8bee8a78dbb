package provisioning

import (
	"time"

	"github.com/callgate/callgate/routing"
)

// An agent's settings for what happens during a call (issue 18); see
// routing/incall.go for their meaning.

// MaxAgentMediaTimeoutMS bounds an agent's media_timeout_ms (1 hour).
const MaxAgentMediaTimeoutMS = 3600 * 1000

// AgentCallSettings are the in-call settings of an agent.
type AgentCallSettings struct {
	// EarlyMedia: "" (none), "ringback" or "ringback_tone".
	EarlyMedia string `json:"early_media,omitempty"`
	// MediaTimeoutMS ends a call when neither side sent RTP for this
	// long; 0: the node's media.media_timeout.
	MediaTimeoutMS int `json:"media_timeout_ms,omitempty"`
	// SRTP: "" (off), "optional" or "required".
	SRTP string `json:"srtp,omitempty"`
}

func (c *AgentCallSettings) validate(v *ValidationError) {
	switch c.EarlyMedia {
	case routing.EarlyMediaNone, routing.EarlyMediaRingback, routing.EarlyMediaRingbackTone:
	default:
		v.Add("early_media", `must be "ringback", "ringback_tone" or absent`)
	}
	if c.MediaTimeoutMS != 0 && (c.MediaTimeoutMS < 1000 || c.MediaTimeoutMS > MaxAgentMediaTimeoutMS) {
		v.Add("media_timeout_ms", "must be between 1000 and %d (or 0 for the gateway's default)", MaxAgentMediaTimeoutMS)
	}
	switch c.SRTP {
	case routing.SRTPOff, "off":
		c.SRTP = routing.SRTPOff
	case routing.SRTPOptional, routing.SRTPRequired:
	default:
		v.Add("srtp", `must be "off", "optional" or "required"`)
	}
}

// routing copies the settings into the data plane's agent.
func (c AgentCallSettings) routing(a *routing.Agent) {
	a.EarlyMedia = c.EarlyMedia
	a.MediaTimeout = time.Duration(c.MediaTimeoutMS) * time.Millisecond
	a.SRTP = c.SRTP
}
