package routing

import (
	"strings"
	"time"
)

// Per-agent and per-workspace settings for what happens during a call
// (issue 18): early media, media liveness, secure media and which SIP
// headers cross callgate.

// Early media modes of an agent (Agent.EarlyMedia).
const (
	EarlyMediaNone         = ""              // the caller hears what the agent sends (default)
	EarlyMediaRingback     = "ringback"      // 180 Ringing to the caller at once
	EarlyMediaRingbackTone = "ringback_tone" // 183 with a ringback tone from the relay at once (relay media)
)

// SRTP policies (Agent.SRTP, Integration.SRTP).
const (
	SRTPOff      = ""         // plain RTP (default)
	SRTPOptional = "optional" // SRTP when the peer offers or accepts it
	SRTPRequired = "required" // refuse the call without SRTP
)

// DefaultHeaderAllow is the header allow-list of a workspace that set
// none: custom headers and User-to-User.
var DefaultHeaderAllow = []string{"X-*", "User-to-User"}

// SIPHeaders is a workspace's policy for the SIP headers that pass
// between the caller and the agent (INVITE, 200, REFER, BYE).
type SIPHeaders struct {
	// Allow are header names, case-insensitive; a trailing "*" matches a
	// prefix ("X-*"). Nil: DefaultHeaderAllow.
	Allow []string
	// Keep are the names (same syntax) whose values call history keeps.
	Keep []string
}

// Allowed reports whether header name passes the allow-list.
func (h SIPHeaders) Allowed(name string) bool {
	allow := h.Allow
	if allow == nil {
		allow = DefaultHeaderAllow
	}
	return headerMatch(allow, name)
}

// Kept reports whether call history keeps header name.
func (h SIPHeaders) Kept(name string) bool { return headerMatch(h.Keep, name) }

func headerMatch(patterns []string, name string) bool {
	for _, p := range patterns {
		if strings.HasSuffix(p, "*") {
			if len(name) >= len(p)-1 && strings.EqualFold(name[:len(p)-1], p[:len(p)-1]) {
				return true
			}
		} else if strings.EqualFold(p, name) {
			return true
		}
	}
	return false
}

// AgentMediaTimeout is the media timeout of a call to agent a: its own,
// else def (the node's media.media_timeout).
func AgentMediaTimeout(a *Agent, def time.Duration) time.Duration {
	if a != nil && a.MediaTimeout > 0 {
		return a.MediaTimeout
	}
	return def
}
