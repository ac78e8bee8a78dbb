// Package calls defines call lifecycle events and publishes them on NATS
// subjects callgate.calls.<region>.<kind>.
package calls

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Event kinds.
const (
	Started  = "started"
	Answered = "answered"
	Ended    = "ended"
	// During the call (issue 18).
	DTMF         = "dtmf"
	TransferKind = "transfer"
)

// Event is one step in a call's life. Numbers are E.164.
type Event struct {
	Kind        string        `json:"kind"`
	CallID      string        `json:"call_id"`
	Time        time.Time     `json:"time"`
	Number      string        `json:"number"`
	Workspace   string        `json:"workspace,omitempty"`
	Agent       string        `json:"agent,omitempty"`
	Region      string        `json:"region,omitempty"`
	Carrier     string        `json:"carrier,omitempty"`
	Origin      string        `json:"origin,omitempty"`      // purchased, imported, forwarded
	Source      string        `json:"source,omitempty"`      // sip, twilio_webhook, telnyx_webhook
	SetupMillis float64       `json:"setup_ms,omitempty"`    // INVITE to answer (answered, ended)
	Status      int           `json:"status,omitempty"`      // final SIP status
	Reason      string        `json:"reason,omitempty"`      // e.g. "bye_caller", "cancel", "no_endpoint"
	Duration    time.Duration `json:"duration_ns,omitempty"` // answered to ended
	Media       any           `json:"media,omitempty"`       // per-leg media figures when relayed

	Direction     string `json:"direction,omitempty"`      // inbound (default) or outbound
	From          string `json:"from,omitempty"`           // calling number (E.164 when it is one)
	To            string `json:"to,omitempty"`             // called number as dialled
	ForwardedFrom string `json:"forwarded_from,omitempty"` // business line the call was forwarded from
	Endpoint      string `json:"endpoint,omitempty"`       // the agent endpoint (or termination) that answered or was tried last
	HookOutcome   string `json:"hook_outcome,omitempty"`   // routing hook: route, reject, timeout, error, invalid, none
	FallbackStep  int    `json:"fallback_step,omitempty"`  // 0: the assigned agent; n: the n-th fallback step answered

	// During the call (issue 18).
	Digits   string            `json:"digits,omitempty"`    // dtmf: the digit(s) received or sent
	DTMFFrom string            `json:"dtmf_from,omitempty"` // dtmf: "caller" or "agent"; via: see DTMFVia
	DTMFVia  string            `json:"dtmf_via,omitempty"`  // dtmf: "rfc4733" or "info"
	Transfer *TransferInfo     `json:"transfer,omitempty"`  // transfer: progress and outcome
	Headers  map[string]string `json:"headers,omitempty"`   // started/ended: headers the workspace keeps (sip_headers.keep)

	// CarrierCallID is the carrier's handle on the caller's call, for its
	// own verbs (Twilio: the CallSid the voice webhook got; Telnyx Call
	// Control: call_control_id). Webhook calls' events carry it; the
	// call history keeps it in the workspace's own stream and never
	// shows it (callhistory.Call.CarrierCallID).
	CarrierCallID string `json:"carrier_call_id,omitempty"`
}

// TransferInfo is a transfer's progress ("transfer" events) and outcome
// (also on the call's "ended" event when the agent's leg ended by it).
type TransferInfo struct {
	To      string `json:"to"`               // the target as asked (tel:/sip: URI)
	Mode    string `json:"mode"`             // "refer" (passed to the carrier), "bridge" (by callgate), "carrier_verb" (TwiML/Call Control)
	Via     string `json:"via,omitempty"`    // "sip_refer" or "api"
	State   string `json:"state"`            // TransferTrying, TransferRinging, or an outcome
	Status  int    `json:"status,omitempty"` // the final SIP status of the new leg
	Carrier string `json:"carrier,omitempty"`
}

// Transfer states and outcomes.
const (
	TransferTrying    = "trying"
	TransferRinging   = "ringing"
	TransferCompleted = "completed"
	TransferBusy      = "busy"
	TransferNoAnswer  = "no_answer"
	TransferFailed    = "failed"
	TransferRefused   = "refused" // policy (caller ID, destination, credits)
)

// Directions of a call.
const (
	Inbound  = "inbound"
	Outbound = "outbound"
)

// Limiter counts calls against a workspace's limits across every node of
// a cluster. Edges ask it before routing a new call and tell it when the
// call ends.
type Limiter interface {
	// Admit counts a new call of workspace ws in direction dir against
	// the caps given. When a cap is reached the call is not counted and
	// rule names it (e.g. "max_concurrent_calls", "max_calls_per_second",
	// "outbound.max_concurrent_calls"), with how long to wait before
	// retrying (SIP Retry-After).
	Admit(ws, dir string, caps LimitCaps) (rule string, retryAfter time.Duration, ok bool)
	// Release ends a call Admit counted.
	Release(ws, dir string)
}

// LimitCaps are the caps that apply to one new call; zero: no cap.
type LimitCaps struct {
	MaxConcurrent    int // workspace, inbound + outbound
	MaxPerSecond     int
	MaxOutConcurrent int // outbound only (outbound policy)
	MaxOutPerSecond  int
}

// UsageMeter charges outbound minutes to a workspace's credits.
type UsageMeter interface {
	// Authorize is nil when the workspace's balance covers the first
	// minute of a call to dest (E.164).
	Authorize(ws, dest string) error
	// Answered starts metering an answered outbound call.
	Answered(callID, ws, dest string, at time.Time)
	// Ended stops metering and charges the call once (idempotent by
	// call id); a call never answered costs nothing.
	Ended(callID string, at time.Time)
}

// Ender ends a call in progress (BYE both ways) with an end reason such
// as "credits_exhausted"; false when the call is not here.
type Ender interface {
	EndCall(callID, reason string) bool
}

// Publisher sends events. Implementations must not block the caller on
// the network.
type Publisher interface {
	Publish(Event)
}

// EncodedPublisher is a Publisher that also takes an event with its JSON
// (Encode's bytes), so that the publishers of one event encode it once
// (callhistory.Tee). It must not keep data after PublishEncoded returns
// (it copies what it keeps): the caller reuses the buffer for the next
// event.
type EncodedPublisher interface {
	Publisher
	PublishEncoded(e Event, data []byte)
}

// Subject is the NATS subject for an event from region.
func Subject(region, kind string) string {
	if region == "" {
		region = "none"
	}
	return "callgate.calls." + region + "." + kind
}

// NATSPublisher publishes on a NATS connection. nats.Conn.Publish buffers
// and returns at once; while disconnected the client's reconnect buffer
// holds events and overflowing events are dropped (and logged).
type NATSPublisher struct {
	NC     *nats.Conn
	Region string // this node's region, used in the subject
	Log    *slog.Logger
	// Interest, when set, reports whether the server NC is connected to
	// has a subscriber for a subject, as the server itself decides where
	// a message goes (store.Store.SubjectInterest: the embedded server's
	// sublist, with route and leaf node interest). An event nobody
	// subscribes to is then not published at all (Skipped counts it).
	// nil: every event is published (an external NATS).
	Interest func(subject string) bool

	skipped  atomic.Uint64
	subjects subjectCache
}

// subjectCache keeps the subjects of the regions and kinds seen, so that
// an event's subject is not built (allocated) again for each event: a
// map copied on write, read without a lock.
type subjectCache struct {
	m  atomic.Pointer[map[[2]string]string]
	mu sync.Mutex // writers
}

// maxCachedSubjects bounds the cache (regions come from the config and
// the edges, kinds from this package: a few dozen at most).
const maxCachedSubjects = 256

func (c *subjectCache) subject(region, kind string) string {
	if m := c.m.Load(); m != nil {
		if s, ok := (*m)[[2]string{region, kind}]; ok {
			return s
		}
	}
	s := Subject(region, kind)
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	if old != nil && len(*old) >= maxCachedSubjects {
		return s
	}
	m := make(map[[2]string]string, 8)
	if old != nil {
		for k, v := range *old {
			m[k] = v
		}
	}
	m[[2]string{region, kind}] = s
	c.m.Store(&m)
	return s
}

// Skipped is how many events were not published because nobody
// subscribed to their subject (Interest).
func (p *NATSPublisher) Skipped() uint64 { return p.skipped.Load() }

// Publish implements Publisher.
func (p *NATSPublisher) Publish(e Event) {
	if p == nil || p.NC == nil {
		return
	}
	subject, ok := p.listened(&e)
	if !ok {
		return // not encoded either
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b, err := Encode(&e)
	if err != nil {
		return
	}
	p.publish(e, subject, b)
}

// PublishEncoded implements EncodedPublisher: it publishes data, e's JSON.
// nats.Conn.Publish copies data into the connection's buffer before it
// returns (nats.go v1.55.0, Conn.publish: natsWriter.appendBufs appends
// it to the write buffer, or to the reconnect buffer), so data is not
// kept.
func (p *NATSPublisher) PublishEncoded(e Event, data []byte) {
	if p == nil || p.NC == nil {
		return
	}
	if subject, ok := p.listened(&e); ok {
		p.publish(e, subject, data)
	}
}

// listened is the subject of an event of e (its region and kind), and
// false (the event counted as skipped) when Interest says nobody
// subscribes to it.
func (p *NATSPublisher) listened(e *Event) (string, bool) {
	region := e.Region
	if region == "" {
		region = p.Region
	}
	subject := p.subjects.subject(region, e.Kind)
	if p.Interest != nil && !p.Interest(subject) {
		p.skipped.Add(1)
		return subject, false
	}
	return subject, true
}

func (p *NATSPublisher) publish(e Event, subject string, data []byte) {
	if err := p.NC.Publish(subject, data); err != nil && p.Log != nil {
		p.Log.Warn("calls: event not published", "kind", e.Kind, "call_id", e.CallID, "err", err)
	}
}

// Discard drops every event.
type Discard struct{}

// Publish implements Publisher.
func (Discard) Publish(Event) {}

var (
	_ EncodedPublisher = (*NATSPublisher)(nil)
	_ Publisher        = Discard{}
)
