package sip

import (
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/routing"
)

// Early media (issue 18): an agent with early_media "ringback" (or
// "ringback_tone") gets its callers a 180 Ringing from callgate as soon as
// the INVITE is routed, before the agent's endpoint answered anything, so
// that carriers and callers never wait on silence while the agent
// connects.
//
// To tags: the 180 is callgate's own response, with a To tag of its own
// ("cg..."), because the agent's tag is not known yet and a provisional
// response that creates an early dialog must carry one (RFC 3261 8.2.6.2,
// 12.1.1). The agent's responses are forwarded with the agent's tag, so a
// caller that sees a later 180/183 from the agent holds two early
// dialogs, as with a forking proxy (RFC 3261 13.2.2.4); the agent's 2xx
// confirms the agent's dialog and the other one ends. callgate's own
// final responses (408, 487, 503) carry tags of their own as before.
//
// "ringback_tone" on a relayed call: a 183 Session Progress instead, whose
// SDP answers the caller's offer with the relay's caller-facing port and
// the caller's G.711 codec, and the relay plays a ringback tone (440+480
// Hz, 2 s on, 4 s off) until the agent's media or SDP answer arrives. A
// caller that offered no G.711, or direct media, gets the 180.

// ringbacker is a media session that can play a ringback tone
// (gateway/media.Session).
type ringbacker interface {
	EarlyAnswer() ([]byte, error)
	StartRingback()
}

// earlyMedia sends callgate's 180 for an agent that asks for it. c.mu held.
func (c *call) earlyMedia() {
	if c.out != nil || c.inv == nil || c.rt.route == nil || c.rt.route.Agent == nil || c.state != stCalling || c.ended {
		return
	}
	mode := c.rt.route.Agent.EarlyMedia
	if mode != routing.EarlyMediaRingback && mode != routing.EarlyMediaRingbackTone {
		return
	}
	s := c.s
	res := sip.NewResponseFromRequest(c.inv, 180, "Ringing", nil)
	var rb ringbacker
	if r, ok := c.media.(ringbacker); ok && mode == routing.EarlyMediaRingbackTone {
		if body, err := r.EarlyAnswer(); err == nil {
			res = sip.NewResponseFromRequest(c.inv, 183, "Session Progress", body)
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			rb = r
		}
	}
	if to := res.To(); to != nil {
		to.Params.Add("tag", "cg"+randHex(8))
	}
	ct := &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: trimBrackets(s.viaHostOn(c.up.Side)), Port: s.viaPortOn(c.up.Side, c.up.Proto)}}
	if c.up.Proto != protoUDP {
		ct.Address.UriParams = sip.HeaderParams{{K: "transport", V: strings.ToLower(c.up.Proto.String())}}
	}
	res.AppendHeader(ct)
	c.state = stProceeding
	if !c.provSeen {
		c.provSeen = true
		c.observeSetup(s.metrics.SetupProvisional, s.metrics.OutboundSetupProvisional, time.Since(c.start))
	}
	s.metrics.Responses.WithLabelValues("INVITE", codeLabel(res.StatusCode)).Inc()
	if rb == nil {
		mode = routing.EarlyMediaRingback // what was sent
	}
	s.metrics.incall.early.WithLabelValues(mode).Inc()
	_ = s.tpFor(c.up).SendMsg(c.up, res)
	if rb != nil {
		rb.StartRingback()
	}
}
