package provisioning

import (
	"time"

	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/routing"
)

// Workspace owns numbers, agents, integrations and credits.
type Workspace struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// APIKey is stored under the SHA-256 of the key; the key itself is never stored.
type APIKey struct {
	Workspace string    `json:"workspace,omitempty"`
	Admin     bool      `json:"admin,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Principal is who a request acts as.
type Principal struct {
	Workspace string
	Admin     bool
}

// Number statuses beyond routing's active/suspended.
const (
	StatusPending   = "pending"   // claimed, purchase in progress
	StatusReleasing = "releasing" // release in progress: refused changes, gone when done
)

// Webhook modes for imported numbers.
const (
	WebhookOutboundOnly = "outbound_only"
	WebhookFullControl  = "full_control"
)

// Number is an owned number.
type Number struct {
	PhoneNumber    string                `json:"phone_number"`
	Workspace      string                `json:"-"`
	Country        string                `json:"country"`
	Region         string                `json:"region"`
	Locality       string                `json:"locality,omitempty"`
	Type           string                `json:"type"`
	Features       carrier.Features      `json:"features"`
	MonthlyCost    int64                 `json:"monthly_cost"`
	Carrier        string                `json:"carrier"`
	Origin         string                `json:"origin"`
	Status         string                `json:"status"`
	AgentID        string                `json:"agent_id,omitempty"`
	VoiceRegion    string                `json:"voice_region,omitempty"`
	WebhookMode    string                `json:"webhook_mode,omitempty"`
	IntegrationID  string                `json:"integration_id,omitempty"`
	CarrierID      string                `json:"carrier_id,omitempty"`
	PreviousConfig *carrier.NumberConfig `json:"-"`
	PurchasedAt    time.Time             `json:"purchased_at"`
	RenewsAt       *time.Time            `json:"renews_at,omitempty"`
	Renewals       int                   `json:"renewals,omitempty"`
	SuspendedAt    *time.Time            `json:"suspended_at,omitempty"`

	// Call control (numbercontrol.go); all empty for a plain number.
	Agents      []AgentWeight  `json:"agents,omitempty"`
	SMSAgentID  string         `json:"sms_agent_id,omitempty"`
	Fallback    []FallbackStep `json:"fallback,omitempty"`
	RoutingHook *Hook          `json:"routing_hook,omitempty"`
}

// numberRecord is how a Number is stored (Workspace and PreviousConfig included).
type numberRecord struct {
	Number
	WorkspaceID string                `json:"workspace"`
	Previous    *carrier.NumberConfig `json:"previous_config,omitempty"`
	ClaimedAt   time.Time             `json:"claimed_at"`
	// ReleasingAt is when a release began (status releasing); recovery
	// finishes releases that stay in that state past StaleClaimAge.
	ReleasingAt *time.Time `json:"releasing_at,omitempty"`
	// IdempotencyKey is the store key of the idempotency record of the
	// purchase that claimed the number (recovery completes that record).
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

func (r *numberRecord) number() Number {
	n := r.Number
	n.Workspace = r.WorkspaceID
	n.PreviousConfig = r.Previous
	return n
}

// Agent is a voice-AI agent.
type Agent struct {
	ID           string             `json:"id"`
	Name         string             `json:"name"`
	Endpoints    []routing.Endpoint `json:"endpoints"`
	Media        string             `json:"media,omitempty"`
	MessagingURL string             `json:"messaging_url,omitempty"`
	CreatedAt    time.Time          `json:"created_at"`
	UpdatedAt    time.Time          `json:"updated_at"`
	Workspace    string             `json:"workspace,omitempty"`
	// DeletingAt is set while the agent is being deleted: assignments to
	// it are refused (see DeleteAgent).
	DeletingAt *time.Time `json:"deleting_at,omitempty"`

	// SourceCIDRs, when set, are the only source ranges the agent's SIP
	// credentials are accepted from (agent listener).
	SourceCIDRs []string `json:"source_cidrs,omitempty"`
	AgentCallSettings
}

// Forward registers a business line forwarding to a gateway number.
type Forward struct {
	BusinessNumber string    `json:"business_number"`
	GatewayNumber  string    `json:"gateway_number"`
	Workspace      string    `json:"workspace,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
}

// Ledger entry kinds.
const (
	KindPurchase = "purchase"
	KindRenewal  = "renewal"
	KindRefund   = "refund"
	KindTopUp    = "top_up"
)

// LedgerEntry is one change to a workspace's credits. Amount is signed
// (charges negative); Balance is the balance after the entry.
type LedgerEntry struct {
	ID      string    `json:"id"`
	Seq     uint64    `json:"seq"`
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Amount  int64     `json:"amount"`
	Balance int64     `json:"balance"`
	Number  string    `json:"number,omitempty"`
	Reason  string    `json:"reason"`
	CallID  string    `json:"call_id,omitempty"` // usage: the call charged (usage.go)
}
