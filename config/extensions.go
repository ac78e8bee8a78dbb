package config

import (
	"fmt"
	"strings"

	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/gateway/sip"
	"github.com/callgate/callgate/gateway/usage"
	"github.com/callgate/callgate/gateway/webhook"
)

// Extensions are the edge components' sections; each component owns its
// Config type and validation.
type Extensions struct {
	SIP     sip.Config     `yaml:"sip"`
	Webhook webhook.Config `yaml:"webhook"`
	Media   Media          `yaml:"media"`
	Usage   usage.Config   `yaml:"usage"`
}

// Media is the media relay section: mode is this node's default for
// agents that do not choose (an agent's `media` field wins).
type Media struct {
	Mode         string `yaml:"mode" env:"CALLGATE_MEDIA_MODE" help:"direct leaves SDP alone; relay anchors RTP at this node (agents may override)"`
	media.Config `yaml:",inline"`
}

func defaultExtensions() Extensions {
	return Extensions{SIP: sip.DefaultConfig(), Media: Media{Mode: "direct"}, Usage: usage.DefaultConfig()}
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
	if err := e.Usage.Validate(); err != nil {
		errs = append(errs, prefixed("usage", err)...)
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
