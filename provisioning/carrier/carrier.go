// Package carrier defines the interface every carrier adapter implements
// (sandbox, twilio, telnyx) and the errors they share.
package carrier

import (
	"context"
	"errors"
	"fmt"
)

// Number types.
const (
	TypeLocal    = "local"
	TypeMobile   = "mobile"
	TypeTollFree = "toll_free"
	TypeNational = "national"
)

// Features of a number.
type Features struct {
	Voice bool `json:"voice"`
	SMS   bool `json:"sms"`
	MMS   bool `json:"mms"`
}

// SearchQuery filters a carrier's inventory.
type SearchQuery struct {
	Country   string // ISO 3166 alpha-2, required
	AreaCode  string // optional
	Type      string // local, mobile, toll_free, national; empty = local
	Features  Features
	Limit     int    // 1..100
	PageToken string // opaque, from a previous SearchPage
}

// AvailableNumber is a number the carrier offers for sale.
type AvailableNumber struct {
	PhoneNumber string   `json:"phone_number"`
	Country     string   `json:"country"`
	Region      string   `json:"region"`
	Locality    string   `json:"locality"`
	Type        string   `json:"type"`
	Features    Features `json:"features"`
	MonthlyCost int64    `json:"monthly_cost"` // credits
	Carrier     string   `json:"carrier"`
}

// SearchPage is one page of search results.
type SearchPage struct {
	Numbers       []AvailableNumber
	NextPageToken string
}

// NumberConfig is where a number's calls and messages go on the carrier
// account: Twilio uses the URLs, Telnyx the connection and messaging profile.
type NumberConfig struct {
	VoiceURL           string `json:"voice_url,omitempty"`
	VoiceMethod        string `json:"voice_method,omitempty"`
	SMSURL             string `json:"sms_url,omitempty"`
	SMSMethod          string `json:"sms_method,omitempty"`
	StatusCallback     string `json:"status_callback,omitempty"`
	ConnectionID       string `json:"connection_id,omitempty"`
	MessagingProfileID string `json:"messaging_profile_id,omitempty"`
	// Twilio only: a number whose calls go to a TwiML App or a SIP trunk
	// ignores the URLs above. Configure records them as previous settings
	// and clears them when pointing the number at callgate, so that a
	// restore puts them back.
	VoiceApplicationSID string `json:"voice_application_sid,omitempty"`
	SMSApplicationSID   string `json:"sms_application_sid,omitempty"`
	TrunkSID            string `json:"trunk_sid,omitempty"`
}

// OwnedNumber is a number on the carrier account.
type OwnedNumber struct {
	PhoneNumber string       `json:"phone_number"`
	CarrierID   string       `json:"carrier_id"` // Twilio PN... SID, Telnyx id
	Features    Features     `json:"features"`
	Config      NumberConfig `json:"config"`
}

// Carrier is a carrier account callgate acts on.
type Carrier interface {
	// Name is "sandbox", "twilio" or "telnyx".
	Name() string
	// ValidateCredentials checks that the account's credentials work.
	ValidateCredentials(ctx context.Context) error
	// Search lists purchasable numbers.
	Search(ctx context.Context, q SearchQuery) (SearchPage, error)
	// Buy purchases a number and points it at cfg.
	Buy(ctx context.Context, e164 string, cfg NumberConfig) (OwnedNumber, error)
	// ListOwned lists numbers on the account.
	ListOwned(ctx context.Context) ([]OwnedNumber, error)
	// Configure points a number at cfg and returns its previous settings.
	Configure(ctx context.Context, e164 string, cfg NumberConfig) (previous NumberConfig, err error)
	// SetRegion sets a number's voice region (Twilio only; others return ErrRegionUnsupported).
	SetRegion(ctx context.Context, e164, region string) error
	// Release gives the number back to the carrier.
	Release(ctx context.Context, e164 string) error
}

var (
	// ErrCredentialsRejected: the carrier refused the credentials.
	ErrCredentialsRejected = errors.New("credentials rejected")
	// ErrNotAvailable: the number cannot be bought (taken or unknown).
	ErrNotAvailable = errors.New("number not available")
	// ErrNotFound: the number is not on the account.
	ErrNotFound = errors.New("number not found on the carrier account")
	// ErrRegionUnsupported: voice regions are a Twilio feature.
	ErrRegionUnsupported = errors.New("regions are configured for Twilio numbers only")
	// ErrInvalidQuery: the search parameters are invalid (e.g. a bad area code).
	ErrInvalidQuery = errors.New("invalid search")
	// ErrTimeout and ErrUnavailable classify carrier failures (504 and 502).
	ErrTimeout     = errors.New("carrier timed out")
	ErrUnavailable = errors.New("carrier unavailable")
)

// Error is a carrier failure that names the carrier and keeps the cause.
type Error struct {
	Carrier string
	Op      string
	Kind    error // one of the Err... values above
	Detail  string
	// Field names the request field at fault for ErrInvalidQuery (e.g.
	// "area_code", "page_token"); empty when unknown.
	Field string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%s: %s: %v: %s", e.Carrier, e.Op, e.Kind, e.Detail)
	}
	return fmt.Sprintf("%s: %s: %v", e.Carrier, e.Op, e.Kind)
}

func (e *Error) Unwrap() error { return e.Kind }

// Covers reports whether f has every feature that want asks for.
func (f Features) Covers(want Features) bool {
	return (!want.Voice || f.Voice) && (!want.SMS || f.SMS) && (!want.MMS || f.MMS)
}
