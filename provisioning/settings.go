package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nyaruka/phonenumbers"

	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/routing"
)

// Limit maxima (0 means no limit).
const (
	MaxConcurrentCallsLimit = 100000
	MaxCallsPerSecondLimit  = 10000
)

// Limits caps what a workspace may consume (0: no limit).
type Limits struct {
	MaxConcurrentCalls int `json:"max_concurrent_calls"`
	MaxCallsPerSecond  int `json:"max_calls_per_second"`
}

// Outbound is a workspace's destination policy for outbound calls.
type Outbound struct {
	AllowedCountries   []string `json:"allowed_countries"`
	AllowPremium       bool     `json:"allow_premium"`
	AllowSharedCost    bool     `json:"allow_shared_cost"`
	AllowUAN           bool     `json:"allow_uan"`
	MaxConcurrentCalls int      `json:"max_concurrent_calls"`
	MaxCallsPerSecond  int      `json:"max_calls_per_second"`
}

// WorkspaceSettings is GET/PATCH /v1/workspace. The webhook secret itself
// is never part of it.
type WorkspaceSettings struct {
	ID               string        `json:"id"`
	Name             string        `json:"name"`
	RoutingHook      *Hook         `json:"routing_hook"`
	Limits           Limits        `json:"limits"`
	Outbound         Outbound      `json:"outbound"`
	WebhookSecretSet bool          `json:"webhook_secret_set"`
	SIPHeaders       SIPHeaders    `json:"sip_headers"`
	Media            MediaSettings `json:"media"`
}

// workspaceRecord is how a workspace is stored in the workspaces bucket
// (the Workspace fields, then its settings).
type workspaceRecord struct {
	Workspace
	RoutingHook *Hook         `json:"routing_hook,omitempty"`
	Limits      Limits        `json:"limits"`
	Outbound    Outbound      `json:"outbound"`
	SIPHeaders  SIPHeaders    `json:"sip_headers"`
	Media       MediaSettings `json:"media"`
	// SealedWebhookSecret is the webhook secret, AES-256-GCM (provisioning/secrets),
	// associated data webhookSecretAD(id).
	SealedWebhookSecret string `json:"sealed_webhook_secret,omitempty"`
}

func (r *workspaceRecord) settings() WorkspaceSettings {
	o := r.Outbound
	if o.AllowedCountries == nil {
		o.AllowedCountries = []string{}
	}
	return WorkspaceSettings{ID: r.ID, Name: r.Name, RoutingHook: r.RoutingHook, Limits: r.Limits, Outbound: o, WebhookSecretSet: r.SealedWebhookSecret != "", SIPHeaders: r.SIPHeaders.view(), Media: r.Media}
}

func webhookSecretAD(ws string) string { return "workspace-webhook-secret:" + ws }

// WorkspacePatch is the body of PATCH /v1/workspace: a merge, absent
// fields stay; "routing_hook": null removes the hook.
type WorkspacePatch struct {
	Name        *string         `json:"name"`
	RoutingHook json.RawMessage `json:"routing_hook"`
	Limits      *struct {
		MaxConcurrentCalls *int `json:"max_concurrent_calls"`
		MaxCallsPerSecond  *int `json:"max_calls_per_second"`
	} `json:"limits"`
	Outbound *struct {
		AllowedCountries   *[]string `json:"allowed_countries"`
		AllowPremium       *bool     `json:"allow_premium"`
		AllowSharedCost    *bool     `json:"allow_shared_cost"`
		AllowUAN           *bool     `json:"allow_uan"`
		MaxConcurrentCalls *int      `json:"max_concurrent_calls"`
		MaxCallsPerSecond  *int      `json:"max_calls_per_second"`
	} `json:"outbound"`
	SIPHeaders *sipHeadersPatch `json:"sip_headers"`
	Media      *mediaPatch      `json:"media"`
}

func checkLimit(v *ValidationError, field string, n *int, max int, dst *int) {
	if n == nil {
		return
	}
	if *n < 0 || *n > max {
		v.Add(field, "must be between 0 (no limit) and %d", max)
		return
	}
	*dst = *n
}

// checkCountries validates ISO 3166 alpha-2 codes (those libphonenumber
// knows) and returns them upper-cased, sorted, without duplicates.
func checkCountries(v *ValidationError, field string, cs []string) []string {
	if len(cs) > 250 {
		v.Add(field, "at most 250 countries")
		return nil
	}
	known := phonenumbers.GetSupportedRegions()
	seen := map[string]bool{}
	out := []string{}
	for i, c := range cs {
		u := strings.ToUpper(strings.TrimSpace(c))
		if len(u) != 2 || !known[u] {
			v.Add(field+"["+strconv.Itoa(i)+"]", "%q is not an ISO 3166 alpha-2 country code with phone numbers (e.g. US, GB)", clipString(c, 20))
			continue
		}
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	sort.Strings(out)
	return out
}

func clipString(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

func (p *WorkspacePatch) apply(v *ValidationError, rec *workspaceRecord) {
	if p.Name != nil {
		if n := strings.TrimSpace(*p.Name); n == "" || len(*p.Name) > 200 {
			v.Add("name", "must be 1 to 200 characters")
		} else {
			rec.Name = *p.Name
		}
	}
	if p.RoutingHook != nil {
		rec.RoutingHook = applyHookPatch(v, "routing_hook", rec.RoutingHook, p.RoutingHook)
	}
	if l := p.Limits; l != nil {
		checkLimit(v, "limits.max_concurrent_calls", l.MaxConcurrentCalls, MaxConcurrentCallsLimit, &rec.Limits.MaxConcurrentCalls)
		checkLimit(v, "limits.max_calls_per_second", l.MaxCallsPerSecond, MaxCallsPerSecondLimit, &rec.Limits.MaxCallsPerSecond)
	}
	if o := p.Outbound; o != nil {
		if o.AllowedCountries != nil {
			rec.Outbound.AllowedCountries = checkCountries(v, "outbound.allowed_countries", *o.AllowedCountries)
		}
		for _, b := range []struct {
			in  *bool
			dst *bool
		}{{o.AllowPremium, &rec.Outbound.AllowPremium}, {o.AllowSharedCost, &rec.Outbound.AllowSharedCost}, {o.AllowUAN, &rec.Outbound.AllowUAN}} {
			if b.in != nil {
				*b.dst = *b.in
			}
		}
		checkLimit(v, "outbound.max_concurrent_calls", o.MaxConcurrentCalls, MaxConcurrentCallsLimit, &rec.Outbound.MaxConcurrentCalls)
		checkLimit(v, "outbound.max_calls_per_second", o.MaxCallsPerSecond, MaxCallsPerSecondLimit, &rec.Outbound.MaxCallsPerSecond)
	}
	if p.SIPHeaders != nil {
		p.SIPHeaders.apply(v, &rec.SIPHeaders)
	}
	if p.Media != nil && p.Media.AllowMixedSRTP != nil {
		rec.Media.AllowMixedSRTP = *p.Media.AllowMixedSRTP
	}
}

func (s *Service) workspaceRecord(ctx context.Context, id string) (workspaceRecord, uint64, error) {
	var rec workspaceRecord
	if !ValidID(id) {
		return rec, 0, errorf(ErrNotFound, "workspace %q not found", id)
	}
	rev, err := getJSON(ctx, s.st.Workspaces, id, &rec)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return rec, 0, errorf(ErrNotFound, "workspace %q not found", id)
		}
		return rec, 0, storeErr("get workspace", err)
	}
	return rec, rev, nil
}

// GetWorkspaceSettings returns a workspace's settings.
func (s *Service) GetWorkspaceSettings(ctx context.Context, id string) (WorkspaceSettings, error) {
	rec, _, err := s.workspaceRecord(ctx, id)
	if err != nil {
		return WorkspaceSettings{}, err
	}
	return rec.settings(), nil
}

// UpdateWorkspaceSettings merges p into workspace id's settings (by
// compare-and-set: concurrent patches of different fields both apply).
// Nothing is written when a field is invalid.
func (s *Service) UpdateWorkspaceSettings(ctx context.Context, id string, p WorkspacePatch) (WorkspaceSettings, error) {
	for attempt := 0; attempt < 20; attempt++ {
		rec, rev, err := s.workspaceRecord(ctx, id)
		if err != nil {
			return WorkspaceSettings{}, err
		}
		v := &ValidationError{}
		p.apply(v, &rec)
		if err := v.Err(); err != nil {
			return WorkspaceSettings{}, err
		}
		b, _ := json.Marshal(rec)
		if _, err := s.st.Workspaces.Update(ctx, id, b, rev); err != nil {
			if isRevisionConflict(err) {
				continue
			}
			return WorkspaceSettings{}, storeErr("update workspace", err)
		}
		return rec.settings(), nil
	}
	return WorkspaceSettings{}, errorf(ErrConflict, "workspace %q is changing too fast; retry", id)
}

// newWebhookSecret returns a fresh secret: "whsec_" and 32 random bytes
// in hex.
func newWebhookSecret() string {
	return "whsec_" + randomToken("") + randomToken("")[:16]
}

// RotateWebhookSecret replaces workspace id's webhook secret and returns
// the new one (the only time it is shown). Needs the secret box.
func (s *Service) RotateWebhookSecret(ctx context.Context, id string) (string, error) {
	box, err := s.box()
	if err != nil {
		return "", err
	}
	secret := newWebhookSecret()
	for attempt := 0; attempt < 20; attempt++ {
		rec, rev, err := s.workspaceRecord(ctx, id)
		if err != nil {
			return "", err
		}
		rec.SealedWebhookSecret = box.SealString(secret, webhookSecretAD(id))
		b, _ := json.Marshal(rec)
		if _, err := s.st.Workspaces.Update(ctx, id, b, rev); err != nil {
			if isRevisionConflict(err) {
				continue
			}
			return "", storeErr("rotate webhook secret", err)
		}
		return secret, nil
	}
	return "", errorf(ErrConflict, "workspace %q is changing too fast; retry", id)
}

// sealNewWebhookSecret returns a new sealed secret for workspace id, or ""
// when the service has no secret box (tests without one).
func (s *Service) sealNewWebhookSecret(id string) string {
	if s.opts.Box == nil {
		return ""
	}
	return s.opts.Box.SealString(newWebhookSecret(), webhookSecretAD(id))
}

// EnsureWebhookSecrets gives every workspace without a webhook secret one
// (workspaces created before secrets existed), so that what callgate
// sends is always signed. Safe to run on several nodes at once (CAS). It
// returns how many workspaces it changed.
func (s *Service) EnsureWebhookSecrets(ctx context.Context) (int, error) {
	if s.opts.Box == nil {
		return 0, nil
	}
	var ids []string
	err := s.scanKV(ctx, s.st.Workspaces, func(e jetstream.KeyValueEntry) error {
		var r workspaceRecord
		// The bucket holds other keys too (_meta.secret_check): only
		// workspace ids count.
		if ValidID(e.Key()) && json.Unmarshal(e.Value(), &r) == nil && r.SealedWebhookSecret == "" {
			ids = append(ids, e.Key())
		}
		return nil
	})
	if err != nil {
		return 0, storeErr("list workspaces", err)
	}
	changed := 0
	for _, id := range ids {
		for attempt := 0; attempt < 20; attempt++ {
			rec, rev, err := s.workspaceRecord(ctx, id)
			if err != nil {
				return changed, err
			}
			if rec.SealedWebhookSecret != "" {
				break
			}
			rec.SealedWebhookSecret = s.sealNewWebhookSecret(id)
			b, _ := json.Marshal(rec)
			if _, err := s.st.Workspaces.Update(ctx, id, b, rev); err != nil {
				if isRevisionConflict(err) {
					continue
				}
				return changed, storeErr("set webhook secret", err)
			}
			changed++
			break
		}
	}
	return changed, nil
}

// WorkspaceDecoder turns a stored workspace record into the data plane's
// view (decrypting its webhook secret). Nil: workspaces are not part of
// the snapshot.
type WorkspaceDecoder func(key string, value []byte) (routing.Workspace, bool)

// DecodeWorkspace is the Syncer's WorkspaceDecoder.
func (s *Service) DecodeWorkspace(key string, value []byte) (routing.Workspace, bool) {
	return decodeWorkspace(s.opts.Box, s.log, key, value)
}

// decodeWorkspace decodes a stored workspace; with a nil box the secret
// is left out.
func decodeWorkspace(box *secrets.Box, log *slog.Logger, key string, value []byte) (routing.Workspace, bool) {
	var rec workspaceRecord
	if json.Unmarshal(value, &rec) != nil {
		return routing.Workspace{}, false
	}
	if rec.ID == "" {
		rec.ID = key
	}
	w := routing.Workspace{
		ID:   rec.ID,
		Hook: rec.RoutingHook.routing(),
		Limits: routing.Limits{
			MaxConcurrentCalls: rec.Limits.MaxConcurrentCalls,
			MaxCallsPerSecond:  rec.Limits.MaxCallsPerSecond,
		},
		Outbound: routing.Outbound{
			AllowedCountries: append([]string(nil), rec.Outbound.AllowedCountries...),
			AllowPremium:     rec.Outbound.AllowPremium, AllowSharedCost: rec.Outbound.AllowSharedCost, AllowUAN: rec.Outbound.AllowUAN,
			MaxConcurrentCalls: rec.Outbound.MaxConcurrentCalls, MaxCallsPerSecond: rec.Outbound.MaxCallsPerSecond,
		},
		Headers:        rec.SIPHeaders.routing(),
		AllowMixedSRTP: rec.Media.AllowMixedSRTP,
	}
	if rec.SealedWebhookSecret != "" && box != nil {
		secret, err := box.OpenString(rec.SealedWebhookSecret, webhookSecretAD(rec.ID))
		if err != nil {
			log.Warn("provisioning: workspace webhook secret cannot be decrypted (was secret_key changed?); deliveries go unsigned until it is rotated", "workspace", rec.ID)
		} else {
			w.WebhookSecret = secret
		}
	}
	return w, true
}
