// Package routing holds the data plane's view of the world: an immutable
// snapshot of number → agent → endpoints, swapped atomically whenever the
// state in NATS changes, and the choice of region for a call.
//
// The hot path (SIP, webhooks) only ever reads a *Snapshot obtained from
// Table.Load; it never waits on the network, the disk or a writer's lock.
package routing

import (
	"sync/atomic"
	"time"
)

// Number statuses.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
)

// Number origins.
const (
	OriginPurchased = "purchased"
	OriginImported  = "imported"
	OriginForwarded = "forwarded" // a call's origin when it came through a registered business line
)

// Endpoint is one place an agent answers calls.
type Endpoint struct {
	Region string `json:"region"`
	URI    string `json:"uri"` // sip:bot@127.0.0.1:5090;transport=udp
}

// Agent is a voice-AI agent as the data plane sees it.
type Agent struct {
	ID           string
	Workspace    string
	Name         string
	Endpoints    []Endpoint
	Media        string // "direct" (default) or "relay"
	MessagingURL string
}

// Number is an owned number as the data plane sees it.
type Number struct {
	E164          string
	Workspace     string
	Carrier       string // sandbox, twilio, telnyx
	Origin        string // purchased, imported
	Status        string // active, suspended
	AgentID       string
	VoiceRegion   string
	IntegrationID string // carrier integration that owns the number (imports and carrier purchases)
}

// Forward registers a business line that forwards calls to a gateway number.
type Forward struct {
	Workspace      string
	BusinessNumber string // E.164 of the customer's existing line
	GatewayNumber  string // E.164 of the callgate number it forwards to
}

// Integration is the in-memory view of a carrier integration that the
// webhook edge needs to verify signatures. Secrets here are decrypted and
// live only in memory.
type Integration struct {
	ID        string
	Workspace string
	Carrier   string
	AccountID string // Twilio account SID
	AuthToken string // Twilio auth token (webhook signatures)
	PublicKey string // Telnyx webhook public key, base64
}

// Route is the result of a lookup: the number and, when assigned, its agent.
type Route struct {
	Number Number
	Agent  *Agent // nil when unassigned or the agent is unknown
}

// Snapshot is an immutable routing table. Build one with a Builder.
type Snapshot struct {
	numbers      map[string]*Route
	forwards     map[string]Forward // by business number
	agents       map[string]*Agent  // by workspace + "/" + id
	integrations map[string]Integration
	built        time.Time
}

// Lookup returns the route for an E.164 number.
func (s *Snapshot) Lookup(e164 string) (*Route, bool) {
	if s == nil {
		return nil, false
	}
	r, ok := s.numbers[e164]
	return r, ok
}

// ForwardFrom returns the forwarding registration of a business line.
func (s *Snapshot) ForwardFrom(business string) (Forward, bool) {
	if s == nil {
		return Forward{}, false
	}
	f, ok := s.forwards[business]
	return f, ok
}

// Integration returns an integration by id.
func (s *Snapshot) Integration(id string) (Integration, bool) {
	if s == nil {
		return Integration{}, false
	}
	i, ok := s.integrations[id]
	return i, ok
}

// Agents calls fn for every agent in the snapshot (for probing).
func (s *Snapshot) Agents(fn func(*Agent)) {
	if s == nil {
		return
	}
	for _, a := range s.agents {
		fn(a)
	}
}

// Len is the number of numbers in the snapshot.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.numbers)
}

// Built is when the snapshot was built.
func (s *Snapshot) Built() time.Time {
	if s == nil {
		return time.Time{}
	}
	return s.built
}

// Builder accumulates state and builds a Snapshot. Not safe for concurrent use.
type Builder struct {
	numbers      []Number
	forwards     []Forward
	agents       []Agent
	integrations []Integration
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder { return &Builder{} }

func (b *Builder) AddNumber(n Number)           { b.numbers = append(b.numbers, n) }
func (b *Builder) AddForward(f Forward)         { b.forwards = append(b.forwards, f) }
func (b *Builder) AddAgent(a Agent)             { b.agents = append(b.agents, a) }
func (b *Builder) AddIntegration(i Integration) { b.integrations = append(b.integrations, i) }

// Build returns a new immutable snapshot.
func (b *Builder) Build() *Snapshot {
	s := &Snapshot{
		numbers:      make(map[string]*Route, len(b.numbers)),
		forwards:     make(map[string]Forward, len(b.forwards)),
		agents:       make(map[string]*Agent, len(b.agents)),
		integrations: make(map[string]Integration, len(b.integrations)),
		built:        time.Now(),
	}
	for i := range b.agents {
		a := b.agents[i]
		s.agents[a.Workspace+"/"+a.ID] = &a
	}
	for _, n := range b.numbers {
		r := &Route{Number: n}
		if n.AgentID != "" {
			r.Agent = s.agents[n.Workspace+"/"+n.AgentID]
		}
		s.numbers[n.E164] = r
	}
	for _, f := range b.forwards {
		s.forwards[f.BusinessNumber] = f
	}
	for _, i := range b.integrations {
		s.integrations[i.ID] = i
	}
	return s
}

// Table holds the current snapshot. Load is wait-free.
type Table struct {
	p atomic.Pointer[Snapshot]
}

// Load returns the current snapshot (nil before the first Store).
func (t *Table) Load() *Snapshot { return t.p.Load() }

// Store swaps in a new snapshot.
func (t *Table) Store(s *Snapshot) { t.p.Store(s) }
