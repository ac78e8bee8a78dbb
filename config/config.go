// Package config loads callgate's configuration: a YAML file decoded
// strictly (an unknown key is an error naming its line), then CALLGATE_*
// environment overrides, then validation that reports every problem at
// once, each naming its key.
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/callgate/callgate/store"
)

// Config is the whole configuration.
type Config struct {
	DataDir         string        `yaml:"data_dir"`
	HTTPAddr        string        `yaml:"http_addr"`
	HTTP            HTTP          `yaml:"http"`
	Region          string        `yaml:"region"`
	PublicURL       string        `yaml:"public_url"`
	Sandbox         bool          `yaml:"sandbox"`
	SecretKey       string        `yaml:"secret_key"`
	RenewalInterval time.Duration `yaml:"renewal_interval"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	DebugAddr       string        `yaml:"debug_addr"`
	Log             Log           `yaml:"log"`
	NATS            store.Config  `yaml:"nats"`
	Bootstrap       Bootstrap     `yaml:"bootstrap"`
	Carriers        Carriers      `yaml:"carriers"`
	Extensions      `yaml:",inline"`
}

// Log configures log/slog.
type Log struct {
	Format string `yaml:"format"` // text or json
	Level  string `yaml:"level"`  // debug, info, warn, error
}

// Bootstrap is what the first start creates.
type Bootstrap struct {
	Workspace string `yaml:"workspace"`
	Credits   int64  `yaml:"credits"`
}

// Carriers holds carrier API endpoints.
type Carriers struct {
	Twilio struct {
		APIBase string `yaml:"api_base"`
		Edge    string `yaml:"edge"`
	} `yaml:"twilio"`
	Telnyx struct {
		APIBase string `yaml:"api_base"`
	} `yaml:"telnyx"`
}

// Default returns the embedded defaults.
func Default() Config {
	c := Config{
		DataDir:         "./data",
		HTTPAddr:        "127.0.0.1:8080",
		HTTP:            DefaultHTTP(),
		Region:          "local",
		Sandbox:         true,
		RenewalInterval: time.Minute,
		ShutdownTimeout: 30 * time.Second,
		Log:             Log{Format: "text", Level: "info"},
		NATS:            store.Config{Replicas: 1},
		Bootstrap:       Bootstrap{Workspace: "default", Credits: 1000},
	}
	c.Carriers.Twilio.APIBase = "https://api.twilio.com"
	c.Carriers.Twilio.Edge = "ashburn"
	c.Carriers.Telnyx.APIBase = "https://api.telnyx.com"
	c.Extensions = defaultExtensions()
	return c
}

// Setting documents one key for `serve --help`.
type Setting struct {
	Key, Env, Default, Help string
}

// Settings lists every setting with its environment variable.
func Settings() []Setting {
	d := Default()
	s := []Setting{
		{"data_dir", "CALLGATE_DATA_DIR", d.DataDir, "state directory: embedded NATS store, api-key, admin-key, secret.key"},
		{"http_addr", "CALLGATE_HTTP_ADDR", d.HTTPAddr, "HTTP API, webhooks, /metrics, /healthz, /readyz (port 0 = any free port)"},
		{"region", "CALLGATE_REGION", d.Region, "this gateway node's region (call events, region choice)"},
		{"public_url", "CALLGATE_PUBLIC_URL", "", "public base URL carriers use for webhooks (also the URL in signatures)"},
		{"sandbox", "CALLGATE_SANDBOX", "true", "built-in sandbox carrier on/off"},
		{"secret_key", "CALLGATE_SECRET_KEY", "(generated into data_dir/secret.key)", "base64 32-byte key encrypting carrier credentials (AES-256-GCM)"},
		{"renewal_interval", "CALLGATE_RENEWAL_INTERVAL", d.RenewalInterval.String(), "how often monthly renewals are checked"},
		{"shutdown_timeout", "CALLGATE_SHUTDOWN_TIMEOUT", d.ShutdownTimeout.String(), "on SIGTERM, how long active calls may drain"},
		{"debug_addr", "CALLGATE_DEBUG_ADDR", "", "net/http/pprof listener for profiling (keep it on loopback); empty = off"},
		{"log.format", "CALLGATE_LOG_FORMAT", d.Log.Format, "text or json"},
		{"log.level", "CALLGATE_LOG_LEVEL", d.Log.Level, "debug, info, warn or error"},
		{"nats.url", "CALLGATE_NATS_URL", "", "external NATS server/cluster (JetStream); empty = embedded server"},
		{"nats.listen", "CALLGATE_NATS_LISTEN", "", "embedded server client address (e.g. 127.0.0.1:4222); empty = in-process only"},
		{"nats.replicas", "CALLGATE_NATS_REPLICAS", "1", "KV and ledger replicas (3 on a cluster)"},
		{"nats.creds_file", "CALLGATE_NATS_CREDS", "", "NATS credentials file for an external cluster"},
		{"nats.audit.max_age", "CALLGATE_AUDIT_MAX_AGE", store.DefaultAuditMaxAge.String(), "audit records older than this are dropped (GET /v1/audit)"},
		{"nats.audit.max_bytes", "CALLGATE_AUDIT_MAX_BYTES", strconv.Itoa(store.DefaultAuditMaxBytes), "audit stream size limit; the oldest records are dropped first"},
		{"bootstrap.workspace", "", d.Bootstrap.Workspace, "workspace created on first start"},
		{"bootstrap.credits", "", strconv.FormatInt(d.Bootstrap.Credits, 10), "its initial credits"},
		{"carriers.twilio.api_base", "CALLGATE_TWILIO_API_BASE", d.Carriers.Twilio.APIBase, "Twilio REST API base (egress proxy or simulator)"},
		{"carriers.twilio.edge", "CALLGATE_TWILIO_EDGE", d.Carriers.Twilio.Edge, "Twilio edge used with regions"},
		{"carriers.telnyx.api_base", "CALLGATE_TELNYX_API_BASE", d.Carriers.Telnyx.APIBase, "Telnyx REST API base (egress proxy or simulator)"},
	}
	s = append(s, httpSettings()...)
	return append(s, extensionSettings()...)
}

// Load reads path (may be empty: defaults only), then the environment.
func Load(path string, env func(string) string) (Config, error) {
	c := Default()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		defer f.Close()
		if err := decode(f, path, &c); err != nil {
			return c, err
		}
	}
	if env == nil {
		env = os.Getenv
	}
	if err := c.applyEnv(env); err != nil {
		return c, err
	}
	c.Inherit()
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}

func decode(r io.Reader, name string, c *Config) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("config: %s: %w", name, err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return fmt.Errorf("config: %s:\n  %s", name, strings.Join(te.Errors, "\n  "))
		}
		return fmt.Errorf("config: %s: %w", name, err)
	}
	return nil
}

func (c *Config) applyEnv(env func(string) string) error {
	var errs []error
	str := func(k string, dst *string) {
		if v := env(k); v != "" {
			*dst = v
		}
	}
	dur := func(k string, dst *time.Duration) {
		if v := env(k); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration (e.g. 30s, 1m)", k, v))
				return
			}
			*dst = d
		}
	}
	str("CALLGATE_DATA_DIR", &c.DataDir)
	str("CALLGATE_HTTP_ADDR", &c.HTTPAddr)
	str("CALLGATE_REGION", &c.Region)
	str("CALLGATE_PUBLIC_URL", &c.PublicURL)
	str("CALLGATE_SECRET_KEY", &c.SecretKey)
	dur("CALLGATE_RENEWAL_INTERVAL", &c.RenewalInterval)
	dur("CALLGATE_SHUTDOWN_TIMEOUT", &c.ShutdownTimeout)
	str("CALLGATE_DEBUG_ADDR", &c.DebugAddr)
	str("CALLGATE_LOG_FORMAT", &c.Log.Format)
	str("CALLGATE_LOG_LEVEL", &c.Log.Level)
	str("CALLGATE_NATS_URL", &c.NATS.URL)
	str("CALLGATE_NATS_LISTEN", &c.NATS.Listen)
	str("CALLGATE_NATS_CREDS", &c.NATS.CredsFile)
	dur("CALLGATE_AUDIT_MAX_AGE", &c.NATS.Audit.MaxAge)
	if v := env("CALLGATE_AUDIT_MAX_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("CALLGATE_AUDIT_MAX_BYTES: %q is not an integer", v))
		} else {
			c.NATS.Audit.MaxBytes = n
		}
	}
	str("CALLGATE_TWILIO_API_BASE", &c.Carriers.Twilio.APIBase)
	str("CALLGATE_TWILIO_EDGE", &c.Carriers.Twilio.Edge)
	str("CALLGATE_TELNYX_API_BASE", &c.Carriers.Telnyx.APIBase)
	if v := env("CALLGATE_NATS_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("CALLGATE_NATS_REPLICAS: %q is not an integer", v))
		} else {
			c.NATS.Replicas = n
		}
	}
	if v := env("CALLGATE_SANDBOX"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("CALLGATE_SANDBOX: %q is not true or false", v))
		} else {
			c.Sandbox = b
		}
	}
	errs = append(errs, c.HTTP.applyEnv(env)...)
	errs = append(errs, c.Extensions.applyEnv(env)...)
	if len(errs) > 0 {
		return fmt.Errorf("config: environment:\n  %w", joinIndented(errs))
	}
	return nil
}

// Validate checks every key and reports all problems at once.
func (c Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	if err := checkAddr(c.HTTPAddr); err != nil {
		errs = append(errs, fmt.Errorf("http_addr: %v", err))
	}
	if c.DebugAddr != "" {
		if err := checkAddr(c.DebugAddr); err != nil {
			errs = append(errs, fmt.Errorf("debug_addr: %v", err))
		}
	}
	if c.Region == "" || strings.ContainsAny(c.Region, " .*>\t") {
		errs = append(errs, fmt.Errorf("region: %q must be a non-empty name without spaces, dots, '*' or '>'", c.Region))
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("public_url: %q must be an http(s) URL such as https://gw.example.com", c.PublicURL))
		}
	}
	if c.SecretKey != "" {
		k, err := base64.StdEncoding.DecodeString(c.SecretKey)
		if err != nil || len(k) != 32 {
			errs = append(errs, errors.New("secret_key: must be 32 bytes, base64-encoded (openssl rand -base64 32)"))
		}
	}
	if c.RenewalInterval < time.Second {
		errs = append(errs, fmt.Errorf("renewal_interval: %s is below 1s", c.RenewalInterval))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, errors.New("shutdown_timeout: must not be negative"))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q must be text or json", c.Log.Format))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q must be debug, info, warn or error", c.Log.Level))
	}
	errs = append(errs, c.NATS.Validate()...)
	if c.Bootstrap.Workspace == "" {
		errs = append(errs, errors.New("bootstrap.workspace: must not be empty"))
	}
	if c.Bootstrap.Credits < 0 {
		errs = append(errs, errors.New("bootstrap.credits: must not be negative"))
	}
	for k, v := range map[string]string{"carriers.twilio.api_base": c.Carriers.Twilio.APIBase, "carriers.telnyx.api_base": c.Carriers.Telnyx.APIBase} {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s: %q must be an http(s) URL", k, v))
		}
	}
	errs = append(errs, c.HTTP.validate()...)
	errs = append(errs, c.Extensions.validate()...)
	if len(errs) > 0 {
		return fmt.Errorf("config: %d problem(s):\n  %w", len(errs), joinIndented(errs))
	}
	return nil
}

func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port", a)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port must be 0-65535", a)
	}
	_ = host
	return nil
}

type joined []error

func (j joined) Error() string {
	parts := make([]string, len(j))
	for i, e := range j {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n  ")
}

func (j joined) Unwrap() []error { return j }

func joinIndented(errs []error) error { return joined(errs) }
