// Package config loads callgate's configuration: a YAML file decoded
// strictly (an unknown key or a value of the wrong type is an error naming
// its file, line and YAML path), then CALLGATE_* environment overrides,
// then validation; every problem is reported at once, each placed in the
// file or the environment. The settings, their variables, defaults and
// help are the config structs' tags (schema.go).
package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/callgate/callgate/store"
)

// Config is the whole configuration. Its tags (and those of the sections
// embedded from other packages) are the one list of settings: see
// schema.go for what each tag means.
type Config struct {
	DataDir         string        `yaml:"data_dir" env:"CALLGATE_DATA_DIR" help:"state directory: embedded NATS store, api-key, admin-key, secret.key"`
	HTTPAddr        string        `yaml:"http_addr" env:"CALLGATE_HTTP_ADDR" help:"HTTP API, webhooks, /metrics, /healthz, /readyz (port 0 = any free port)"`
	HTTP            HTTP          `yaml:"http"`
	Region          string        `yaml:"region" env:"CALLGATE_REGION" help:"this gateway node's region (call events, region choice)"`
	PublicURL       string        `yaml:"public_url" env:"CALLGATE_PUBLIC_URL" help:"public base URL carriers use for webhooks (also the URL in signatures); empty = carrier webhooks off"`
	Sandbox         bool          `yaml:"sandbox" env:"CALLGATE_SANDBOX" help:"built-in sandbox carrier on/off"`
	SecretKey       string        `yaml:"secret_key" env:"CALLGATE_SECRET_KEY" default:"(generated into data_dir/secret.key)" help:"base64 32-byte key encrypting carrier credentials (AES-256-GCM)"`
	RenewalInterval time.Duration `yaml:"renewal_interval" env:"CALLGATE_RENEWAL_INTERVAL" help:"how often monthly renewals are checked"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" env:"CALLGATE_SHUTDOWN_TIMEOUT" help:"on SIGTERM, how long active calls may drain"`
	DebugAddr       string        `yaml:"debug_addr" env:"CALLGATE_DEBUG_ADDR" help:"net/http/pprof listener for profiling (keep it on loopback); empty = off"`
	Log             Log           `yaml:"log"`
	NATS            store.Config  `yaml:"nats"`
	Bootstrap       Bootstrap     `yaml:"bootstrap"`
	Carriers        Carriers      `yaml:"carriers"`
	Runtime         Runtime       `yaml:"runtime"` // runtime.go: garbage collector target
	Extensions      `yaml:",inline"`
}

// Log configures log/slog.
type Log struct {
	Format string `yaml:"format" env:"CALLGATE_LOG_FORMAT" help:"text or json"`
	Level  string `yaml:"level" env:"CALLGATE_LOG_LEVEL" help:"debug, info, warn or error"`
}

// Bootstrap is what the first start creates.
type Bootstrap struct {
	Workspace string `yaml:"workspace" help:"workspace created on first start"`
	Credits   int64  `yaml:"credits" help:"its initial credits"`
}

// Carriers holds carrier API endpoints.
type Carriers struct {
	Twilio struct {
		APIBase string `yaml:"api_base" env:"CALLGATE_TWILIO_API_BASE" help:"Twilio REST API base (egress proxy or simulator)"`
		Edge    string `yaml:"edge" env:"CALLGATE_TWILIO_EDGE" help:"Twilio edge used with regions"`
	} `yaml:"twilio"`
	Telnyx struct {
		APIBase string `yaml:"api_base" env:"CALLGATE_TELNYX_API_BASE" help:"Telnyx REST API base (egress proxy or simulator)"`
	} `yaml:"telnyx"`
	Sandbox struct {
		TerminationURI string `yaml:"termination_uri" env:"CALLGATE_SANDBOX_TERMINATION_URI" help:"SIP URI outbound calls of sandbox numbers are sent to (a local SIP 'PSTN' such as SIPp); empty = sandbox numbers cannot call out"`
		UACAddr        string `yaml:"uac_addr" env:"CALLGATE_SANDBOX_UAC_ADDR" help:"UDP address of the SIP user agent that places REST calls (POST /v1/calls) of sandbox numbers as a third-party call controller (empty = 127.0.0.1:0, any free port)"`
	} `yaml:"sandbox"`
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

// Load reads path (may be empty: defaults only), then the environment,
// and validates the result. Every problem is reported at once, in a
// *Error: the file's (syntax, types, unknown keys), the environment's and
// validation's, each with the file and line or the variable it came from.
func Load(path string, env func(string) string) (Config, error) {
	c := Default()
	var probs []Problem
	lines := map[string]int{}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, fmt.Errorf("config: %w", err)
		}
		var ok bool
		if lines, probs, ok = decode(b, path, &c); !ok {
			return c, &Error{Problems: probs}
		}
	}
	if env == nil {
		env = os.Getenv
	}
	envProbs := c.applyEnv(env)
	probs = append(probs, envProbs...)
	fromEnv := map[string]string{} // path → the variable whose value it holds
	for _, f := range configFields() {
		if name := f.tag.Get("env"); name != "" && env(name) != "" {
			fromEnv[f.path] = name
		}
	}
	for _, p := range envProbs {
		delete(fromEnv, p.Path) // not applied: the value is the file's
	}
	c.Inherit()
	for _, p := range c.problems() {
		if name, ok := fromEnv[p.Path]; ok {
			p.Env = name
		} else if line := lineOf(lines, p.Path); line > 0 {
			p.File, p.Line = path, line
		}
		probs = append(probs, p)
	}
	if len(probs) > 0 {
		// In the file's order, then the environment's, then the rest.
		rank := func(p Problem) int {
			switch {
			case p.File != "":
				return 0
			case p.Env != "":
				return 1
			}
			return 2
		}
		sort.SliceStable(probs, func(i, j int) bool {
			ri, rj := rank(probs[i]), rank(probs[j])
			return ri < rj || ri == rj && ri == 0 && probs[i].Line < probs[j].Line
		})
		return c, &Error{Problems: probs}
	}
	return c, nil
}

// decode reads a YAML file into c. It returns the line of every key, the
// problems found, and false when the file could not be parsed at all.
func decode(b []byte, name string, c *Config) (map[string]int, []Problem, bool) {
	lines := map[string]int{}
	if len(bytes.TrimSpace(b)) == 0 {
		return lines, nil, true
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return lines, []Problem{syntaxProblem(name, err)}, false
	}
	d := &decoder{file: name, lines: lines}
	d.decodeNode(&doc, c)
	return lines, d.probs, true
}

// lineOf finds the line of path in the file, or of its closest ancestor
// that is in it (a missing key is reported where its section is).
func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

// Validate checks every key and reports all problems at once (a *Error).
// It is safe to run as a dry run.
func (c Config) Validate() error {
	if probs := c.problems(); len(probs) > 0 {
		return &Error{Problems: probs}
	}
	return nil
}

// problems runs every check and places each problem at its YAML path.
func (c Config) problems() []Problem {
	var out []Problem
	for _, err := range c.validate() {
		out = append(out, pathProblem(err.Error()))
	}
	return out
}

var (
	keyPrefix     = regexp.MustCompile(`^([A-Za-z0-9_.\[\]-]+): (.*)$`)
	sectionPrefix = regexp.MustCompile(`^([a-z0-9_.\[\]]+): (.*)$`)
)

// pathProblem splits "key: message" into a Problem. Components write
// their own section either way ("sip.addr: ..." or "media: bind_ip: ...");
// both become the path media.bind_ip.
func pathProblem(msg string) Problem {
	m := keyPrefix.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Msg: msg}
	}
	path, rest := m[1], m[2]
	if idx, ok := structKey(reflect.TypeFor[Config](), path); ok && !isLeaf(reflect.TypeFor[Config]().FieldByIndex(idx).Type) {
		if m2 := sectionPrefix.FindStringSubmatch(rest); m2 != nil {
			path, rest = path+"."+m2[1], m2[2]
		}
	}
	return Problem{Path: path, Msg: rest}
}

// validate returns one error per problem, each starting with its key.
func (c Config) validate() []error {
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
	errs = append(errs, c.Runtime.validate()...)
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
	return errs
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
