package sip

import (
	"time"

	"github.com/callgate/callgate/routing"
)

// What happens during a relayed call (issue 18) that the call's media
// session must know from the start: DTMF (dtmf.go) and the agent's media
// timeout.

// mediaTimeouter is a media session whose timeout can be set per call
// (gateway/media.Session).
type mediaTimeouter interface {
	SetMediaTimeout(time.Duration)
}

// attachMedia is called once a call has its media session.
func (c *call) attachMedia() {
	c.attachDTMF()
	if mt, ok := c.media.(mediaTimeouter); ok && c.rt.route != nil {
		if d := routing.AgentMediaTimeout(c.rt.route.Agent, 0); d > 0 {
			mt.SetMediaTimeout(d) // the agent's media_timeout_ms; else the node's media.media_timeout
		}
	}
}
