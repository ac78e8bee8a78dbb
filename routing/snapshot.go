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
	// SourceCIDRs, when set, are the only source ranges this agent's SIP
	// credentials are accepted from on the agent listener (outbound calls).
	SourceCIDRs []string

	// During the call (routing/incall.go).
	EarlyMedia   string        // EarlyMediaNone, EarlyMediaRingback, EarlyMediaRingbackTone
	MediaTimeout time.Duration // 0: the node's media.media_timeout
	SRTP         string        // SRTPOff, SRTPOptional, SRTPRequired
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
	// Control is the number's per-call control (weighted agents, SMS
	// agent, fallback chain, routing hook override); nil for most numbers,
	// so that a million plain numbers do not pay for it.
	Control *NumberControl
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
	// Termination is where outbound calls of the integration's numbers
	// leave for the carrier (Twilio Elastic SIP Trunking termination,
	// Telnyx SIP connection); zero when none is set. Decrypted.
	Termination Termination
	SRTP        string // SRTPOff, SRTPOptional, SRTPRequired: calls from this carrier account (routing/srtpcall.go)
}

// Termination is a carrier's SIP termination for outbound calls.
type Termination struct {
	// URIs in the order to try them (failover on 5xx and timeouts);
	// e.g. sip:mytrunk.pstn.twilio.com (Twilio: the edge of the number's
	// voice_region is inserted, {domain}.pstn.{edge}.twilio.com).
	URIs     []string
	Username string // digest credentials; empty: IP authentication
	Password string
}

// Route is the result of a lookup: the number and, when assigned, its agent.
type Route struct {
	Number Number
	Agent  *Agent // nil when unassigned or the agent is unknown
}

// Snapshot is an immutable routing table. Build one with a Builder;
// derive the next one from it with WithNumbers when only numbers changed.
//
// Internals (data plane, 1,000,000 numbers in well under 300 MB): numbers
// live in one []Route slice indexed by a map keyed by the E.164 digits as
// a uint64 (E.164 has at most 15 digits and never a leading zero, so the
// encoding is exact). Low-cardinality strings (workspace, carrier, origin,
// status, agent, region, integration) are interned at build time so that a
// million numbers share a handful of copies. That table is shared by the
// snapshots derived with WithNumbers; their changes live in a small
// overlay that lookups check first, so a purchase costs a copy of the
// overlay, not of the table.
type Snapshot struct {
	nums         *numberTable
	over         map[uint64]*Route  // changes since nums was built; nil: number removed
	n            int                // numbers in the snapshot
	forwards     map[uint64]Forward // by business number
	agents       map[string]*Agent  // by workspace + "/" + id
	integrations map[string]Integration
	workspaces   map[string]*Workspace     // settings by workspace id (workspace.go)
	credentials  map[string]*SIPCredential // agents' SIP credentials by username
	built        time.Time
}

// numberTable is the bulk of a snapshot's numbers, immutable once built.
type numberTable struct {
	index  map[uint64]uint32
	routes []Route
}

// Key returns the uint64 lookup key of an E.164 number ("+" and 1 to 15
// digits, no leading zero). The "+" may be omitted. ok is false for any
// other string. It does not allocate.
func Key(e164 string) (k uint64, ok bool) {
	s := e164
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 15 || s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		k = k*10 + uint64(c-'0')
	}
	return k, true
}

// Lookup returns the route for an E.164 number.
func (s *Snapshot) Lookup(e164 string) (*Route, bool) {
	if s == nil || len(e164) == 0 || e164[0] != '+' {
		return nil, false
	}
	k, ok := Key(e164)
	if !ok {
		return nil, false
	}
	return s.LookupKey(k)
}

// LookupKey returns the route for a number given by its Key.
func (s *Snapshot) LookupKey(k uint64) (*Route, bool) {
	if s == nil {
		return nil, false
	}
	if len(s.over) > 0 {
		if r, ok := s.over[k]; ok {
			return r, r != nil
		}
	}
	i, ok := s.nums.index[k]
	if !ok {
		return nil, false
	}
	return &s.nums.routes[i], true
}

// ForwardFrom returns the forwarding registration of a business line.
func (s *Snapshot) ForwardFrom(business string) (Forward, bool) {
	if s == nil {
		return Forward{}, false
	}
	k, ok := Key(business)
	if !ok || business[0] != '+' {
		return Forward{}, false
	}
	f, ok := s.forwards[k]
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
	return s.n
}

// Overlay is how many numbers changed since the snapshot's table was
// built (see WithNumbers): the cost of deriving the next snapshot, and a
// sign that a full Build is due.
func (s *Snapshot) Overlay() int {
	if s == nil {
		return 0
	}
	return len(s.over)
}

// WithNumbers returns a snapshot equal to s with the given numbers added
// or replaced and the given E.164 numbers removed (removals first; a
// number in both ends up added). Routes of added numbers are resolved
// against s's agents, so a change of agents needs a full Build. s itself
// is not changed. The cost is a copy of s's overlay plus the changes, not
// of its table. Entries that are not valid E.164 are ignored, as in Build.
func (s *Snapshot) WithNumbers(upsert []Number, remove []string) *Snapshot {
	ns := *s
	ns.built = time.Now()
	ns.over = make(map[uint64]*Route, len(s.over)+len(upsert)+len(remove))
	for k, r := range s.over {
		ns.over[k] = r
	}
	for _, e := range remove {
		k, ok := Key(e)
		if !ok || e[0] != '+' {
			continue
		}
		if _, present := ns.LookupKey(k); !present {
			continue
		}
		ns.n--
		if _, inTable := s.nums.index[k]; inTable {
			ns.over[k] = nil
		} else {
			delete(ns.over, k)
		}
	}
	for _, n := range upsert {
		k, ok := Key(n.E164)
		if !ok || n.E164[0] != '+' {
			continue
		}
		if _, present := ns.LookupKey(k); !present {
			ns.n++
		}
		r := &Route{Number: n}
		if n.AgentID != "" {
			r.Agent = s.agents[n.Workspace+"/"+n.AgentID]
		}
		ns.over[k] = r
	}
	return &ns
}

// WithForwards returns a snapshot equal to s with its forwarding
// registrations replaced by fs.
func (s *Snapshot) WithForwards(fs []Forward) *Snapshot {
	ns := *s
	ns.built = time.Now()
	ns.forwards = forwardMap(fs)
	return &ns
}

// WithIntegrations returns a snapshot equal to s with its integrations
// replaced by is.
func (s *Snapshot) WithIntegrations(is []Integration) *Snapshot {
	ns := *s
	ns.built = time.Now()
	ns.integrations = integrationMap(is)
	return &ns
}

func forwardMap(fs []Forward) map[uint64]Forward {
	m := make(map[uint64]Forward, len(fs))
	for _, f := range fs {
		if k, ok := Key(f.BusinessNumber); ok {
			m[k] = f
		}
	}
	return m
}

func integrationMap(is []Integration) map[string]Integration {
	m := make(map[string]Integration, len(is))
	for _, i := range is {
		m[i.ID] = i
	}
	return m
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
	workspaces   []Workspace
	credentials  []SIPCredential
}

// NewBuilder returns an empty builder.
func NewBuilder() *Builder { return &Builder{} }

func (b *Builder) AddNumber(n Number)           { b.numbers = append(b.numbers, n) }
func (b *Builder) AddForward(f Forward)         { b.forwards = append(b.forwards, f) }
func (b *Builder) AddAgent(a Agent)             { b.agents = append(b.agents, a) }
func (b *Builder) AddIntegration(i Integration) { b.integrations = append(b.integrations, i) }

// interner shares one copy of each repeated string.
type interner map[string]string

func (in interner) get(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := in[s]; ok {
		return v
	}
	in[s] = s
	return s
}

// Build returns a new immutable snapshot. Numbers that are not valid
// E.164 are left out; a number added twice keeps its last entry.
func (b *Builder) Build() *Snapshot {
	t := &numberTable{
		index:  make(map[uint64]uint32, len(b.numbers)),
		routes: make([]Route, 0, len(b.numbers)),
	}
	s := &Snapshot{
		nums:         t,
		forwards:     forwardMap(b.forwards),
		agents:       make(map[string]*Agent, len(b.agents)),
		integrations: integrationMap(b.integrations),
		workspaces:   workspaceMap(b.workspaces),
		credentials:  credentialMap(b.credentials),
		built:        time.Now(),
	}
	for i := range b.agents {
		a := b.agents[i]
		a.Endpoints = append([]Endpoint(nil), a.Endpoints...)
		s.agents[a.Workspace+"/"+a.ID] = &a
	}
	in := interner{}
	for _, n := range b.numbers {
		k, ok := Key(n.E164)
		if !ok || n.E164[0] != '+' {
			continue
		}
		n.Workspace = in.get(n.Workspace)
		n.Carrier = in.get(n.Carrier)
		n.Origin = in.get(n.Origin)
		n.Status = in.get(n.Status)
		n.AgentID = in.get(n.AgentID)
		n.VoiceRegion = in.get(n.VoiceRegion)
		n.IntegrationID = in.get(n.IntegrationID)
		r := Route{Number: n}
		if n.AgentID != "" {
			r.Agent = s.agents[n.Workspace+"/"+n.AgentID]
		}
		if i, dup := t.index[k]; dup {
			t.routes[i] = r
			continue
		}
		t.index[k] = uint32(len(t.routes))
		t.routes = append(t.routes, r)
	}
	s.n = len(t.routes)
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
