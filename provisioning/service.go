// Package provisioning is the control plane: workspaces and API keys,
// marketplace search, purchase, release and renewal of numbers, agents,
// forwarding registrations and the credits ledger. Every write goes to
// NATS JetStream through the store package.
package provisioning

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/sandbox"
	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/store"
)

// Options configure a Service.
type Options struct {
	// Sandbox turns the built-in sandbox carrier on.
	Sandbox bool
	// PublicURL is where carriers reach this gateway's webhooks.
	PublicURL string
	// Now is the clock (tests inject one). Defaults to time.Now.
	Now func() time.Time
	Log *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// Integrations resolves carrier adapters for integrations (twilio,
	// telnyx). Nil: the service's own integrations (needs Box).
	Integrations IntegrationCarriers
	// Box encrypts carrier credentials at rest.
	Box *secrets.Box
	// Carriers are gateway-wide carrier API settings.
	Carriers CarrierSettings
	// SIPRealm is the digest realm of agents' SIP credentials (default
	// DefaultSIPRealm, "callgate").
	SIPRealm string
}

// Service implements provisioning on a Store.
type Service struct {
	st      *store.Store
	opts    Options
	now     func() time.Time
	log     *slog.Logger
	sandbox *sandbox.Carrier
	// sandboxC is the sandbox as the service uses it: measured like the
	// other carriers (carrier.Instrument) when there are carrier metrics.
	sandboxC carrier.Carrier
	m        *Metrics
	crash    func(step string) bool // tests: stop a saga at step, as a crash would
	self     selfPtr                // this gateway's SIP addresses (SetSIPSelf)
	// drawUsername replaces random SIP usernames (tests: collisions).
	drawUsername func() string
}

// New returns a Service.
func New(st *store.Store, o Options) *Service {
	s := &Service{st: st, opts: o, now: o.Now, log: o.Log, m: o.Metrics}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.opts.Integrations == nil && o.Box != nil {
		s.opts.Integrations = s
	}
	if o.Sandbox {
		s.sandbox = sandbox.New(sandbox.Options{IsOwned: s.isOwned})
		s.sandboxC = carrier.Instrument(s.sandbox, o.Carriers.Metrics)
	}
	return s
}

// Store returns the underlying store.
func (s *Service) Store() *store.Store { return s.st }

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidID reports whether id is a usable workspace or agent id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

func hashKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func randomToken(prefix string) string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return prefix + hex.EncodeToString(b)
}

// storeErr maps store failures: NATS unreachable becomes ErrUnavailable.
func storeErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrDisconnected) || errors.Is(err, jetstream.ErrNoHeartbeat) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, store.ErrUnavailable) {
		return &kindError{kind: ErrUnavailable, detail: fmt.Sprintf("%s: the state store (NATS) is unreachable; retry when it is back (%v)", op, err)}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.Code == 503 || apiErr.ErrorCode == jetstream.JSErrCodeStreamNotFound) {
		return &kindError{kind: ErrUnavailable, detail: fmt.Sprintf("%s: the state store (NATS) is unavailable; retry (%v)", op, err)}
	}
	return fmt.Errorf("%s: %w", op, err)
}

// scanKV calls fn with the current entry of every key in kv, in one pass
// of an ordered consumer (the last message of each subject, streamed)
// rather than a list of keys and a get per key: 10,000 numbers are read
// in milliseconds instead of a quarter of a second on an embedded server,
// and far more over a network. If nothing arrives for store.OpTimeout
// (NATS away), or the connection is down past store.ReconnectGrace when
// it starts, it gives up with an error storeErr reports as unavailable.
func (s *Service) scanKV(ctx context.Context, kv jetstream.KeyValue, fn func(jetstream.KeyValueEntry) error) error {
	if err := s.st.WaitConnected(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	defer w.Stop()
	idle := time.NewTimer(store.OpTimeout)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle.C:
			return fmt.Errorf("reading %s: nothing for %s: %w", kv.Bucket(), store.OpTimeout, context.DeadlineExceeded)
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("reading %s: the watch ended early: %w", kv.Bucket(), nats.ErrConnectionClosed)
			}
			if e == nil {
				return nil // every key seen
			}
			if err := fn(e); err != nil {
				return err
			}
			idle.Reset(store.OpTimeout)
		}
	}
}

// scanJSON decodes every entry of kv into a T and calls fn with it and
// its key and revision. An entry that does not decode is an error.
func scanJSON[T any](ctx context.Context, s *Service, kv jetstream.KeyValue, fn func(key string, v T, rev uint64)) error {
	return s.scanKV(ctx, kv, func(e jetstream.KeyValueEntry) error {
		var v T
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return fmt.Errorf("decode %s/%s: %w", kv.Bucket(), e.Key(), err)
		}
		fn(e.Key(), v, e.Revision())
		return nil
	})
}

func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("decode %s/%s: %w", kv.Bucket(), key, err)
	}
	return e.Revision(), nil
}

// ---- workspaces and keys ----

// Authenticate resolves an API key.
func (s *Service) Authenticate(ctx context.Context, key string) (Principal, error) {
	if key == "" || len(key) > 200 {
		return Principal{}, ErrForbidden
	}
	var k APIKey
	if _, err := getJSON(ctx, s.st.APIKeys, hashKey(key), &k); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Principal{}, ErrForbidden
		}
		// Whatever else went wrong, the key was not found invalid: never
		// a 401 for a valid key because the store could not be read.
		if err := storeErr("authenticate", err); errors.Is(err, ErrUnavailable) {
			return Principal{}, err
		}
		return Principal{}, &kindError{kind: ErrUnavailable, detail: fmt.Sprintf("authenticate: the state store (NATS) could not read the API key; retry (%v)", err)}
	}
	return Principal{Workspace: k.Workspace, Admin: k.Admin}, nil
}

// CreateWorkspace creates a workspace with initial credits and returns its new API key.
func (s *Service) CreateWorkspace(ctx context.Context, id, name string, credits int64) (Workspace, string, error) {
	v := &ValidationError{}
	if !ValidID(id) {
		v.Add("id", "must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")
	}
	if len(name) > 200 {
		v.Add("name", "must be at most 200 characters")
	}
	if credits < 0 || credits > 1e12 {
		v.Add("credits", "must be between 0 and 10^12")
	}
	if err := v.Err(); err != nil {
		return Workspace{}, "", err
	}
	if name == "" {
		name = id
	}
	ws := Workspace{ID: id, Name: name, CreatedAt: s.now().UTC()}
	// Born with a webhook secret, so that what callgate sends it is signed.
	b, _ := json.Marshal(workspaceRecord{Workspace: ws, SealedWebhookSecret: s.sealNewWebhookSecret(id)})
	if _, err := s.st.Workspaces.Create(ctx, id, b); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return Workspace{}, "", errorf(ErrConflict, "workspace %q already exists", id)
		}
		return Workspace{}, "", storeErr("create workspace", err)
	}
	key, err := s.CreateKey(ctx, id, false)
	if err != nil {
		return Workspace{}, "", err
	}
	if credits > 0 {
		if _, err := s.post(ctx, id, LedgerEntry{Kind: KindTopUp, Amount: credits, Reason: "initial credits"}, "init:"+id); err != nil {
			return Workspace{}, "", err
		}
	}
	return ws, key, nil
}

// CreateKey makes a new API key (admin when admin is true) and stores its hash.
func (s *Service) CreateKey(ctx context.Context, workspace string, admin bool) (string, error) {
	prefix := "cg_live_"
	if admin {
		prefix = "cg_admin_"
	}
	key := randomToken(prefix)
	b, _ := json.Marshal(APIKey{Workspace: workspace, Admin: admin, CreatedAt: s.now().UTC()})
	if _, err := s.st.APIKeys.Create(ctx, hashKey(key), b); err != nil {
		return "", storeErr("create key", err)
	}
	return key, nil
}

// StoreKey stores the hash of a given key (bootstrap from files).
func (s *Service) StoreKey(ctx context.Context, key, workspace string, admin bool) error {
	b, _ := json.Marshal(APIKey{Workspace: workspace, Admin: admin, CreatedAt: s.now().UTC()})
	_, err := s.st.APIKeys.Put(ctx, hashKey(key), b)
	return storeErr("store key", err)
}

// GetWorkspace returns a workspace.
func (s *Service) GetWorkspace(ctx context.Context, id string) (Workspace, error) {
	var ws Workspace
	if !ValidID(id) {
		return ws, errorf(ErrNotFound, "workspace %q not found", id)
	}
	if _, err := getJSON(ctx, s.st.Workspaces, id, &ws); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return ws, errorf(ErrNotFound, "workspace %q not found", id)
		}
		return ws, storeErr("get workspace", err)
	}
	return ws, nil
}

// ---- carriers ----

// IntegrationCarriers resolves the carrier adapter for a workspace's integration.
type IntegrationCarriers interface {
	Carrier(ctx context.Context, workspace, integrationID string) (carrier.Carrier, error)
}

func (s *Service) carrierFor(ctx context.Context, ws, name, integrationID string) (carrier.Carrier, error) {
	switch name {
	case "", "sandbox":
		if s.sandbox == nil {
			return nil, invalid("carrier", "the sandbox carrier is turned off on this gateway (sandbox: false)")
		}
		if integrationID != "" {
			return nil, invalid("integration_id", "the sandbox carrier takes no integration")
		}
		return s.sandboxC, nil
	case "twilio", "telnyx":
		if integrationID == "" {
			return nil, invalid("integration_id", "required for carrier %q: create one with POST /v1/integrations", name)
		}
		if s.opts.Integrations == nil {
			return nil, invalid("carrier", "carrier %q is not configured on this gateway", name)
		}
		c, err := s.opts.Integrations.Carrier(ctx, ws, integrationID)
		if err != nil {
			return nil, err
		}
		if c.Name() != name {
			return nil, invalid("integration_id", "integration %q is a %s integration, not %s", integrationID, c.Name(), name)
		}
		return c, nil
	default:
		return nil, invalid("carrier", "must be one of sandbox, twilio, telnyx")
	}
}

// isSandbox reports whether c is the sandbox carrier (as carrierFor returns it).
func (s *Service) isSandbox(c carrier.Carrier) bool {
	return s.sandboxC != nil && c == s.sandboxC
}

func (s *Service) callbackConfig() carrier.NumberConfig {
	base := s.opts.PublicURL
	if base == "" {
		return carrier.NumberConfig{}
	}
	return carrier.NumberConfig{
		VoiceURL: base + "/webhooks/twilio/voice", VoiceMethod: "POST",
		SMSURL: base + "/webhooks/twilio/sms", SMSMethod: "POST",
		StatusCallback: base + "/webhooks/twilio/status",
	}
}
