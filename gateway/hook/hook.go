// Package hook is the routing hook client: for each new inbound call it
// POSTs what callgate knows about the call to the workspace's (or the
// number's) routing hook URL, signed with the workspace's webhook secret
// (X-Callgate-Signature, package sign), and turns the answer into a change
// of the call's routing.Decision: route to another agent of the same
// workspace or to an endpoint URI (with extra X- headers), or reject.
//
// A hook is a customer's server: every answer is validated, every request
// has a deadline (the hook's timeout_ms, at most 5 s) and a body cap
// (64 KiB), every connection goes through the SSRF guard of messaging
// deliveries (internal/netguard), and a failure (timeout, non-2xx, invalid
// body or action) applies the hook's on_failure policy. Requests run on a
// bounded pool, never on a SIP read loop: when it is full, Go refuses and
// the SIP edge answers 503.
package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/internal/netguard"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/sign"
)

// MaxBody caps a hook's answer.
const MaxBody = 64 << 10

// DefaultWorkers is the default cap on hook requests in flight.
const DefaultWorkers = 256

// Request is the JSON body POSTed to a routing hook.
type Request struct {
	CallID        string `json:"call_id"`
	Direction     string `json:"direction"`
	From          string `json:"from"`
	To            string `json:"to"`
	Number        string `json:"number"`
	Origin        string `json:"origin"`
	ForwardedFrom string `json:"forwarded_from"`
	Carrier       string `json:"carrier"`
	Region        string `json:"region"`
	AgentID       string `json:"agent_id"` // the static assignment ("" when none)
}

// Outcomes of a hook request (metric label, call event HookOutcome).
const (
	OutcomeRoute   = "route"
	OutcomeReject  = "reject"
	OutcomeTimeout = "timeout"
	OutcomeError   = "error"   // not reached, refused address, non-2xx, pool full
	OutcomeInvalid = "invalid" // not JSON, unknown action, a field out of bounds, a foreign agent
)

var outcomes = []string{OutcomeRoute, OutcomeReject, OutcomeTimeout, OutcomeError, OutcomeInvalid}

// Header is one extra header the hook asks to add to the forwarded INVITE.
type Header struct{ Name, Value string }

// Answer is a hook's answer, validated. Outcome is OutcomeRoute,
// OutcomeReject or one of the failures (then Err says why).
type Answer struct {
	Outcome  string
	AgentID  string   // route: another agent of the workspace ("" keeps the decision's)
	Endpoint string   // route: an endpoint URI, canonical ("" keeps the candidates)
	Headers  []Header // route: X- headers for the agent
	Status   int      // reject: 404, 480, 486 or 603
	Reason   string   // reject: reason phrase
	Err      error
}

// Failed reports whether the hook failed (on_failure applies).
func (a *Answer) Failed() bool { return a.Outcome != OutcomeRoute && a.Outcome != OutcomeReject }

// Options configure a Client.
type Options struct {
	// Allow are the internal networks hook URLs may reach (the messaging
	// deliveries' webhook.messaging.allow_networks; 127.0.0.0/8 in tests).
	Allow []netip.Prefix
	// Endpoint validates an endpoint URI a hook answers, exactly as an
	// agent endpoint is validated (provisioning.Service.CheckEndpoint),
	// and returns its canonical form. nil: endpoint answers are invalid.
	Endpoint func(string) (string, error)
	// Workers caps hook requests in flight (default DefaultWorkers).
	Workers    int
	Registerer prometheus.Registerer // nil: metrics not registered
	Log        *slog.Logger          // nil: discarded
	Now        func() time.Time      // signature clock; nil: time.Now
}

// Client asks routing hooks. Safe for concurrent use.
type Client struct {
	http     *http.Client
	endpoint func(string) (string, error)
	sem      chan struct{}
	metrics  *Metrics
	log      *slog.Logger
	now      func() time.Time
}

// New builds a client.
func New(o Options) (*Client, error) {
	w := o.Workers
	if w <= 0 {
		w = DefaultWorkers
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = w // a busy hook keeps its connections
	tr.ResponseHeaderTimeout = routing.MaxHookTimeout
	hc, err := netguard.Client(&http.Client{Transport: tr}, netguard.Guard{
		Allow: o.Allow, What: "routing hook URL", Key: "webhook.messaging.allow_networks"})
	if err != nil {
		return nil, fmt.Errorf("hook: %w", err)
	}
	c := &Client{http: hc, endpoint: o.Endpoint, sem: make(chan struct{}, w), metrics: NewMetrics(o.Registerer),
		log: o.Log, now: o.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}

// Metrics returns the client's collectors.
func (c *Client) Metrics() *Metrics { return c.metrics }

// ErrSaturated: every worker is busy.
var ErrSaturated = errors.New("hook: too many routing hook requests in flight")

// Go asks hook h in a pool goroutine and calls done with the answer.
// false (done never called) when the pool is full.
func (c *Client) Go(h *routing.Hook, secret string, req Request, done func(Answer)) bool {
	select {
	case c.sem <- struct{}{}:
	default:
		c.metrics.Saturated.Inc()
		return false
	}
	go func() {
		defer func() { <-c.sem }()
		done(c.ask(context.Background(), h, secret, req))
	}()
	return true
}

// Ask asks hook h in the caller's goroutine (an HTTP handler), counted in
// the same pool: a full pool is an OutcomeError answer.
func (c *Client) Ask(ctx context.Context, h *routing.Hook, secret string, req Request) Answer {
	select {
	case c.sem <- struct{}{}:
	default:
		c.metrics.Saturated.Inc()
		return Answer{Outcome: OutcomeError, Err: ErrSaturated}
	}
	defer func() { <-c.sem }()
	return c.ask(ctx, h, secret, req)
}

func (c *Client) ask(ctx context.Context, h *routing.Hook, secret string, req Request) Answer {
	start := time.Now()
	a := c.do(ctx, h, secret, req)
	c.metrics.Latency.Observe(time.Since(start).Seconds())
	return a
}

// wireAnswer is the answer as the hook writes it.
type wireAnswer struct {
	Action   string          `json:"action"`
	AgentID  *string         `json:"agent_id"`
	Endpoint *string         `json:"endpoint"`
	Headers  json.RawMessage `json:"headers"`
	Status   int             `json:"status"`
	Reason   string          `json:"reason"`
}

func (c *Client) do(ctx context.Context, h *routing.Hook, secret string, req Request) Answer {
	body, err := json.Marshal(req)
	if err != nil {
		return Answer{Outcome: OutcomeError, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, h.Timeout())
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return Answer{Outcome: OutcomeError, Err: fmt.Errorf("hook: URL: %w", err)}
	}
	if hr.URL.Scheme != "http" && hr.URL.Scheme != "https" {
		return Answer{Outcome: OutcomeError, Err: errors.New("hook: URL is not http(s)")}
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("User-Agent", "callgate-hook")
	if secret != "" {
		hr.Header.Set(sign.HeaderName, sign.Header([]byte(secret), c.now(), body))
	}
	resp, err := c.http.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return Answer{Outcome: OutcomeTimeout, Err: fmt.Errorf("hook: no answer within %v", h.Timeout())}
		}
		return Answer{Outcome: OutcomeError, Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		if ctx.Err() != nil {
			return Answer{Outcome: OutcomeTimeout, Err: fmt.Errorf("hook: answer not read within %v", h.Timeout())}
		}
		return Answer{Outcome: OutcomeError, Err: fmt.Errorf("hook: reading the answer: %w", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return Answer{Outcome: OutcomeError, Err: fmt.Errorf("hook: answered %s", resp.Status)}
	}
	if len(b) > MaxBody {
		return Answer{Outcome: OutcomeInvalid, Err: fmt.Errorf("hook: answer larger than %d bytes", MaxBody)}
	}
	return c.parse(b)
}

// parse validates a hook's answer body.
func (c *Client) parse(b []byte) Answer {
	var w wireAnswer
	if err := json.Unmarshal(b, &w); err != nil {
		return invalid("answer is not a JSON object of the documented shape: %v", err)
	}
	switch w.Action {
	case "route":
		a := Answer{Outcome: OutcomeRoute}
		if w.AgentID != nil {
			if !validID(*w.AgentID) {
				return invalid("agent_id %q is not an agent id", *w.AgentID)
			}
			a.AgentID = *w.AgentID
		}
		if w.Endpoint != nil {
			if c.endpoint == nil {
				return invalid("endpoint answers are not accepted here")
			}
			ep, err := c.endpoint(*w.Endpoint)
			if err != nil {
				return invalid("endpoint: %v", err)
			}
			a.Endpoint = ep
		}
		hs, err := parseHeaders(w.Headers)
		if err != nil {
			return invalid("headers: %v", err)
		}
		a.Headers = hs
		return a
	case "reject":
		switch w.Status {
		case 404, 480, 486, 603:
		default:
			return invalid("reject status %d: want 404, 480, 486 or 603", w.Status)
		}
		if !printable(w.Reason, maxReason) {
			return invalid("reject reason: at most %d printable ASCII characters", maxReason)
		}
		return Answer{Outcome: OutcomeReject, Status: w.Status, Reason: w.Reason}
	case "":
		return invalid("action is missing: want route or reject")
	default:
		return invalid("action %q: want route or reject", truncate(w.Action, 32))
	}
}

func invalid(format string, a ...any) Answer {
	return Answer{Outcome: OutcomeInvalid, Err: fmt.Errorf("hook: "+format, a...)}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// validID: ids are what provisioning issues (letters, digits, - and _).
func validID(s string) bool {
	if s == "" || len(s) > 128 {
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
