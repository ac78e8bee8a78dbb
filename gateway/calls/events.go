// Package calls defines call lifecycle events and publishes them on NATS
// subjects callgate.calls.<region>.<kind>.
package calls

import (
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Event kinds.
const (
	Started  = "started"
	Answered = "answered"
	Ended    = "ended"
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
}

// Publisher sends events. Implementations must not block the caller on
// the network.
type Publisher interface {
	Publish(Event)
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
}

// Publish implements Publisher.
func (p *NATSPublisher) Publish(e Event) {
	if p == nil || p.NC == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	region := e.Region
	if region == "" {
		region = p.Region
	}
	if err := p.NC.Publish(Subject(region, e.Kind), b); err != nil && p.Log != nil {
		p.Log.Warn("calls: event not published", "kind", e.Kind, "call_id", e.CallID, "err", err)
	}
}

// Discard drops every event.
type Discard struct{}

// Publish implements Publisher.
func (Discard) Publish(Event) {}

var (
	_ Publisher = (*NATSPublisher)(nil)
	_ Publisher = Discard{}
)
