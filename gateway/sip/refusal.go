package sip

import (
	"context"
	"log/slog"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// refusal is an INVITE answered here with a final response instead of
// being forwarded. One value says everything about it, so that the reply,
// the metric (callgate_sip_rejected_total's reason label, pre-created in
// metrics.go) and the log line come from one place.
type refusal struct {
	status     int
	phrase     string       // SIP reason phrase
	reason     string       // metric label and log reason
	headers    []sip.Header // added to the reply (shared: never modified)
	retryAfter bool         // add Retry-After (the configured delay)
	quiet      bool         // log at debug (scanners must not flood the log)
}

// The refusals of handleInvite. Their reason strings are the label values
// dashboards and alerts use: do not change them.
var (
	refuseDraining      = refusal{status: 503, phrase: "Service Unavailable", reason: "draining", retryAfter: true}
	refuseTooManyHops   = refusal{status: 483, phrase: "Too Many Hops", reason: "too_many_hops"}
	refuseUnknownSource = refusal{status: 403, phrase: "Forbidden", reason: "unknown_source", quiet: true}
	refuseNoSnapshot    = refusal{status: 503, phrase: "Service Unavailable", reason: "no_snapshot", retryAfter: true}
	refuseUnknownNumber = refusal{status: 404, phrase: "Number Not Provisioned", reason: "unknown_number"}
	refuseUnassigned    = refusal{status: 480, phrase: "Temporarily Unavailable", reason: "unassigned"}
	refuseNoEndpoint    = refusal{status: 503, phrase: "Service Unavailable", reason: "no_endpoint", retryAfter: true}
	refuseNoMediaPorts  = refusal{status: 503, phrase: "Service Unavailable", reason: "no_media_ports", retryAfter: true}
	refuseBadSDP        = refusal{status: 400, phrase: "Bad Request", reason: "bad_sdp",
		headers: []sip.Header{sip.NewHeader("Warning", `399 callgate "malformed SDP"`)}}
)

// refusalFor translates a rejection of routing.Decide into SIP: a number
// that is not active or has no agent is temporarily unavailable (480,
// one metric label "unassigned" for both), no healthy endpoint is 503.
func refusalFor(r routing.Reason) refusal {
	switch r {
	case routing.ReasonNoEndpoint:
		return refuseNoEndpoint
	case routing.ReasonUnknownNumber:
		return refuseUnknownNumber
	default: // ReasonInactive, ReasonUnassigned
		return refuseUnassigned
	}
}

// reply sends the refusal statelessly to the INVITE's sender.
func (s *Server) replyRefusal(req *sip.Request, from peer, rf refusal) {
	s.metrics.Rejected.WithLabelValues(rf.reason).Inc()
	hdrs := rf.headers
	if rf.retryAfter {
		hdrs = append(hdrs[:len(hdrs):len(hdrs)], s.retryAfter())
	}
	s.replyStateless(req, from, rf.status, rf.phrase, hdrs...)
}

// refuse answers an INVITE refused before a call exists: reply, metric
// and one log line. number is the called E.164 when known, else the
// Request-URI user is logged; it is always masked.
func (s *Server) refuse(req *sip.Request, from peer, number string, rf refusal) {
	s.replyRefusal(req, from, rf)
	level := slog.LevelInfo
	if rf.quiet {
		level = slog.LevelDebug
	}
	if !s.log.Enabled(context.Background(), level) {
		return
	}
	if number == "" {
		number = req.Recipient.User
	}
	s.log.Log(context.Background(), level, "sip: call rejected", "call_id", string(*req.CallID()),
		"number", phone.Mask(number), "status", rf.status, "reason", rf.reason)
}

// refuse answers the INVITE of a call that routing refused (the number is
// ours): reply, metric, started and ended events, the call's outcome line.
func (c *call) refuse(from peer, rf refusal) {
	s := c.s
	s.replyRefusal(c.inv, from, rf)
	c.publish(calls.Started, 0, "")
	c.publish(calls.Ended, rf.status, rf.reason)
	c.logOutcome(rf.status, rf.reason)
	s.metrics.Calls.WithLabelValues(classLabel(rf.status)).Inc()
}
