// Package webhook terminates the carriers' public HTTP webhooks: Twilio
// voice, messaging and status callbacks, Telnyx TeXML, Call Control and
// messaging. Every request is verified (Twilio X-Twilio-Signature with the
// auth token of the integration that owns the called number, Telnyx
// Ed25519 with the integration's public key) and answered from the
// in-memory routing snapshot only; the work that talks to the network
// (Call Control transfers, delivery to an agent's messaging URL) happens
// after the answer, in bounded worker pools.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
)

// Paths served by Routes.
const (
	PathTwilioVoice       = "/webhooks/twilio/voice"
	PathTwilioSMS         = "/webhooks/twilio/sms"
	PathTwilioStatus      = "/webhooks/twilio/status"
	PathTelnyxTeXML       = "/webhooks/telnyx/texml"
	PathTelnyxCallControl = "/webhooks/telnyx/call-control"
	PathTelnyxMessaging   = "/webhooks/telnyx/messaging"
)

// Headers given to the agent (as SIP URI headers in <Sip>, as
// custom_headers in a Call Control transfer); the same names as SIP routing.
const (
	HeaderNumber         = "X-Callgate-Number"
	HeaderAgent          = "X-Callgate-Agent"
	HeaderRegion         = "X-Callgate-Region"
	HeaderForwardedFrom  = "X-Callgate-Forwarded-From"
	HeaderOriginalCalled = "X-Callgate-Original-Called"
)

// MessagePublisher publishes inbound messages on NATS; *nats.Conn
// satisfies it. Publish must not block on the network (nats.Conn buffers).
type MessagePublisher interface {
	Publish(subject string, data []byte) error
}

// Deps are the webhook edge's collaborators.
type Deps struct {
	Table    *routing.Table   // required: the routing snapshot
	Health   routing.Health   // may be nil: every endpoint up
	Events   calls.Publisher  // call lifecycle events; nil: discarded
	Messages MessagePublisher // inbound messages; nil: not published
	// HTTPClient supplies the redirect policy, timeout and TLS settings
	// for deliveries to agents' messaging URLs; nil: no redirects. Its
	// Transport must be nil or an *http.Transport: New uses a clone that
	// dials through the internal-address check (Messaging.AllowNetworks)
	// and never uses a proxy.
	HTTPClient  *http.Client
	CallControl CallControl  // Telnyx transfers; nil: call.initiated is answered but not transferred
	Log         *slog.Logger // nil: discarded
	Registerer  prometheus.Registerer
	Metrics     *Metrics         // optional; built from Registerer when nil
	Now         func() time.Time // clock for Telnyx timestamps; nil: time.Now
	// MediaMode is the node's default for agents whose Media is empty:
	// "direct" (default) or "relay" (calls go through SIPEdge), as on
	// the SIP edge. An agent's own setting wins.
	MediaMode string
	// Limits counts new calls against workspace limits across the
	// cluster (limits.go); nil: no limits.
	Limits calls.Limiter
}

// Handler serves the webhook endpoints.
type Handler struct {
	cfg     Config
	table   *routing.Table
	health  routing.Health
	events  calls.Publisher
	msgs    MessagePublisher
	client  *http.Client
	cc      CallControl
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	// mediaMode is the node default for routing.Policy.Media.
	mediaMode string
	limits    calls.Limiter // nil: no workspace limits (limits.go)

	replays *replayCache // Telnyx signatures already accepted
	dummy   dummyKeys

	deliveries *workQueue
	transfers  *workQueue
	mux        *http.ServeMux

	mu  sync.Mutex
	srv *http.Server
	ln  net.Listener
}

var _ http.Handler = (*Handler)(nil)

// New validates cfg, applies defaults and starts the background workers
// (delivery to messaging URLs, Call Control transfers). Call Close to stop
// them.
func New(cfg Config, d Deps) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Table == nil {
		return nil, errors.New("webhook: Deps.Table is required")
	}
	if d.MediaMode != "" && d.MediaMode != routing.MediaDirect && d.MediaMode != routing.MediaRelay {
		return nil, fmt.Errorf("webhook: Deps.MediaMode %q: want direct or relay", d.MediaMode)
	}
	cfg.applyDefaults()
	h := &Handler{
		cfg:     cfg,
		table:   d.Table,
		health:  d.Health,
		events:  d.Events,
		msgs:    d.Messages,
		cc:      d.CallControl,
		log:     d.Log,
		metrics: d.Metrics,
		now:     d.Now,
		replays: newReplayCache(DefaultReplayCacheSize),
		dummy:   newDummyKeys(),

		mediaMode: d.MediaMode,
		limits:    d.Limits,
	}
	if h.events == nil {
		h.events = calls.Discard{}
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.metrics == nil {
		h.metrics = NewMetrics(d.Registerer)
	}
	if h.now == nil {
		h.now = time.Now
	}
	client, err := guardedClient(d.HTTPClient, addressGuard{allow: cfg.Messaging.allowPrefixes()})
	if err != nil {
		return nil, err
	}
	h.client = client
	h.deliveries = newWorkQueue(cfg.Messaging.Workers, cfg.Messaging.Queue)
	h.transfers = newWorkQueue(cfg.Telnyx.TransferWorkers, cfg.Telnyx.TransferQueue)

	mux := http.NewServeMux()
	mux.Handle("POST "+PathTwilioVoice, h.instrument(epTwilioVoice, h.twilioVoice))
	mux.Handle("POST "+PathTwilioSMS, h.instrument(epTwilioSMS, h.twilioSMS))
	mux.Handle("POST "+PathTwilioStatus, h.instrument(epTwilioStatus, h.twilioStatus))
	mux.Handle("POST "+PathTelnyxTeXML, h.instrument(epTelnyxTeXML, h.telnyxTeXML))
	mux.Handle("POST "+PathTelnyxCallControl, h.instrument(epTelnyxCallControl, h.telnyxCallControl))
	mux.Handle("POST "+PathTelnyxMessaging, h.instrument(epTelnyxMessaging, h.telnyxMessaging))
	h.mux = mux
	return h, nil
}

// Routes returns the handler for /webhooks/...; mount it at "/webhooks/"
// on the public HTTP server (without stripping the prefix). Other methods
// than POST get 405, other paths 404.
func (h *Handler) Routes() http.Handler { return h.mux }

// ServeHTTP implements http.Handler (same as Routes()).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Metrics returns the handler's collectors.
func (h *Handler) Metrics() *Metrics { return h.metrics }

// Start serves the webhooks on Config.Listen when it is set (port 0
// allowed; see Addr). It returns once the listener is bound. Without
// Config.Listen it does nothing: mount Routes() elsewhere.
func (h *Handler) Start(ctx context.Context) error {
	if h.cfg.Listen == "" {
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", h.cfg.Listen)
	if err != nil {
		return fmt.Errorf("webhook: listen %s: %w", h.cfg.Listen, err)
	}
	// Slow clients cannot hold more than MaxConnections descriptors.
	ln = netutil.LimitListener(ln, h.cfg.MaxConnections)
	srv := &http.Server{
		Handler:           h.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	h.mu.Lock()
	h.srv, h.ln = srv, ln
	h.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.log.Error("webhook: server stopped", "err", err)
		}
	}()
	return nil
}

// Addr is the bound address of the listener started by Start (nil when
// there is none).
func (h *Handler) Addr() net.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil {
		return nil
	}
	return h.ln.Addr()
}

// Shutdown stops the listener (if any), lets queued deliveries and
// transfers finish until ctx ends, then cancels what is left.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	srv := h.srv
	h.mu.Unlock()
	var err error
	if srv != nil {
		err = srv.Shutdown(ctx)
	}
	h.deliveries.shutdown(ctx)
	h.transfers.shutdown(ctx)
	return err
}

// Close is Shutdown with a 10-second grace period.
func (h *Handler) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.Shutdown(ctx)
}

// outcome is what a handler did: a result label value for the metrics.
type handlerFunc func(w http.ResponseWriter, r *http.Request) string

func (h *Handler) instrument(ep endpoint, fn handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		result := fn(w, r)
		h.metrics.observe(ep, result, time.Since(start).Seconds())
		if result != ResultOK && h.log.Enabled(r.Context(), slog.LevelDebug) {
			l := endpointLabels[ep]
			h.log.Debug("webhook: not routed", "carrier", l[0], "kind", l[1], "result", result, "remote", r.RemoteAddr)
		}
	})
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getBuf() *bytes.Buffer { b := bufPool.Get().(*bytes.Buffer); b.Reset(); return b }

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 256<<10 {
		bufPool.Put(b)
	}
}

// errTooLarge is returned by readBody when the body passes MaxBodyBytes.
var errTooLarge = errors.New("request body too large")

// readBody reads the whole body (bounded) into a pooled buffer; the
// caller must putBuf it.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (*bytes.Buffer, error) {
	buf := getBuf()
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		putBuf(buf)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errTooLarge
		}
		return nil, fmt.Errorf("reading body: %w", err)
	}
	return buf, nil
}

var (
	ctXML   = []string{"text/xml; charset=utf-8"}
	ctText  = []string{"text/plain; charset=utf-8"}
	ctJSON  = []string{"application/json"}
	noSniff = []string{"nosniff"}
)

func writeXML(w http.ResponseWriter, body []byte) {
	hd := w.Header()
	hd["Content-Type"] = ctXML
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// badRequest answers 400 with a one-line reason and returns the result.
func badRequest(w http.ResponseWriter, format string, a ...any) string {
	hd := w.Header()
	hd["Content-Type"] = ctText
	hd["X-Content-Type-Options"] = noSniff
	w.WriteHeader(http.StatusBadRequest)
	fmt.Fprintf(w, "webhook: "+format+"\n", a...)
	return ResultBadRequest
}

func bodyError(w http.ResponseWriter, err error) string {
	if errors.Is(err, errTooLarge) {
		hd := w.Header()
		hd["Content-Type"] = ctText
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		fmt.Fprintf(w, "webhook: request body too large\n")
		return ResultBadRequest
	}
	return badRequest(w, "%v", err)
}

// forbidden answers 403 with nothing else, and closes the connection
// without reading more of the request.
func forbidden(w http.ResponseWriter, err error) string {
	refuse(w)
	w.WriteHeader(http.StatusForbidden)
	switch {
	case errors.Is(err, ErrStaleTimestamp):
		return ResultStaleTimestamp
	case errors.Is(err, ErrReplayed):
		return ResultReplay
	}
	return ResultBadSignature
}

func notReady(w http.ResponseWriter) string {
	hd := w.Header()
	hd["Content-Type"] = ctText
	hd["Retry-After"] = []string{"1"}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "webhook: routing table not loaded yet\n")
	return ResultNotReady
}

// signedURL is the URL the carrier signed: the public base plus the
// request's path and query exactly as received.
func (h *Handler) signedURL(r *http.Request) string {
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		uri = r.URL.RequestURI()
	}
	return h.cfg.PublicURL + uri
}

// requestPath is the path part of the request line.
func requestPath(r *http.Request) string {
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		return r.URL.EscapedPath()
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		return uri[:i]
	}
	return uri
}

// normalizeNumber turns what a carrier sent into E.164 without touching
// libphonenumber when it already is E.164.
func normalizeNumber(s string) (string, bool) { return phone.Parse(s, "") }

// resolved is the route of a number a webhook names (messages, status
// callbacks); calls are decided by routing.Decide (see decide).
type resolved struct {
	e164  string         // the gateway number
	route *routing.Route // nil when unknown
}

// resolve finds the route of the number to.
func resolve(snap *routing.Snapshot, to string) resolved {
	e, r, _ := routing.LookupNumber(snap, to, "")
	return resolved{e164: e, route: r}
}

// number is the resolved gateway number, nil when unknown.
func (res resolved) number() *routing.Number {
	if res.route == nil {
		return nil
	}
	return &res.route.Number
}

// decisionNumber is the decided call's gateway number, nil when the
// number is not ours.
func decisionNumber(d *routing.Decision) *routing.Number {
	if d.Route == nil {
		return nil
	}
	return &d.Route.Number
}

// decide asks routing.Decide about a call this edge was told of, with the
// node's health and media policy: the same decision as the SIP edge's.
func (h *Handler) decide(snap *routing.Snapshot, c *routing.Call) routing.Decision {
	c.Direction = "inbound"
	return routing.Decide(snap, c, routing.Policy{Health: h.health, Media: h.mediaMode})
}

// refusalResult is the metric result of a call routing refused.
func refusalResult(r routing.Reason) string {
	switch r {
	case routing.ReasonInactive:
		return ResultSuspended // suspended, releasing, ...: the label is unchanged
	case routing.ReasonUnassigned:
		return ResultUnassigned
	case routing.ReasonNoEndpoint:
		return ResultNoEndpoint
	default:
		return ResultUnknownNumber
	}
}

// viaSIPEdge reports whether the decided call goes through this node's
// SIP edge (media relayed, when sip_edge is configured), and the target
// endpoint if so.
func (h *Handler) viaSIPEdge(d *routing.Decision) (routing.Endpoint, bool) {
	if h.cfg.SIPEdge == "" || d.Agent == nil || d.Media != routing.MediaRelay {
		return routing.Endpoint{}, false
	}
	return routing.Endpoint{Region: h.cfg.Region, URI: "sip:" + d.Number + "@" + h.cfg.SIPEdge}, true
}

// twilioToken is the auth token that signs webhooks for number n: its
// integration's, or the configured fallback for numbers without one.
func (h *Handler) twilioToken(snap *routing.Snapshot, n *routing.Number) string {
	if n.IntegrationID == "" {
		return h.cfg.Twilio.AuthToken
	}
	in, ok := snap.Integration(n.IntegrationID)
	if !ok {
		return ""
	}
	return in.AuthToken
}

// telnyxKey is the public key that signs webhooks for number n.
func (h *Handler) telnyxKey(snap *routing.Snapshot, n *routing.Number) string {
	if n.IntegrationID == "" {
		return h.cfg.Telnyx.PublicKey
	}
	in, ok := snap.Integration(n.IntegrationID)
	if !ok {
		return ""
	}
	return in.PublicKey
}
