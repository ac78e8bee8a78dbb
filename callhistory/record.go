// Package callhistory keeps every call's lifecycle events (calls.Event)
// in JetStream, in one stream per workspace (store.HistoryStreamName),
// and reads them back as call records: GET /v1/calls and
// GET /v1/calls/{id}. Events are stored in batches, one message per
// workspace per batch on BatchSubject, one event per line; history
// written before that has one message per event on the call's own
// subject (Subject), and is read the same way.
//
// A Recorder takes events from the edges without blocking them (a bounded
// queue, asynchronous JetStream publishes) and counts every event it could
// not store. A Reader lists one workspace's calls from that workspace's
// stream, so a listing reads that workspace's events and nobody else's.
package callhistory

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/store"
)

// Outcomes of a call (Call.Outcome and the outcome filter), derived from
// its events by Outcome.
const (
	OutcomeAnswered   = "answered"    // the call was answered (an answered event, or a 2xx end)
	OutcomeBusy       = "busy"        // 486 Busy Here, 600 Busy Everywhere, or the carrier said busy
	OutcomeNoAnswer   = "no_answer"   // 408 / ring timeout, 480 from the agent, or the carrier said no-answer
	OutcomeRejected   = "rejected"    // refused: 403, 404, 603 (and other 6xx), unassigned or inactive number, a limit, the routing hook
	OutcomeCancelled  = "cancelled"   // the caller hung up before answer (CANCEL, 487)
	OutcomeFailed     = "failed"      // anything else that ended unanswered (5xx, no endpoint, ...)
	OutcomeInProgress = "in_progress" // not ended yet
)

// Outcomes lists the values of the outcome filter.
var Outcomes = []string{OutcomeAnswered, OutcomeFailed, OutcomeBusy, OutcomeNoAnswer, OutcomeRejected, OutcomeCancelled, OutcomeInProgress}

// KnownOutcome reports whether o is one of Outcomes.
func KnownOutcome(o string) bool {
	for _, x := range Outcomes {
		if x == o {
			return true
		}
	}
	return false
}

// Call is one call's record, merged from its events.
type Call struct {
	ID            string     `json:"id"`
	Workspace     string     `json:"workspace"`
	Direction     string     `json:"direction"`
	From          string     `json:"from,omitempty"`
	To            string     `json:"to,omitempty"`
	Number        string     `json:"number,omitempty"`
	Origin        string     `json:"origin,omitempty"`
	ForwardedFrom string     `json:"forwarded_from,omitempty"`
	Agent         string     `json:"agent,omitempty"`
	Region        string     `json:"region,omitempty"`
	Carrier       string     `json:"carrier,omitempty"`
	Source        string     `json:"source,omitempty"`
	Endpoint      string     `json:"endpoint,omitempty"`
	HookOutcome   string     `json:"hook_outcome,omitempty"`
	FallbackStep  int        `json:"fallback_step"`
	Outcome       string     `json:"outcome"`
	StartedAt     time.Time  `json:"started_at"`
	AnsweredAt    *time.Time `json:"answered_at"`
	EndedAt       *time.Time `json:"ended_at"`
	SetupMillis   *float64   `json:"setup_ms"`
	// DurationSeconds is answered to ended (0 for an unanswered call).
	DurationSeconds float64 `json:"duration_s"`
	SIPStatus       int     `json:"sip_status,omitempty"`
	EndReason       string  `json:"end_reason,omitempty"`
	// Media is present when callgate relayed the call's media.
	Media *Media `json:"media,omitempty"`
	// Headers are the SIP headers the workspace keeps (sip_headers.keep),
	// from the call's events (the INVITE's, the routing hook's, the
	// answer's and the BYE's; a later value of a name wins).
	Headers map[string]string `json:"headers,omitempty"`
	// DTMF are the digits seen or sent during the call (dtmf events),
	// oldest first, at most MaxDTMF entries.
	DTMF []DTMF `json:"dtmf,omitempty"`
	// Transfer is the call's last transfer (issue 18): its progress, or
	// its outcome (completed, busy, no_answer, failed with status, refused).
	Transfer *calls.TransferInfo `json:"transfer,omitempty"`
	// CarrierCallID is the carrier's handle on a webhook call (Twilio
	// CallSid, Telnyx call_control_id) for transfers and digits by the
	// carrier's verbs; never shown in the API.
	CarrierCallID string `json:"-"`

	startSeen bool
}

// Media are a relayed call's media figures, per leg: caller (what the
// carrier sent towards the agent) and agent (what the agent sent back).
type Media struct {
	Caller   MediaLeg `json:"caller"`
	Agent    MediaLeg `json:"agent"`
	TimedOut bool     `json:"timed_out,omitempty"`
}

// MediaLeg are one leg's figures (gateway/media LegStats, summarised).
type MediaLeg struct {
	Packets      uint64  `json:"packets"`
	Lost         int64   `json:"lost"`
	LossRatio    float64 `json:"loss_ratio"`
	JitterMillis float64 `json:"jitter_ms"`
	JitterMaxMs  float64 `json:"jitter_max_ms"`
	RTTMillis    float64 `json:"rtt_ms,omitempty"`
	// SRTP is the crypto suite when the relay terminated SRTP on the leg
	// (never a key); its dropped packets: failed authentication, replays.
	SRTP             string `json:"srtp,omitempty"`
	SRTPAuthFailures uint64 `json:"srtp_auth_failures,omitempty"`
	SRTPReplays      uint64 `json:"srtp_replays,omitempty"`
}

// mediaOf reads the relay's figures (gateway/media CallStats as JSON).
func mediaOf(raw json.RawMessage) *Media {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var m struct {
		TimedOut bool     `json:"timed_out"`
		Caller   MediaLeg `json:"caller"`
		Agent    MediaLeg `json:"agent"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil
	}
	return &Media{Caller: m.Caller, Agent: m.Agent, TimedOut: m.TimedOut}
}

// storedEvent is calls.Event as read back (Media left raw).
type storedEvent struct {
	calls.Event
	Media json.RawMessage `json:"media,omitempty"`
}

// CallKey is the subject token of a call id: Call-IDs may hold characters
// that subjects cannot ('.', '*', '>', spaces), so the key is a hash.
func CallKey(callID string) string {
	h := sha256.Sum256([]byte(callID))
	return hex.EncodeToString(h[:16])
}

// BatchSubject is the subject of a workspace's batches of events.
func BatchSubject(workspace string) string {
	return store.HistorySubjectPrefix + workspace + ".batch"
}

// Subject is the subject a workspace's call had its events on, one
// message each, before they were stored in batches (BatchSubject).
func Subject(workspace, callID string) string {
	// One allocation.
	var in [128]byte
	h := sha256.Sum256(append(in[:0], callID...))
	var key [32]byte
	hex.Encode(key[:], h[:16])
	var b strings.Builder
	b.Grow(len(store.HistorySubjectPrefix) + len(workspace) + 1 + len(key))
	b.WriteString(store.HistorySubjectPrefix)
	b.WriteString(workspace)
	b.WriteByte('.')
	b.Write(key[:])
	return b.String()
}

// validWorkspace reports whether ws can be a subject token (the ids
// provisioning issues: lower-case letters, digits, '-', '_').
func validWorkspace(ws string) bool {
	if ws == "" || len(ws) > 63 {
		return false
	}
	for _, c := range ws {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// apply merges one event into c.
func (c *Call) apply(e storedEvent) {
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	if c.ID == "" {
		c.ID = e.CallID
	}
	set(&c.Workspace, e.Workspace)
	set(&c.Direction, e.Direction)
	set(&c.From, e.From)
	set(&c.To, e.To)
	set(&c.Number, e.Number)
	set(&c.Origin, e.Origin)
	set(&c.ForwardedFrom, e.ForwardedFrom)
	set(&c.Agent, e.Agent)
	set(&c.Region, e.Region)
	set(&c.Carrier, e.Carrier)
	set(&c.Source, e.Source)
	set(&c.Endpoint, e.Endpoint)
	set(&c.HookOutcome, e.HookOutcome)
	set(&c.CarrierCallID, e.CarrierCallID)
	if e.FallbackStep > 0 {
		c.FallbackStep = e.FallbackStep
	}
	if e.SetupMillis > 0 {
		v := e.SetupMillis
		c.SetupMillis = &v
	}
	for k, v := range e.Headers { // kept SIP headers (gateway/sip headers.go)
		if c.Headers == nil {
			c.Headers = make(map[string]string, len(e.Headers))
		}
		c.Headers[k] = v
	}
	t := e.Time.UTC()
	switch e.Kind {
	case calls.Started:
		c.StartedAt, c.startSeen = t, true
	case calls.Answered:
		c.AnsweredAt = &t
	case calls.DTMF:
		c.addDTMF(e.Event, t)
	case calls.Ended:
		c.EndedAt = &t
		c.SIPStatus = e.Status
		c.EndReason = e.Reason
		if e.Duration > 0 {
			c.DurationSeconds = e.Duration.Seconds()
		}
		if m := mediaOf(e.Media); m != nil {
			c.Media = m
		}
		if e.Transfer != nil {
			c.Transfer = e.Transfer
		}
	case calls.TransferKind:
		if e.Transfer != nil {
			c.Transfer = e.Transfer
		}
	}
}

// finish fills what the events leave implicit: the direction, a start
// time when the started event is missing, the outcome.
func (c *Call) finish() {
	if c.Direction == "" {
		c.Direction = calls.Inbound
	}
	if !c.startSeen {
		// Derive it: ended - duration - setup (or the first event's time).
		switch {
		case c.EndedAt != nil:
			st := c.EndedAt.Add(-time.Duration(c.DurationSeconds * float64(time.Second)))
			if c.SetupMillis != nil {
				st = st.Add(-time.Duration(*c.SetupMillis * float64(time.Millisecond)))
			}
			c.StartedAt = st
		case c.AnsweredAt != nil:
			c.StartedAt = *c.AnsweredAt
		}
	}
	if c.AnsweredAt == nil && c.SIPStatus >= 200 && c.SIPStatus < 300 && c.DurationSeconds > 0 && c.EndedAt != nil {
		at := c.EndedAt.Add(-time.Duration(c.DurationSeconds * float64(time.Second)))
		c.AnsweredAt = &at
	}
	c.Outcome = Outcome(c.AnsweredAt != nil, c.EndedAt != nil, c.SIPStatus, c.EndReason)
}

// Outcome derives a call's outcome from whether it was answered and
// ended, its final SIP status and its end reason (see the Outcome*
// constants; the README's "Call history" section documents the rules).
func Outcome(answered, ended bool, status int, reason string) string {
	if answered {
		return OutcomeAnswered
	}
	if !ended {
		return OutcomeInProgress
	}
	r := strings.ToLower(reason)
	switch {
	case status >= 200 && status < 300:
		return OutcomeAnswered
	case r == "cancel" || r == "canceled" || r == "cancelled" || status == 487:
		return OutcomeCancelled
	case r == "busy" || status == 486 || status == 600:
		return OutcomeBusy
	case r == "no_answer" || r == "ring_timeout" || status == 408:
		return OutcomeNoAnswer
	case r == "unassigned" || r == "inactive" || r == "unknown_number" || r == "rejected" ||
		strings.HasPrefix(r, "hook") || strings.Contains(r, "max_") || strings.HasPrefix(r, "limit") ||
		status == 403 || status == 404 || status >= 600:
		return OutcomeRejected
	case status == 480:
		return OutcomeNoAnswer
	default:
		return OutcomeFailed
	}
}
