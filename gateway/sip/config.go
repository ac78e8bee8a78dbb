package sip

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/callgate/callgate/gateway/sip/transport"
)

// Config is the SIP edge's configuration (the `sip:` section of the
// callgate config file).
type Config struct {
	// Addr is the UDP and TCP listen address (host:port, port 0 picks one).
	Addr string `yaml:"addr" env:"CALLGATE_SIP_ADDR" help:"SIP listen address, UDP and TCP (port 0 = any free port)"`
	// AdvertiseHost is the host put in Via and Record-Route; empty means
	// the listen address's IP (which must then not be unspecified).
	AdvertiseHost string `yaml:"advertise_host" env:"CALLGATE_SIP_ADVERTISE_HOST" default:"(listen IP)" help:"host put in Via and Record-Route; required when addr listens on all addresses"`
	// Addr6 is a second UDP and TCP listen address, IPv6, for a dual-stack
	// edge (addr is then IPv4); AdvertiseHost6 is its host in Via and
	// Record-Route. Messages to and from IPv6 peers use it (dualstack.go).
	Addr6          string `yaml:"addr6" env:"CALLGATE_SIP_ADDR6" help:"IPv6 SIP listen address, UDP and TCP, besides addr (which is then IPv4): dual stack; empty = addr's family only"`
	AdvertiseHost6 string `yaml:"advertise_host6" env:"CALLGATE_SIP_ADVERTISE_HOST6" default:"(addr6 IP)" help:"host put in Via and Record-Route toward IPv6 peers; required when addr6 or agents.addr6 listens on all addresses"`
	// TLSAddr, TLSCert and TLSKey enable SIP over TLS when all are set.
	TLSAddr string `yaml:"tls_addr" help:"SIP over TLS listen address (tls_addr, tls_cert and tls_key together)"`
	TLSCert string `yaml:"tls_cert" help:"PEM certificate of the TLS listener"`
	TLSKey  string `yaml:"tls_key" help:"PEM private key of the TLS listener"`

	// TLSAddr6 is the IPv6 TLS listener of a dual-stack edge (tls_cert/tls_key).
	TLSAddr6 string `yaml:"tls_addr6" help:"IPv6 SIP over TLS listen address besides tls_addr (needs addr6, tls_cert and tls_key)"`

	// TLSCAFile is a PEM bundle of CA certificates trusted, in addition to
	// the system roots, for the certificates of TLS peers callgate
	// connects to (carriers, agent endpoints with a private CA).
	TLSCAFile string `yaml:"tls_ca_file" default:"(system roots)" help:"PEM CA bundle trusted, with the system roots, for TLS carriers and agent endpoints callgate connects to"`
	// TLSClientCert and TLSClientKey are the certificate callgate presents
	// when a TLS peer it connects to asks for one (mutual TLS).
	TLSClientCert string `yaml:"tls_client_cert" help:"client certificate for TLS peers that ask for one (mutual TLS), with tls_client_key"`
	TLSClientKey  string `yaml:"tls_client_key" help:"private key of tls_client_cert"`
	// MessageTimeout bounds a SIP message over TCP/TLS from its first byte
	// to its last (and a TLS handshake): a connection that trickles a
	// message slower than this is closed.
	MessageTimeout time.Duration `yaml:"message_timeout" help:"a SIP message over TCP/TLS must arrive whole within this (slow trickles are closed)"`
	// MaxConnections caps the inbound TCP and TLS connections held at once;
	// MaxConnectionsPerSource caps them per source IP address. A
	// connection over a cap is closed at accept.
	MaxConnections          int `yaml:"max_connections" help:"inbound TCP+TLS connections held at once; more are closed at accept"`
	MaxConnectionsPerSource int `yaml:"max_connections_per_source" help:"inbound TCP+TLS connections per source IP"`
	// Region is this node's region (events, metrics).
	Region string `yaml:"region" default:"(region)" help:"region in SIP call events and metrics (defaults to region)"`
	// RingTimeout bounds INVITE to final answer; the caller then gets 408.
	RingTimeout time.Duration `yaml:"ring_timeout" help:"INVITE to final answer before the caller gets 408"`
	// InviteTimeout is how long an endpoint has to send any response before
	// the call fails over to the next endpoint.
	InviteTimeout time.Duration `yaml:"invite_timeout" help:"time an endpoint has to answer at all before failover"`
	// MaxCallDuration ends the proxy's record of a dialog whose BYE never
	// came (no signalling is sent; the record is dropped).
	MaxCallDuration time.Duration `yaml:"max_call_duration" help:"a dialog whose BYE never came is forgotten after this (no signalling is sent)"`
	// SilentReject drops requests from unlisted sources instead of 403.
	SilentReject bool `yaml:"silent_reject" help:"drop requests from unlisted sources instead of answering 403"`
	// RetryAfter is the Retry-After value (seconds) on 503 replies.
	RetryAfter int `yaml:"retry_after" help:"Retry-After seconds on 503"`
	// Trunks are the carriers allowed to send calls.
	Trunks []Trunk `yaml:"trunks" help:"carriers allowed to send calls, each with cidrs, a preset or username/password (default: trunk local for 127.0.0.0/8 and ::1)"`
	// Probe configures the OPTIONS prober of agent endpoints.
	Probe ProbeConfig `yaml:"probe"`
	// DrainTimeout bounds how long Drain waits for active dialogs.
	DrainTimeout time.Duration `yaml:"drain_timeout" help:"how long SIGTERM waits for active calls"`
	// Workers is the number of UDP read loops (0: one per CPU).
	Workers int `yaml:"workers" help:"UDP read loops; 0 = one per CPU"`
	// Pike limits new calls per source address; ScannerUserAgents are
	// dropped without an answer (pike.go).
	Pike              PikeConfig `yaml:"pike"`
	ScannerUserAgents []string   `yaml:"scanner_user_agents" help:"requests whose User-Agent contains one of these (any case) are dropped without an answer; empty = off"`
	// DNS is the resolver of host names in agent endpoint URIs, Contacts
	// and Vias: server (default: /etc/resolv.conf's) and lookup timeout.
	// Answers are cached for their TTL (transport/dns.go).
	DNS DNSConfig `yaml:"dns"`
	// Agents is the agent-facing listener (outbound calls from agents,
	// agents' in-dialog requests); off when Agents.Addr is empty.
	Agents AgentsConfig `yaml:"agents"`
	// SessionTimers are RFC 4028 session timers (sessiontimer.go).
	SessionTimers SessionTimersConfig `yaml:"session_timers"`

	// noAckTimeout: a 2xx not ACKed this long ends the dialog record
	// (0: 64*T1 = 32 s). Tests shorten it.
	noAckTimeout time.Duration
	// sessionUnit is one second of a session interval (0: a second).
	// Tests shorten it.
	sessionUnit time.Duration
}

// Trunk is a carrier connection allowed to send calls.
type Trunk struct {
	Name    string `yaml:"name" help:"trunk name (unique)"`
	Carrier string `yaml:"carrier" help:"carrier calls from this trunk come from: twilio, telnyx, sandbox, local, ..."` // twilio, telnyx, sandbox, local, ...
	// Preset adds a carrier's published signalling ranges: twilio, telnyx.
	Preset string   `yaml:"preset" help:"adds a carrier's published signalling ranges: twilio or telnyx"`
	CIDRs  []string `yaml:"cidrs" help:"source addresses allowed (IPs or CIDRs)"`
	// Country (ISO 3166 alpha-2) for national-format called numbers.
	Country string `yaml:"country" help:"ISO 3166 alpha-2 country for national-format called numbers"`
	// Username and Password require digest authentication of INVITEs from
	// this trunk (in addition to its CIDRs; a trunk with credentials and no
	// CIDRs accepts any source that authenticates).
	Username string `yaml:"username" help:"digest authentication of INVITEs from this trunk, with password"`
	Password string `yaml:"password" help:"digest password"`
	// SRTP is the trunk's secure media policy (README "Secure media").
	SRTP string `yaml:"srtp" help:"SRTP toward this trunk on relayed calls: off (default), optional or required; SDES keys only when the carrier signals over TLS"`
}

// AgentsConfig is the agent-facing SIP listener (agent.go).
type AgentsConfig struct {
	// Addr is the UDP and TCP listen address facing the agents; empty:
	// no agent listener (agents cannot place calls; in-dialog requests
	// go to the carrier-facing listener as before).
	Addr string `yaml:"addr" env:"CALLGATE_SIP_AGENTS_ADDR" help:"SIP listen address facing the agents (outbound calls with digest auth, their in-dialog requests), UDP and TCP; empty = no agent listener"`
	// TLSAddr is a TLS listener facing the agents, with the certificate
	// of sip.tls_cert/tls_key.
	TLSAddr string `yaml:"tls_addr" help:"SIP over TLS listen address facing the agents (uses sip.tls_cert and sip.tls_key)"`
	// Addr6 and TLSAddr6 are the agent side's IPv6 listeners (dual stack;
	// Addr is then IPv4).
	Addr6    string `yaml:"addr6" env:"CALLGATE_SIP_AGENTS_ADDR6" help:"IPv6 SIP listen address facing the agents, UDP and TCP, besides agents.addr (which is then IPv4)"`
	TLSAddr6 string `yaml:"tls_addr6" help:"IPv6 SIP over TLS listen address facing the agents (needs agents.addr6 and sip.tls_cert/tls_key)"`
	// Realm is the digest realm agents' credentials are hashed with.
	Realm string `yaml:"realm" help:"digest realm of agents' SIP credentials"`
	// DigestAlgorithms are the digest algorithms challenged with, in order
	// of preference (RFC 8760: a client uses the first it supports).
	// Clients that take the first challenge whatever it is (SIPp 3.6 only
	// does MD5) need MD5 first.
	DigestAlgorithms string `yaml:"digest_algorithms" env:"CALLGATE_SIP_AGENTS_DIGEST_ALGORITHMS" help:"digest algorithms offered to agents, comma-separated in order of preference: SHA-256, MD5 (put MD5 first for clients such as SIPp that take the first challenge)"`
	// MaxAuthFailures failed authentications from one source within
	// AuthWindow block that source for AuthBlock (403, no challenge).
	MaxAuthFailures int           `yaml:"max_auth_failures" help:"failed digest authentications from one source address within auth_window before it is blocked"`
	AuthWindow      time.Duration `yaml:"auth_window" help:"window in which max_auth_failures are counted"`
	AuthBlock       time.Duration `yaml:"auth_block" help:"how long a source that failed too often is refused (403 without challenge)"`
}

// ProbeConfig configures endpoint health probing.
type ProbeConfig struct {
	Disabled  bool          `yaml:"disabled" help:"no OPTIONS probing: every endpoint counts as up"` // no probing: every endpoint counts as up
	Interval  time.Duration `yaml:"interval" help:"OPTIONS probe interval per agent endpoint"`
	Timeout   time.Duration `yaml:"timeout" help:"a probe not answered within this is a miss"`
	DownAfter int           `yaml:"down_after" help:"misses in a row before an endpoint is down"`
	UpAfter   int           `yaml:"up_after" help:"answers in a row before a down endpoint is up"`
	Alpha     float64       `yaml:"alpha" help:"EWMA weight of a new RTT sample, (0,1]"` // EWMA weight of a new sample, (0,1]
}

// Presets: carriers' published SIP signalling source ranges.
var Presets = map[string][]string{
	// Twilio signalling /30s per edge (ashburn, umatilla, dublin,
	// frankfurt, tokyo, singapore, sydney, sao-paulo).
	"twilio": {
		"54.172.60.0/30", "54.244.51.0/30", "54.171.127.192/30", "35.156.191.128/30",
		"54.65.63.192/30", "54.169.127.128/30", "54.252.254.64/30", "177.71.206.192/30",
	},
	// Telnyx signalling (US, EU, AU).
	"telnyx": {
		"192.76.120.10/32", "64.16.250.10/32", "185.246.41.140/32", "185.246.41.141/32",
		"103.115.244.145/32", "103.115.244.146/32",
	},
}

// DefaultConfig returns the defaults: 127.0.0.1:5060 and a `local` trunk
// for 127.0.0.0/8 so that a new user can call with SIPp.
func DefaultConfig() Config {
	return Config{
		Addr:            "127.0.0.1:5060",
		Region:          "local",
		RingTimeout:     60 * time.Second,
		InviteTimeout:   3 * time.Second,
		MaxCallDuration: 4 * time.Hour,
		RetryAfter:      30,
		DrainTimeout:    30 * time.Second,
		MessageTimeout:  20 * time.Second,
		MaxConnections:  4096,
		// carriers open a few connections per signalling IP
		MaxConnectionsPerSource: 64,
		Trunks: []Trunk{{
			Name: "local", Carrier: "local", CIDRs: []string{"127.0.0.0/8", "::1/128"}, Country: "US",
		}},
		Probe: ProbeConfig{
			Interval: 5 * time.Second, Timeout: 2 * time.Second, DownAfter: 3, UpAfter: 2, Alpha: 0.3,
		},
		DNS:               DNSConfig{Timeout: transport.DefaultDNSTimeout},
		Pike:              defaultPike(),
		ScannerUserAgents: append([]string(nil), DefaultScannerUserAgents...),
		Agents: AgentsConfig{Realm: "callgate", DigestAlgorithms: "SHA-256,MD5", MaxAuthFailures: 5,
			AuthWindow: 10 * time.Second, AuthBlock: time.Minute},
		SessionTimers: SessionTimersConfig{MinSE: rfcMinSE},
	}
}

// withDefaults fills zero values from DefaultConfig (but not Trunks: an
// empty trunk list means no carrier is allowed).
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.RingTimeout == 0 {
		c.RingTimeout = d.RingTimeout
	}
	if c.InviteTimeout == 0 {
		c.InviteTimeout = d.InviteTimeout
	}
	if c.MaxCallDuration == 0 {
		c.MaxCallDuration = d.MaxCallDuration
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = d.RetryAfter
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = d.DrainTimeout
	}
	if c.MessageTimeout == 0 {
		c.MessageTimeout = d.MessageTimeout
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = d.MaxConnections
	}
	if c.MaxConnectionsPerSource == 0 {
		c.MaxConnectionsPerSource = d.MaxConnectionsPerSource
	}
	if c.Probe.Interval == 0 {
		c.Probe.Interval = d.Probe.Interval
	}
	if c.Probe.Timeout == 0 {
		c.Probe.Timeout = d.Probe.Timeout
	}
	if c.Probe.DownAfter == 0 {
		c.Probe.DownAfter = d.Probe.DownAfter
	}
	if c.Probe.UpAfter == 0 {
		c.Probe.UpAfter = d.Probe.UpAfter
	}
	if c.Probe.Alpha == 0 {
		c.Probe.Alpha = d.Probe.Alpha
	}
	if c.DNS.Timeout == 0 {
		c.DNS.Timeout = d.DNS.Timeout
	}
	if c.Agents.Realm == "" {
		c.Agents.Realm = d.Agents.Realm
	}
	if c.Agents.DigestAlgorithms == "" {
		c.Agents.DigestAlgorithms = d.Agents.DigestAlgorithms
	}
	if c.Agents.MaxAuthFailures == 0 {
		c.Agents.MaxAuthFailures = d.Agents.MaxAuthFailures
	}
	if c.Agents.AuthWindow == 0 {
		c.Agents.AuthWindow = d.Agents.AuthWindow
	}
	if c.Agents.AuthBlock == 0 {
		c.Agents.AuthBlock = d.Agents.AuthBlock
	}
	return c
}

// Validate checks the configuration and reports every bad key at once,
// each named by its path (sip.trunks[1].cidrs[0], ...).
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("sip.%s: %s", key, fmt.Sprintf(format, a...)))
	}
	c = c.withDefaults()
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		bad("addr", "%q is not host:port: %v", c.Addr, err)
	} else if ap, err := netip.ParseAddrPort(c.Addr); err != nil {
		bad("addr", "%q: host must be an IP address", c.Addr)
	} else if ap.Addr().IsUnspecified() && c.AdvertiseHost == "" {
		bad("advertise_host", "required when addr listens on all addresses (%s)", c.Addr)
	}
	tlsSet := 0
	for _, v := range []string{c.TLSAddr, c.TLSCert, c.TLSKey} {
		if v != "" {
			tlsSet++
		}
	}
	if tlsSet != 0 && tlsSet != 3 {
		bad("tls_addr", "tls_addr, tls_cert and tls_key must be set together")
	}
	if c.TLSAddr != "" {
		if _, err := netip.ParseAddrPort(c.TLSAddr); err != nil {
			bad("tls_addr", "%q is not ip:port", c.TLSAddr)
		}
	}
	if c.TLSCAFile != "" {
		if _, err := transport.LoadCAs(c.TLSCAFile); err != nil {
			bad("tls_ca_file", "%v", err)
		}
	}
	if (c.TLSClientCert == "") != (c.TLSClientKey == "") {
		bad("tls_client_cert", "tls_client_cert and tls_client_key must be set together")
	} else if c.TLSClientCert != "" {
		if _, err := tls.LoadX509KeyPair(c.TLSClientCert, c.TLSClientKey); err != nil {
			bad("tls_client_cert", "%v", err)
		}
	}
	if c.MessageTimeout < 0 {
		bad("message_timeout", "must be positive")
	}
	if c.MaxConnections < 0 {
		bad("max_connections", "must be positive")
	}
	if c.MaxConnectionsPerSource < 0 {
		bad("max_connections_per_source", "must be positive")
	}
	if c.RingTimeout < 0 {
		bad("ring_timeout", "must be positive")
	}
	if c.InviteTimeout < 0 {
		bad("invite_timeout", "must be positive")
	}
	if c.DrainTimeout < 0 {
		bad("drain_timeout", "must be positive")
	}
	if c.RetryAfter < 0 {
		bad("retry_after", "must be positive")
	}
	if c.Workers < 0 || c.Workers > 64 {
		bad("workers", "must be between 0 and 64")
	}
	errs = append(errs, validatePike(c)...)
	errs = append(errs, validateSessionTimers(c)...)
	if c.Region != "" && !labelSafe(c.Region) {
		bad("region", "%q: use letters, digits, '-' and '_'", c.Region)
	}
	names := map[string]bool{}
	for i, t := range c.Trunks {
		k := fmt.Sprintf("trunks[%d]", i)
		if t.Name == "" {
			bad(k+".name", "required")
		} else if names[t.Name] {
			bad(k+".name", "duplicate trunk %q", t.Name)
		}
		names[t.Name] = true
		if t.Preset != "" {
			if _, ok := Presets[t.Preset]; !ok {
				bad(k+".preset", "unknown preset %q (twilio, telnyx)", t.Preset)
			}
		}
		for j, s := range t.CIDRs {
			if _, err := parsePrefix(s); err != nil {
				bad(fmt.Sprintf("%s.cidrs[%d]", k, j), "%v", err)
			}
		}
		if len(t.CIDRs) == 0 && t.Preset == "" && t.Username == "" {
			bad(k+".cidrs", "a trunk needs cidrs, a preset or digest credentials")
		}
		if (t.Username == "") != (t.Password == "") {
			bad(k+".password", "username and password must be set together")
		}
		if t.SRTP != "" && t.SRTP != "off" && t.SRTP != "optional" && t.SRTP != "required" {
			bad(k+".srtp", "%q: want off, optional or required", t.SRTP)
		}
		if t.Country != "" && (len(t.Country) != 2 || strings.ToUpper(t.Country) != t.Country) {
			bad(k+".country", "%q is not an ISO 3166 alpha-2 code like US", t.Country)
		}
	}
	p := c.Probe
	if p.Interval < 0 {
		bad("probe.interval", "must be positive")
	}
	if p.Timeout < 0 || (p.Timeout > p.Interval && p.Interval > 0) {
		bad("probe.timeout", "must be positive and not longer than probe.interval")
	}
	if p.DownAfter < 0 {
		bad("probe.down_after", "must be positive")
	}
	if p.UpAfter < 0 {
		bad("probe.up_after", "must be positive")
	}
	if p.Alpha < 0 || p.Alpha > 1 {
		bad("probe.alpha", "must be in (0, 1]")
	}
	if c.DNS.Server != "" {
		if _, err := transport.DNSServerAddr(c.DNS.Server); err != nil {
			bad("dns.server", "%v", err)
		}
	}
	if c.DNS.Timeout < 0 {
		bad("dns.timeout", "must be positive")
	}
	if a := c.Agents; a.Addr != "" {
		if ap, err := netip.ParseAddrPort(a.Addr); err != nil {
			bad("agents.addr", "%q is not ip:port", a.Addr)
		} else if ap.Addr().IsUnspecified() && c.AdvertiseHost == "" {
			bad("advertise_host", "required when agents.addr listens on all addresses (%s)", a.Addr)
		} else if a.Addr == c.Addr && ap.Port() != 0 {
			bad("agents.addr", "must differ from sip.addr (%s)", c.Addr)
		}
	}
	if c.Agents.TLSAddr != "" {
		if c.Agents.Addr == "" || c.TLSCert == "" {
			bad("agents.tls_addr", "needs agents.addr and sip.tls_cert/tls_key")
		} else if _, err := netip.ParseAddrPort(c.Agents.TLSAddr); err != nil {
			bad("agents.tls_addr", "%q is not ip:port", c.Agents.TLSAddr)
		}
	}
	c.validate6(bad)
	if c.Agents.Realm != "" && strings.ContainsAny(c.Agents.Realm, "\"\\\r\n") {
		bad("agents.realm", "must not contain quotes, backslashes or line breaks")
	}
	if _, err := digestAlgorithms(c.Agents.DigestAlgorithms); err != nil {
		bad("agents.digest_algorithms", "%v", err)
	}
	if c.Agents.MaxAuthFailures < 0 || c.Agents.AuthWindow < 0 || c.Agents.AuthBlock < 0 {
		bad("agents.max_auth_failures", "max_auth_failures, auth_window and auth_block must be positive")
	}
	return errors.Join(errs...)
}

// digestAlgorithms parses sip.agents.digest_algorithms.
func digestAlgorithms(s string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, a := range strings.Split(s, ",") {
		a = strings.ToUpper(strings.TrimSpace(a))
		if a != "SHA-256" && a != "MD5" {
			return nil, fmt.Errorf("%q: want SHA-256 or MD5", a)
		}
		if seen[a] {
			return nil, fmt.Errorf("%s listed twice", a)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a CIDR", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP or CIDR", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func labelSafe(s string) bool {
	if len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}
