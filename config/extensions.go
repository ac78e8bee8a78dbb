package config

import (
	"fmt"
	"strings"

	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/gateway/sip"
	"github.com/callgate/callgate/gateway/webhook"
)

// Extensions are the edge components' sections; each component owns its
// Config type and validation.
type Extensions struct {
	SIP     sip.Config     `yaml:"sip"`
	Webhook webhook.Config `yaml:"webhook"`
	Media   Media          `yaml:"media"`
}

// Media is the media relay section: mode is this node's default for
// agents that do not choose (an agent's `media` field wins).
type Media struct {
	Mode         string `yaml:"mode"` // direct (default) or relay
	media.Config `yaml:",inline"`
}

func defaultExtensions() Extensions {
	return Extensions{SIP: sip.DefaultConfig(), Media: Media{Mode: "direct"}}
}

func extensionSettings() []Setting {
	d := sip.DefaultConfig()
	return []Setting{
		{"sip.addr", "CALLGATE_SIP_ADDR", d.Addr, "SIP listen address, UDP and TCP (port 0 = any free port)"},
		{"sip.advertise_host", "CALLGATE_SIP_ADVERTISE_HOST", "(listen IP)", "host put in Via and Record-Route"},
		{"sip.tls_addr / tls_cert / tls_key", "", "", "SIP over TLS when all three are set"},
		{"sip.tls_ca_file", "", "(system roots)", "PEM CA bundle trusted, with the system roots, for TLS carriers and agent endpoints callgate connects to"},
		{"sip.tls_client_cert / tls_client_key", "", "", "client certificate for peers that ask for one (mutual TLS)"},
		{"sip.message_timeout", "", d.MessageTimeout.String(), "a SIP message over TCP/TLS must arrive whole within this (slow trickles are closed)"},
		{"sip.max_connections / max_connections_per_source", "", fmt.Sprintf("%d / %d", d.MaxConnections, d.MaxConnectionsPerSource), "inbound TCP+TLS connections, in total and per source IP"},
		{"sip.region", "", "(region)", "region in SIP call events (defaults to region)"},
		{"sip.ring_timeout", "", d.RingTimeout.String(), "INVITE to final answer before the caller gets 408"},
		{"sip.invite_timeout", "", d.InviteTimeout.String(), "time an endpoint has to answer at all before failover"},
		{"sip.silent_reject", "", "false", "drop requests from unlisted sources instead of answering 403"},
		{"sip.retry_after", "", fmt.Sprint(d.RetryAfter), "Retry-After seconds on 503"},
		{"sip.trunks", "", "local: 127.0.0.0/8, ::1", "allowed carriers: name, carrier, preset (twilio|telnyx), cidrs, country, username, password"},
		{"sip.probe.interval / timeout / down_after / up_after / alpha", "", "5s / 2s / 3 / 2 / 0.3", "OPTIONS probing of agent endpoints (EWMA RTT, health)"},
		{"sip.drain_timeout", "", d.DrainTimeout.String(), "how long SIGTERM waits for active calls"},
		{"sip.workers", "", "0 (one per CPU)", "UDP read loops"},
		{"sip.dns.server", "", "(/etc/resolv.conf)", "DNS server (ip or ip:port) for host names in agent URIs, Contacts and Vias; answers are cached for their TTL"},
		{"sip.dns.timeout", "", d.DNS.Timeout.String(), "bound on one host-name lookup; a call then fails over to its next endpoint"},
		{"webhook.twilio.auth_token", "CALLGATE_TWILIO_AUTH_TOKEN", "", "verifies Twilio webhooks for numbers without an integration"},
		{"webhook.twilio.edges", "", "", "agent region → Twilio edge for <Sip> (e.g. us-east: ashburn)"},
		{"webhook.telnyx.public_key", "CALLGATE_TELNYX_PUBLIC_KEY", "", "verifies Telnyx webhooks for numbers without an integration"},
		{"webhook.timestamp_tolerance", "", "5m", "Telnyx webhook timestamp skew allowed"},
		{"webhook.sip_edge / listen / max_body_bytes", "", "", "SIP host for relayed agents in <Sip>; own listener; body limit (gateway/webhook/README.md)"},
		{"webhook.twilio.ring_timeout / telnyx.transfer_* / messaging.*", "", "30s / 4 workers / ...", "dial timeout, Call Control transfer and message delivery queues (gateway/webhook/README.md)"},
		{"webhook.messaging.allow_networks", "", "[] (internal addresses refused)", "CIDRs SMS deliveries may reach although internal (agents on a private network; 127.0.0.0/8 for local development)"},
		{"media.mode", "CALLGATE_MEDIA_MODE", "direct", "direct leaves SDP alone; relay anchors RTP at this node (agents may override)"},
		{"media.bind_ip / advertise_ip", "CALLGATE_MEDIA_ADVERTISE_IP", media.DefaultBindIP, "relay socket address and the address written into SDP"},
		{"media.port_min / port_max", "", fmt.Sprintf("%d / %d", media.DefaultPortMin, media.DefaultPortMax), "RTP/RTCP port range"},
		{"media.media_timeout", "", media.DefaultMediaTimeout.String(), "no RTP for this long ends the call"},
		{"media.latch_packets / latch_window", "", fmt.Sprintf("%d / %s", media.DefaultLatchPackets, media.DefaultLatchWindow), "symmetric RTP latching"},
		{"media.workers", "", "0 (one per CPU)", "packet forwarding threads (an epoll set each on Linux)"},
	}
}

func (e *Extensions) applyEnv(env func(string) string) []error {
	set := func(k string, dst *string) {
		if v := env(k); v != "" {
			*dst = v
		}
	}
	set("CALLGATE_SIP_ADDR", &e.SIP.Addr)
	set("CALLGATE_SIP_ADVERTISE_HOST", &e.SIP.AdvertiseHost)
	set("CALLGATE_TWILIO_AUTH_TOKEN", &e.Webhook.Twilio.AuthToken)
	set("CALLGATE_TELNYX_PUBLIC_KEY", &e.Webhook.Telnyx.PublicKey)
	set("CALLGATE_MEDIA_MODE", &e.Media.Mode)
	set("CALLGATE_MEDIA_ADVERTISE_IP", &e.Media.AdvertiseIP)
	return nil
}

func (e Extensions) validate() []error {
	var errs []error
	if err := e.SIP.Validate(); err != nil {
		errs = append(errs, prefixed("sip", err)...)
	}
	if e.Webhook.PublicURL != "" { // webhooks are off without a public URL
		if err := e.Webhook.Validate(); err != nil {
			errs = append(errs, prefixed("", err)...)
		}
	}
	switch e.Media.Mode {
	case "direct", "relay":
	default:
		errs = append(errs, fmt.Errorf("media.mode: %q must be direct or relay", e.Media.Mode))
	}
	if err := e.Media.Config.Validate(); err != nil {
		errs = append(errs, prefixed("media", err)...)
	}
	return errs
}

// prefixed splits a joined error into lines, adding the section name
// where the component did not.
func prefixed(section string, err error) []error {
	var out []error
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if section != "" && !strings.HasPrefix(line, section) {
			line = section + "." + line
		}
		out = append(out, fmt.Errorf("%s", line))
	}
	return out
}

// Inherit fills component settings from the top-level ones they share.
func (c *Config) Inherit() {
	if c.Webhook.PublicURL == "" {
		c.Webhook.PublicURL = c.PublicURL
	}
	if c.Webhook.Region == "" {
		c.Webhook.Region = c.Region
	}
	if c.SIP.Region == "" || c.SIP.Region == "local" && c.Region != "local" {
		c.SIP.Region = c.Region
	}
	if c.Media.Region == "" {
		c.Media.Region = c.Region
	}
}
