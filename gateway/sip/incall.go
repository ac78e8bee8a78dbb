package sip

import (
	"time"

	"github.com/callgate/callgate/routing"
)

// What happens during a relayed call (issue 18) that the call's media
// session must know from the start: DTMF (dtmf.go) and the agent's media
// timeout.

// comfortNoiser is a media session that can keep the caller's media
// alive while the agent is silent (gateway/media.Session).
type comfortNoiser interface {
	SetComfortNoise(bool)
}

// mediaTimeouter is a media session whose timeout can be set per call
// (gateway/media.Session).
type mediaTimeouter interface {
	SetMediaTimeout(time.Duration)
}

// attachMedia is called once a call has its media session.
func (c *call) attachMedia() {
	c.attachDTMF()
	if cn, ok := c.media.(comfortNoiser); ok && c.out == nil {
		cn.SetComfortNoise(true) // the carrier's no-RTP timers and NATs while the agent thinks
	}
	if mt, ok := c.media.(mediaTimeouter); ok && c.rt.route != nil {
		if d := routing.AgentMediaTimeout(c.rt.route.Agent, 0); d > 0 {
			mt.SetMediaTimeout(d) // the agent's media_timeout_ms; else the node's media.media_timeout
		}
	}
}
