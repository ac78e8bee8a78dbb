package webhook

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Defaults applied by New to zero-valued Config fields.
const (
	DefaultMaxBodyBytes       = 64 << 10
	DefaultMaxConnections     = 4096
	DefaultTimestampTolerance = 5 * time.Minute
	DefaultRingTimeout        = 30 * time.Second
	DefaultDeliveryWorkers    = 4
	DefaultDeliveryQueue      = 1024
	DefaultDeliveryTimeout    = 5 * time.Second
	DefaultDeliveryAttempts   = 3
	DefaultTransferWorkers    = 8
	DefaultTransferQueue      = 1024
	DefaultTransferTimeout    = 5 * time.Second
)

// TwilioEdges are the edge locations Twilio accepts in a <Sip> URI
// (roaming is not allowed for SIP).
var TwilioEdges = []string{
	"ashburn", "umatilla", "dublin", "frankfurt", "sao-paulo", "singapore", "sydney", "tokyo",
	"ashburn-ix", "san-jose-ix", "london-ix", "frankfurt-ix", "singapore-ix", "sydney-ix", "tokyo-ix",
}

// Config configures the webhook edge. The zero value of every field except
// PublicURL means "the default".
type Config struct {
	// PublicURL is the scheme://host[:port][/prefix] under which carriers
	// reach /webhooks/... (callgate may sit behind a proxy). Signatures are
	// computed over PublicURL + the request's path and query.
	// Env (lead's config): CALLGATE_PUBLIC_URL.
	PublicURL string `yaml:"public_url" default:"(public_url)" help:"URL carriers reach /webhooks/ under (signatures use it); defaults to public_url, empty = webhooks off"`
	// Region is this node's region (the subject of lifecycle events when
	// no endpoint region is known).
	Region string `yaml:"region" default:"(region)" help:"region of call events when no endpoint region is known (defaults to region)"`
	// Listen, when set, makes Start serve the webhooks on their own
	// listener (e.g. ":8443" or "127.0.0.1:0"); empty means the lead
	// mounts Routes() on another server.
	Listen string `yaml:"listen" help:"own listener for the webhooks (e.g. 127.0.0.1:0); empty = served on http_addr"`
	// MaxConnections caps open connections on Listen (default 4096);
	// more wait in the accept queue until one closes.
	MaxConnections int `yaml:"max_connections" default:"4096" help:"open connections on webhook.listen at most; more wait to be accepted"`
	// SIPEdge is host[:port][;params] of this node's SIP edge as carriers
	// reach it (e.g. "sip.gw.example.com:5060;transport=tcp"). When set,
	// calls to agents in media "relay" mode are bridged to
	// sip:<number>@SIPEdge, so that the SIP edge and its media relay carry
	// them; when empty every call goes straight to the agent's endpoint.
	SIPEdge string `yaml:"sip_edge" help:"host[:port][;params] of this node's SIP edge for relayed agents in <Sip>; empty = straight to the agent"`
	// MaxBodyBytes bounds a webhook body (default 64 KiB).
	MaxBodyBytes int64 `yaml:"max_body_bytes" default:"65536" help:"largest webhook body accepted"`
	// TimestampTolerance is how far a Telnyx timestamp may be from now
	// (default 5m).
	TimestampTolerance time.Duration `yaml:"timestamp_tolerance" default:"5m" help:"Telnyx webhook timestamp skew allowed"`

	Twilio    TwilioConfig    `yaml:"twilio"`
	Telnyx    TelnyxConfig    `yaml:"telnyx"`
	Messaging MessagingConfig `yaml:"messaging"`
}

// TwilioConfig holds Twilio-specific webhook settings.
type TwilioConfig struct {
	// AuthToken verifies webhooks for numbers that have no integration
	// (numbers on the operator's own Twilio account). Empty: such webhooks
	// are refused with 403.
	AuthToken string `yaml:"auth_token" env:"CALLGATE_TWILIO_AUTH_TOKEN" help:"verifies Twilio webhooks for numbers without an integration"`
	// Edges maps an agent endpoint's region to the Twilio edge that <Sip>
	// should leave from, e.g. {"us-east": "ashburn", "eu-west": "dublin"}.
	Edges map[string]string `yaml:"edges" help:"agent region → Twilio edge for <Sip> (e.g. us-east: ashburn)"`
	// RingTimeout is <Dial timeout>: how long one endpoint rings before the
	// next candidate is tried (default 30s, Twilio allows 5s..600s).
	RingTimeout time.Duration `yaml:"ring_timeout" default:"30s" help:"<Dial timeout>: how long one endpoint rings before the next is tried (5s..600s)"`
}

// TelnyxConfig holds Telnyx-specific webhook settings.
type TelnyxConfig struct {
	// PublicKey (base64, 32 bytes) verifies webhooks for numbers whose
	// integration has no public key. Empty: such webhooks are refused.
	PublicKey string `yaml:"public_key" env:"CALLGATE_TELNYX_PUBLIC_KEY" help:"verifies Telnyx webhooks for numbers without an integration (base64 Ed25519)"`
	// TransferWorkers and TransferQueue bound the Call Control transfers
	// made after answering call.initiated.
	TransferWorkers int `yaml:"transfer_workers" default:"8" help:"concurrent Call Control transfers after call.initiated"`
	TransferQueue   int `yaml:"transfer_queue" default:"1024" help:"queued Call Control transfers"`
	// TransferTimeout bounds one Call Control API request (default 5s).
	TransferTimeout time.Duration `yaml:"transfer_timeout" default:"5s" help:"one Call Control API request"`
}

// MessagingConfig bounds the delivery of inbound messages to agents'
// messaging URLs.
type MessagingConfig struct {
	Workers  int           `yaml:"workers" default:"4" help:"concurrent message deliveries to agents"`                    // concurrent deliveries (default 4)
	Queue    int           `yaml:"queue" default:"1024" help:"queued message deliveries before dropping"`                 // queued deliveries before dropping (default 1024)
	Timeout  time.Duration `yaml:"timeout" default:"5s" help:"one message delivery attempt"`                              // per attempt (default 5s)
	Attempts int           `yaml:"attempts" default:"3" help:"message delivery attempts on network error or 5xx (0..10)"` // on network error or 5xx (default 3)
	// AllowNetworks are CIDRs that deliveries may reach even though they
	// are internal (loopback, private, link-local, CGNAT, ...), e.g.
	// ["10.20.0.0/16"] when agents run on a private network, or
	// ["127.0.0.0/8"] for local development. Default empty: messaging URLs
	// that resolve or redirect to an internal address are refused.
	AllowNetworks []string `yaml:"allow_networks" help:"CIDRs SMS deliveries may reach although internal (agents on a private network; 127.0.0.0/8 for local development)"`
}

// allowPrefixes parses AllowNetworks (already validated).
func (m MessagingConfig) allowPrefixes() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range m.AllowNetworks {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil {
			ps = append(ps, p.Masked())
		}
	}
	return ps
}

// Validate reports every bad key at once, each named by its YAML path
// under the webhook section.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("webhook: %s: %s", key, fmt.Sprintf(format, a...)))
	}
	if c.PublicURL == "" {
		bad("public_url", "required (the https://host under which carriers reach /webhooks/)")
	} else if u, err := url.Parse(c.PublicURL); err != nil {
		bad("public_url", "%v", err)
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("public_url", "%q must be an absolute http(s) URL", c.PublicURL)
	} else if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		bad("public_url", "%q must not have a query, fragment or user info", c.PublicURL)
	}
	if e := c.SIPEdge; e != "" && (strings.ContainsAny(e, "@?<> \t\"") || strings.HasPrefix(strings.ToLower(e), "sip:") ||
		strings.HasPrefix(strings.ToLower(e), "sips:") || strings.HasPrefix(e, ";")) {
		bad("sip_edge", "%q must be host[:port][;params], without scheme, user or headers", e)
	}
	if c.MaxBodyBytes < 0 {
		bad("max_body_bytes", "must not be negative")
	}
	if c.MaxConnections < 0 {
		bad("max_connections", "must not be negative")
	}
	if c.TimestampTolerance < 0 {
		bad("timestamp_tolerance", "must not be negative")
	}
	for region, edge := range c.Twilio.Edges {
		if region == "" {
			bad("twilio.edges", "empty region name")
		}
		if !isTwilioEdge(edge) {
			bad("twilio.edges."+region, "%q is not a Twilio edge (one of %s)", edge, strings.Join(TwilioEdges, ", "))
		}
	}
	if rt := c.Twilio.RingTimeout; rt != 0 && (rt < 5*time.Second || rt > 600*time.Second) {
		bad("twilio.ring_timeout", "%v is outside Twilio's 5s..600s", rt)
	}
	if c.Telnyx.PublicKey != "" {
		if _, err := decodeEd25519Key(c.Telnyx.PublicKey); err != nil {
			bad("telnyx.public_key", "%v", err)
		}
	}
	if c.Telnyx.TransferWorkers < 0 {
		bad("telnyx.transfer_workers", "must not be negative")
	}
	if c.Telnyx.TransferQueue < 0 {
		bad("telnyx.transfer_queue", "must not be negative")
	}
	if c.Telnyx.TransferTimeout < 0 {
		bad("telnyx.transfer_timeout", "must not be negative")
	}
	if c.Messaging.Workers < 0 {
		bad("messaging.workers", "must not be negative")
	}
	if c.Messaging.Queue < 0 {
		bad("messaging.queue", "must not be negative")
	}
	if c.Messaging.Timeout < 0 {
		bad("messaging.timeout", "must not be negative")
	}
	if c.Messaging.Attempts < 0 || c.Messaging.Attempts > 10 {
		bad("messaging.attempts", "%d is outside 0..10", c.Messaging.Attempts)
	}
	for i, n := range c.Messaging.AllowNetworks {
		if _, err := netip.ParsePrefix(strings.TrimSpace(n)); err != nil {
			bad(fmt.Sprintf("messaging.allow_networks[%d]", i), "%q is not a CIDR (e.g. 10.0.0.0/8, fd00::/8): %v", n, err)
		}
	}
	return errors.Join(errs...)
}

func (c *Config) applyDefaults() {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.TimestampTolerance == 0 {
		c.TimestampTolerance = DefaultTimestampTolerance
	}
	if c.Twilio.RingTimeout == 0 {
		c.Twilio.RingTimeout = DefaultRingTimeout
	}
	if c.Telnyx.TransferWorkers == 0 {
		c.Telnyx.TransferWorkers = DefaultTransferWorkers
	}
	if c.Telnyx.TransferQueue == 0 {
		c.Telnyx.TransferQueue = DefaultTransferQueue
	}
	if c.Telnyx.TransferTimeout == 0 {
		c.Telnyx.TransferTimeout = DefaultTransferTimeout
	}
	if c.Messaging.Workers == 0 {
		c.Messaging.Workers = DefaultDeliveryWorkers
	}
	if c.Messaging.Queue == 0 {
		c.Messaging.Queue = DefaultDeliveryQueue
	}
	if c.Messaging.Timeout == 0 {
		c.Messaging.Timeout = DefaultDeliveryTimeout
	}
	if c.Messaging.Attempts == 0 {
		c.Messaging.Attempts = DefaultDeliveryAttempts
	}
}

func isTwilioEdge(e string) bool {
	for _, x := range TwilioEdges {
		if x == e {
			return true
		}
	}
	return false
}
