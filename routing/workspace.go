package routing

import "time"

// The data plane's view of per-workspace settings (routing hook, limits,
// outbound policy, the secret that signs what callgate sends to the
// customer), of per-number call control, and of agents' SIP credentials.
// Provisioning stores them; the Syncer puts them in every snapshot.

// Hook failure policies.
const (
	HookOnFailureStatic = "static" // route as if there were no hook
	HookOnFailureReject = "reject" // refuse the call (SIP 480)
)

// Hook is a routing hook: an HTTPS (or, for loopback tests, HTTP) URL
// callgate POSTs each new inbound call to, asking where it goes.
type Hook struct {
	URL       string
	TimeoutMS int    // default 1500, max 5000
	OnFailure string // HookOnFailureStatic (default) or HookOnFailureReject
}

// Limits caps what one workspace may consume, counted across the cluster.
// Zero means no limit.
type Limits struct {
	MaxConcurrentCalls int // inbound + outbound
	MaxCallsPerSecond  int // new calls, inbound + outbound
}

// Outbound is a workspace's destination policy for outbound calls.
type Outbound struct {
	// AllowedCountries are ISO 3166 alpha-2 codes; empty means the
	// caller ID's own country only.
	AllowedCountries   []string
	AllowPremium       bool // premium-rate numbers (refused by default)
	AllowSharedCost    bool // shared-cost numbers (refused by default)
	AllowUAN           bool // universal access numbers (refused by default)
	MaxConcurrentCalls int  // outbound calls at once; 0: no cap
	MaxCallsPerSecond  int  // new outbound calls per second; 0: no cap
}

// Workspace is a workspace's settings as the data plane sees them.
type Workspace struct {
	ID       string
	Hook     *Hook // nil: no routing hook
	Limits   Limits
	Outbound Outbound
	// WebhookSecret signs routing hook requests and messaging deliveries
	// (X-Callgate-Signature); decrypted, only in memory. Empty: unsigned.
	WebhookSecret string
	// Headers is which SIP headers pass between caller and agent and
	// which call history keeps (routing/incall.go).
	Headers SIPHeaders
	// AllowMixedSRTP lets a call use SRTP on one side and plain RTP on
	// the other (e.g. an agent on a private network).
	AllowMixedSRTP bool
}

// AgentWeight is one agent of a number that splits calls between agents.
type AgentWeight struct {
	AgentID string
	Weight  int
}

// FallbackStep is one step of a number's fallback chain; exactly one
// field is set.
type FallbackStep struct {
	AgentID string // another agent of the workspace
	URI     string // a SIP URI (validated like an agent endpoint)
	Number  string // an E.164 phone line, reached through the number's carrier
}

// NumberControl is a number's per-call control.
type NumberControl struct {
	// Agents split new calls by weight (deterministic by Call-ID);
	// empty: the number's AgentID takes every call.
	Agents     []AgentWeight
	SMSAgentID string // messages go to this agent instead of AgentID
	Fallback   []FallbackStep
	Hook       *Hook // overrides the workspace's routing hook
}

// SIPCredential is one digest credential of an agent for the agent
// listener. Only HA1 hashes are kept (RFC 7616 / 2617), never the password.
type SIPCredential struct {
	Username  string // unique across the deployment
	Workspace string
	AgentID   string
	Realm     string // realm the HA1s were computed with
	HA1MD5    string // hex MD5(username:realm:password)
	HA1SHA256 string // hex SHA-256(username:realm:password)
}

// Workspace returns a workspace's settings; nil when it has none stored
// (no hook, no limits, default outbound policy).
func (s *Snapshot) Workspace(id string) *Workspace {
	if s == nil {
		return nil
	}
	return s.workspaces[id]
}

// Credential returns the SIP credential with this username.
func (s *Snapshot) Credential(username string) (*SIPCredential, bool) {
	if s == nil {
		return nil, false
	}
	c, ok := s.credentials[username]
	return c, ok
}

// Agent returns an agent of a workspace.
func (s *Snapshot) Agent(workspace, id string) (*Agent, bool) {
	if s == nil {
		return nil, false
	}
	a, ok := s.agents[workspace+"/"+id]
	return a, ok
}

// WithWorkspaces returns a snapshot equal to s with its workspace
// settings replaced by ws.
func (s *Snapshot) WithWorkspaces(ws []Workspace) *Snapshot {
	ns := *s
	ns.built = time.Now()
	ns.workspaces = workspaceMap(ws)
	return &ns
}

// WithCredentials returns a snapshot equal to s with its SIP credentials
// replaced by cs.
func (s *Snapshot) WithCredentials(cs []SIPCredential) *Snapshot {
	ns := *s
	ns.built = time.Now()
	ns.credentials = credentialMap(cs)
	return &ns
}

func workspaceMap(ws []Workspace) map[string]*Workspace {
	m := make(map[string]*Workspace, len(ws))
	for i := range ws {
		w := ws[i]
		m[w.ID] = &w
	}
	return m
}

func credentialMap(cs []SIPCredential) map[string]*SIPCredential {
	m := make(map[string]*SIPCredential, len(cs))
	for i := range cs {
		c := cs[i]
		m[c.Username] = &c
	}
	return m
}

// AddWorkspace adds a workspace's settings.
func (b *Builder) AddWorkspace(w Workspace) { b.workspaces = append(b.workspaces, w) }

// AddCredential adds an agent's SIP credential.
func (b *Builder) AddCredential(c SIPCredential) { b.credentials = append(b.credentials, c) }
