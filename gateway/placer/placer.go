// Package placer places outbound calls for POST /v1/calls and connects the
// callee to a voice agent when they answer: through Twilio's Calls API
// (TwiML <Dial><Sip> to the agent), Telnyx Call Control (dial, then
// transfer on call.answered) or, for sandbox numbers, as a third-party
// call controller (RFC 3725) that holds both SIP legs itself.
//
// Every call is checked as the SIP agent edge checks outbound calls:
// caller ID owned by the workspace (or a business line it registered),
// destination policy (routing.CheckDestination), credits for the first
// minute (calls.UsageMeter) and the workspace's caps (calls.Limiter).
package placer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/routing"
)

// Request is the body of POST /v1/calls.
type Request struct {
	From    string `json:"from"`
	To      string `json:"to"`
	AgentID string `json:"agent_id"`
}

// Call is a placed call as the API shows it.
type Call struct {
	ID        string    `json:"id"`
	Status    string    `json:"status"` // queued or ringing
	From      string    `json:"from"`
	To        string    `json:"to"`
	AgentID   string    `json:"agent_id"`
	Carrier   string    `json:"carrier"`
	CreatedAt time.Time `json:"created_at"`
}

// Carriers gives the carrier adapter of a workspace's integration
// (*provisioning.Service implements it).
type Carriers interface {
	Carrier(ctx context.Context, ws, integrationID string) (carrier.Carrier, error)
}

// Idempotency runs fn once per workspace, operation and Idempotency-Key
// and replays its result to retries (*provisioning.Service implements it).
type Idempotency interface {
	RunIdempotent(ctx context.Context, ws, op, clientKey, request string, fn func(context.Context) (json.RawMessage, error)) (json.RawMessage, error)
}

// Config configures a Placer.
type Config struct {
	// PublicURL is callgate's public base URL: carriers' status callbacks
	// and Call Control webhooks come back under PublicURL + CallbackPath.
	PublicURL string
	// RingTimeout bounds how long the callee's and the agent's phones ring
	// (default 60s).
	RingTimeout time.Duration
}

// Deps are the placer's collaborators; nil Limits and Usage turn limits
// and metering off.
type Deps struct {
	Table    *routing.Table
	Events   calls.Publisher
	Limits   calls.Limiter
	Usage    calls.UsageMeter
	Carriers Carriers
	// Health is what endpoint probes learnt (nil: every endpoint up).
	Health routing.Health
	// Media relays the RTP of sandbox calls whose agent's media is
	// "relay" (MediaMode when the agent has none); nil: media is direct.
	Media     MediaAnchor
	MediaMode string
	// Metrics may be nil (not measured).
	Metrics     *Metrics
	Idempotency Idempotency
	// Sandbox places calls of sandbox numbers (nil: they cannot call out).
	Sandbox *UAC
	Log     *slog.Logger
}

// MediaAnchor makes relay sessions (media.Anchor[placer.MediaSession]).
type MediaAnchor interface {
	NewSession(callID string, onTimeout func()) (MediaSession, error)
}

// MediaSession is one relayed call: the callee's offer and the agent's
// answer are rewritten to point at the relay; Close gives the per-leg
// figures for the ended event.
type MediaSession interface {
	RewriteOffer(sdp []byte) ([]byte, error)
	RewriteAnswer(sdp []byte) ([]byte, error)
	Close() any
}

// Placer places calls. It is safe for concurrent use.
type Placer struct {
	cfg  Config
	d    Deps
	log  *slog.Logger
	seen sync.Map // carrier callback events already handled: callID + "/" + event
	live sync.Map // carrier calls not yet ended: callID -> carrierCall (cut.go)
	cuts sync.Map // EndCall in flight: callID -> reason
	// transfers are Telnyx transfers in flight (Close waits for them).
	transfers wait
	// webhookXfers are transfers of webhook calls in flight on this node:
	// call id -> struct{} (webhookcalls.go).
	webhookXfers sync.Map
}

// Close waits for work in flight (Telnyx transfers) and ends the sandbox
// calls in progress.
func (p *Placer) Close() {
	if p.d.Sandbox != nil {
		p.d.Sandbox.Close()
	}
	p.transfers.Wait()
}

// New returns a Placer.
func New(cfg Config, d Deps) *Placer {
	if cfg.RingTimeout <= 0 {
		cfg.RingTimeout = 60 * time.Second
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if d.Events == nil {
		d.Events = calls.Discard{}
	}
	p := &Placer{cfg: cfg, d: d, log: d.Log}
	if p.log == nil {
		p.log = slog.Default()
	}
	if d.Sandbox != nil {
		d.Sandbox.p = p
	}
	return p
}

// opPlaceCall names POST /v1/calls in the idempotency records.
const opPlaceCall = "place_call"

// Place checks req for workspace ws and places the call. With an
// Idempotency-Key, a retry of the same request returns the same call (and
// places nothing); a different request under the key is a conflict.
func (p *Placer) Place(ctx context.Context, ws string, req Request, idemKey string) (*Call, error) {
	if p == nil {
		return nil, &Error{Status: 503, Title: "Calls are off", Detail: "this gateway places no calls", RetryAfter: time.Minute}
	}
	c, err := p.placeIdempotent(ctx, ws, req, idemKey)
	if m := p.d.Metrics; m != nil {
		carrier := "other"
		if c != nil {
			carrier = c.Carrier
		} else if snap := p.d.Table.Load(); snap != nil {
			if rt, ok := snap.Lookup(req.From); ok && rt.Number.Workspace == ws {
				carrier = rt.Number.Carrier
			}
		}
		m.Placed.WithLabelValues(carrierLabel(carrier), resultOf(err)).Inc()
	}
	return c, err
}

func (p *Placer) placeIdempotent(ctx context.Context, ws string, req Request, idemKey string) (*Call, error) {
	req, err := normalize(req)
	if err != nil {
		return nil, err
	}
	if idemKey == "" || p.d.Idempotency == nil {
		return p.place(ctx, ws, req)
	}
	raw, err := p.d.Idempotency.RunIdempotent(ctx, ws, opPlaceCall, idemKey, req.From+"|"+req.To+"|"+req.AgentID,
		func(ctx context.Context) (json.RawMessage, error) {
			c, err := p.place(ctx, ws, req)
			if err != nil {
				return nil, err
			}
			return json.Marshal(c)
		})
	if err != nil {
		return nil, err
	}
	var c Call
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// normalize checks the fields' form (E.164, an agent id).
func normalize(req Request) (Request, error) {
	if strings.TrimSpace(req.From) == "" {
		return req, fieldErr(400, "from", "Invalid request", "required: a number of this workspace in E.164 (+14155550100)")
	}
	from, ok := phone.Parse(req.From, "")
	if !ok {
		return req, fieldErr(400, "from", "Invalid request", "%q is not a phone number in E.164 (+14155550100)", clip(req.From))
	}
	if strings.TrimSpace(req.To) == "" {
		return req, fieldErr(400, "to", "Invalid request", "required: the number to call in E.164 (+447700900123)")
	}
	to, ok := phone.Parse(req.To, "")
	if !ok {
		return req, fieldErr(400, "to", "Invalid request", "%q is not a phone number in E.164 (+447700900123)", clip(req.To))
	}
	if strings.TrimSpace(req.AgentID) == "" {
		return req, fieldErr(400, "agent_id", "Invalid request", "required: the agent that takes the call")
	}
	if len(req.AgentID) > 64 {
		return req, fieldErr(400, "agent_id", "Invalid request", "at most 64 characters")
	}
	return Request{From: from, To: to, AgentID: req.AgentID}, nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// plan is one checked call, ready to dial.
type plan struct {
	call     Call
	ws       string
	number   routing.Number // the number whose carrier places the call
	agent    *routing.Agent
	endpoint routing.Endpoint
	// forwardedFrom is the business line used as caller ID, if any.
	forwardedFrom string
	// start, if set, starts the call's legs; place calls it after the
	// started event is published, so that no event of the call (a
	// busy callee's ended, at once) comes before it.
	start func()
}

// check applies the workspace's rules to req (no side effects).
func (p *Placer) check(ws string, req Request) (*plan, error) {
	snap := p.d.Table.Load()
	if snap == nil {
		return nil, &Error{Status: 503, Title: "Not ready", Detail: "the routing table is not loaded yet; retry", RetryAfter: time.Second}
	}
	pl := &plan{ws: ws, call: Call{From: req.From, To: req.To, AgentID: req.AgentID}}
	notOwned := fieldErr(403, "from", "Caller ID not allowed", "%s is not an active number or registered business line of this workspace", req.From)
	if rt, ok := snap.Lookup(req.From); ok && rt.Number.Workspace == ws {
		if rt.Number.Status != routing.StatusActive {
			return nil, fieldErr(403, "from", "Caller ID not allowed", "%s is %s", req.From, rt.Number.Status)
		}
		pl.number = rt.Number
	} else if f, ok := snap.ForwardFrom(req.From); ok && f.Workspace == ws {
		gw, ok := snap.Lookup(f.GatewayNumber)
		if !ok || gw.Number.Workspace != ws || gw.Number.Status != routing.StatusActive {
			return nil, notOwned
		}
		pl.number, pl.forwardedFrom = gw.Number, req.From
	} else {
		return nil, notOwned // a foreign number reads exactly like an unknown one
	}
	ag, ok := snap.Agent(ws, req.AgentID)
	if !ok {
		return nil, fieldErr(404, "agent_id", "Not found", "agent %q not found", clip(req.AgentID))
	}
	if len(ag.Endpoints) == 0 {
		return nil, fieldErr(400, "agent_id", "Invalid request", "agent %q has no endpoint to connect the call to", ag.ID)
	}
	// The agent's endpoint as for an inbound call to the number: its voice
	// region first when healthy, then by measured RTT; down ones left out.
	cands := routing.Candidates(&routing.Route{Number: pl.number, Agent: ag}, p.d.Health)
	if len(cands) == 0 {
		return nil, &Error{Status: 503, Field: "agent_id", Title: "No healthy endpoint", RetryAfter: 5 * time.Second,
			Detail: "every endpoint of agent " + ag.ID + " is down (SIP OPTIONS probes); retry later"}
	}
	pl.agent, pl.endpoint = ag, cands[0]
	if rule, ok := routing.CheckDestination(snap.Workspace(ws), req.From, req.To); !ok {
		if rule == routing.RuleInvalidDestination {
			return nil, &Error{Status: 400, Field: "to", Rule: rule, Title: "Invalid request", Detail: routing.RulePhrase(rule)}
		}
		return nil, &Error{Status: 403, Field: "to", Rule: rule, Title: routing.RulePhrase(rule),
			Detail: routing.RulePhrase(rule) + " by this workspace's outbound policy (" + rule + ")"}
	}
	pl.call.Carrier = pl.number.Carrier
	return pl, nil
}

// caps are the limits that apply to a new outbound call of ws.
func caps(w *routing.Workspace) calls.LimitCaps {
	if w == nil {
		return calls.LimitCaps{}
	}
	return calls.LimitCaps{MaxConcurrent: w.Limits.MaxConcurrentCalls, MaxPerSecond: w.Limits.MaxCallsPerSecond,
		MaxOutConcurrent: w.Outbound.MaxConcurrentCalls, MaxOutPerSecond: w.Outbound.MaxCallsPerSecond}
}

func (p *Placer) place(ctx context.Context, ws string, req Request) (*Call, error) {
	pl, err := p.check(ws, req)
	if err != nil {
		return nil, err
	}
	if p.d.Usage != nil {
		if err := p.d.Usage.Authorize(ws, req.To); err != nil {
			return nil, &Error{Status: 402, Title: "Insufficient credits", Detail: "the workspace's balance does not cover the first minute of this call: " + err.Error()}
		}
	}
	if p.d.Limits != nil {
		rule, retry, ok := p.d.Limits.Admit(ws, calls.Outbound, caps(p.d.Table.Load().Workspace(ws)))
		if !ok {
			if retry <= 0 {
				retry = time.Second
			}
			return nil, &Error{Status: 503, Rule: rule, Title: "Limit reached", RetryAfter: retry,
				Detail: "the workspace's limit " + rule + " is reached; retry later"}
		}
	}
	pl.call.ID = newCallID()
	pl.call.CreatedAt = time.Now().UTC()
	pl.call.Status = "queued"
	switch pl.number.Carrier {
	case "sandbox":
		err = p.placeSandbox(pl)
	case "twilio":
		err = p.placeTwilio(ctx, pl)
	case "telnyx":
		err = p.placeTelnyx(ctx, pl)
	default:
		err = fieldErr(400, "from", "Invalid request", "numbers of carrier %q cannot place calls", pl.number.Carrier)
	}
	if err != nil {
		p.release(ws)
		return nil, carrierErr(err)
	}
	p.d.Events.Publish(p.event(calls.Started, pl.call, ws, pl.number.E164, pl.endpoint.URI, pl.forwardedFrom))
	if pl.start != nil {
		pl.start()
	}
	p.log.Info("placer: call placed", "call_id", pl.call.ID, "workspace", ws, "carrier", pl.call.Carrier, "agent", pl.call.AgentID, "to", phone.Mask(pl.call.To))
	return &pl.call, nil
}

// carrierErr turns a carrier's refusal of the call's parameters into a 422
// (the carrier said no; nothing is charged); other errors go up as they are.
func carrierErr(err error) error {
	var ce *carrier.Error
	if errors.As(err, &ce) && errors.Is(err, carrier.ErrInvalidQuery) {
		return &Error{Status: 422, Title: "Carrier refused the call (" + ce.Carrier + ")", Detail: ce.Detail}
	}
	return err
}

func (p *Placer) release(ws string) {
	if p.d.Limits != nil {
		p.d.Limits.Release(ws, calls.Outbound)
	}
}

func (p *Placer) event(kind string, c Call, ws, number, endpoint, forwardedFrom string) calls.Event {
	return calls.Event{Kind: kind, CallID: c.ID, Time: time.Now(), Number: number, Workspace: ws, Agent: c.AgentID,
		Carrier: c.Carrier, Source: "api", Direction: calls.Outbound, From: c.From, To: c.To, Endpoint: endpoint,
		ForwardedFrom: forwardedFrom}
}

// agentHeaders are the X-Callgate-* headers the agent gets.
func agentHeaders(pl *plan) [][2]string {
	hs := [][2]string{{"X-Callgate-Number", pl.number.E164}, {"X-Callgate-Agent", pl.agent.ID},
		{"X-Callgate-Region", pl.endpoint.Region}, {"X-Callgate-Call-Id", pl.call.ID}, {"X-Callgate-Direction", calls.Outbound}}
	if pl.forwardedFrom != "" {
		hs = append(hs, [2]string{"X-Callgate-Forwarded-From", pl.forwardedFrom})
	}
	return hs
}

func newCallID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "call_" + hex.EncodeToString(b)
}
