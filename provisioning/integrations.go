package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/routing"
)

// CarrierSettings are the gateway-wide carrier API settings.
type CarrierSettings struct {
	TwilioAPIBase string
	TwilioEdge    string
	TelnyxAPIBase string
	HTTPClient    *http.Client
	Metrics       *carrier.Metrics
	Timeout       time.Duration
}

// IntegrationInput is the body of POST /v1/integrations.
type IntegrationInput struct {
	Name        string            `json:"name"`
	Carrier     string            `json:"carrier"`
	Credentials map[string]string `json:"credentials"`
}

// Integration is a workspace's carrier account. Secrets are never part
// of it: Hints shows a masked form.
type Integration struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Carrier   string            `json:"carrier"`
	Hints     map[string]string `json:"credentials"`
	CreatedAt time.Time         `json:"created_at"`
	// Termination is where outbound calls leave (integrationpatch.go);
	// its username is filled in when shown, stored sealed.
	Termination *Termination `json:"termination,omitempty"`
	// SRTP is the secure media policy of calls from this carrier account
	// ("", optional, required; integrationsrtp.go).
	SRTP string `json:"srtp,omitempty"`
}

type integrationRecord struct {
	Integration
	Workspace string `json:"workspace"`
	Sealed    string `json:"sealed_credentials"` // AES-256-GCM, AD = integration id
	// SealedTermination is the termination's digest username and
	// password, AES-256-GCM, AD = terminationAD(id).
	SealedTermination string `json:"sealed_termination,omitempty"`
}

var credentialFields = map[string]struct {
	required, optional []string
	secret             map[string]bool
}{
	"twilio": {required: []string{"account_sid", "auth_token"}, secret: map[string]bool{"auth_token": true}},
	"telnyx": {required: []string{"api_key"}, optional: []string{"public_key", "connection_id", "messaging_profile_id"}, secret: map[string]bool{"api_key": true}},
}

func (s *Service) box() (*secrets.Box, error) {
	if s.opts.Box == nil {
		return nil, errors.New("integrations: no secret key configured")
	}
	return s.opts.Box, nil
}

// CreateIntegration validates the credentials at the carrier and saves
// them encrypted. A failed validation saves nothing.
func (s *Service) CreateIntegration(ctx context.Context, p Principal, in IntegrationInput) (Integration, error) {
	v := &ValidationError{}
	if strings.TrimSpace(in.Name) == "" {
		v.Add("name", "required")
	} else if len(in.Name) > 200 {
		v.Add("name", "must be at most 200 characters")
	}
	spec, ok := credentialFields[in.Carrier]
	if !ok {
		v.Add("carrier", "must be twilio or telnyx")
	} else {
		checkCredentialFields(v, in.Carrier, in.Credentials)
	}
	if err := v.Err(); err != nil {
		return Integration{}, err
	}
	if err := s.validateAtCarrier(ctx, in.Carrier, in.Credentials); err != nil {
		return Integration{}, err
	}
	box, err := s.box()
	if err != nil {
		return Integration{}, err
	}
	id := "int_" + randomToken("")[:20]
	hints := map[string]string{}
	for k, val := range in.Credentials {
		if spec.secret[k] {
			hints[k] = secrets.Mask(val)
		} else {
			hints[k] = val
		}
	}
	plain, _ := json.Marshal(in.Credentials)
	rec := integrationRecord{
		Integration: Integration{ID: id, Name: in.Name, Carrier: in.Carrier, Hints: hints, CreatedAt: s.now().UTC()},
		Workspace:   p.Workspace,
		Sealed:      box.SealString(string(plain), id),
	}
	ref, err := s.indexAdd(ctx, indexIntegrations, p.Workspace, id)
	if err != nil {
		return Integration{}, err
	}
	b, _ := json.Marshal(rec)
	if _, err := s.st.Integrations.Create(ctx, id, b); err != nil {
		s.indexUndo(ctx, ref)
		return Integration{}, storeErr("save integration", err)
	}
	return rec.Integration, nil
}

// checkCredentialFields checks the credential names of a carrier.
func checkCredentialFields(v *ValidationError, carrierName string, creds map[string]string) {
	spec := credentialFields[carrierName]
	allowed := map[string]bool{}
	for _, f := range spec.required {
		allowed[f] = true
		if strings.TrimSpace(creds[f]) == "" {
			v.Add("credentials."+f, "required for %s", carrierName)
		}
	}
	for _, f := range spec.optional {
		allowed[f] = true
	}
	for k := range creds {
		if !allowed[k] {
			v.Add("credentials."+k, "unknown credential for %s", carrierName)
		}
	}
}

// validateAtCarrier asks the carrier whether creds are good.
func (s *Service) validateAtCarrier(ctx context.Context, carrierName string, creds map[string]string) error {
	c, err := s.buildCarrier(carrierName, creds)
	if err != nil {
		return err
	}
	if err := c.ValidateCredentials(ctx); err != nil {
		if errors.Is(err, carrier.ErrCredentialsRejected) {
			return invalid("credentials", "credentials rejected by %s: check them in the %s console (nothing was saved)", carrierTitle(carrierName), carrierTitle(carrierName))
		}
		return err
	}
	return nil
}

func carrierTitle(c string) string {
	switch c {
	case "twilio":
		return "Twilio"
	case "telnyx":
		return "Telnyx"
	}
	return c
}

func (s *Service) buildCarrier(name string, creds map[string]string) (carrier.Carrier, error) {
	cs := s.opts.Carriers
	var c carrier.Carrier
	switch name {
	case "twilio":
		cfg := twilio.Config{AccountSID: creds["account_sid"], AuthToken: creds["auth_token"], APIBase: cs.TwilioAPIBase, Edge: cs.TwilioEdge, HTTPClient: cs.HTTPClient, Timeout: cs.Timeout}
		if err := cfg.Validate(); err != nil {
			return nil, invalid("credentials", "%v", err)
		}
		tc, err := twilio.New(cfg)
		if err != nil {
			return nil, invalid("credentials", "%v", err)
		}
		c = tc
	case "telnyx":
		cfg := telnyx.Config{APIKey: creds["api_key"], APIBase: cs.TelnyxAPIBase, ConnectionID: creds["connection_id"], MessagingProfileID: creds["messaging_profile_id"], HTTPClient: cs.HTTPClient, Timeout: cs.Timeout}
		if err := cfg.Validate(); err != nil {
			return nil, invalid("credentials", "%v", err)
		}
		tc, err := telnyx.New(cfg)
		if err != nil {
			return nil, invalid("credentials", "%v", err)
		}
		c = tc
	default:
		return nil, invalid("carrier", "must be twilio or telnyx")
	}
	if cs.Metrics != nil {
		c = carrier.Instrument(c, cs.Metrics)
	}
	return c, nil
}

func (s *Service) integration(ctx context.Context, ws, id string) (integrationRecord, map[string]string, error) {
	var rec integrationRecord
	if !ValidID(id) { // before any store access: not every string is a NATS key
		return rec, nil, errorf(ErrNotFound, "integration %q not found", id)
	}
	if _, err := getJSON(ctx, s.st.Integrations, id, &rec); err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return rec, nil, errorf(ErrNotFound, "integration %q not found", id)
		}
		return rec, nil, storeErr("get integration", err)
	}
	if rec.Workspace != ws {
		return rec, nil, errorf(ErrNotFound, "integration %q not found", id)
	}
	box, err := s.box()
	if err != nil {
		return rec, nil, err
	}
	plain, err := box.OpenString(rec.Sealed, rec.ID)
	if err != nil {
		return rec, nil, fmt.Errorf("integration %s: credentials cannot be decrypted (was secret_key changed?): %w", id, err)
	}
	creds := map[string]string{}
	if err := json.Unmarshal([]byte(plain), &creds); err != nil {
		return rec, nil, fmt.Errorf("integration %s: %w", id, err)
	}
	return rec, creds, nil
}

// Carrier implements IntegrationCarriers.
func (s *Service) Carrier(ctx context.Context, ws, id string) (carrier.Carrier, error) {
	rec, creds, err := s.integration(ctx, ws, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, invalid("integration_id", "integration %q does not exist in this workspace", id)
		}
		return nil, err
	}
	return s.buildCarrier(rec.Carrier, creds)
}

// IntegrationAPIKey returns a Telnyx integration's API key (Call Control).
func (s *Service) IntegrationAPIKey(ctx context.Context, id string) (string, error) {
	var rec integrationRecord
	if !ValidID(id) {
		return "", errorf(ErrNotFound, "integration %q not found", id)
	}
	if _, err := getJSON(ctx, s.st.Integrations, id, &rec); err != nil {
		return "", err
	}
	_, creds, err := s.integration(ctx, rec.Workspace, id)
	if err != nil {
		return "", err
	}
	return creds["api_key"], nil
}

// DecodeIntegration is the Syncer's IntegrationDecoder: the data plane
// gets the webhook secrets (decrypted, in memory only).
func (s *Service) DecodeIntegration(key string, value []byte) (routing.Integration, bool) {
	var rec integrationRecord
	if json.Unmarshal(value, &rec) != nil || s.opts.Box == nil {
		return routing.Integration{}, false
	}
	plain, err := s.opts.Box.OpenString(rec.Sealed, rec.ID)
	if err != nil {
		s.log.Warn("provisioning: integration credentials cannot be decrypted", "integration", rec.ID)
		return routing.Integration{}, false
	}
	creds := map[string]string{}
	if json.Unmarshal([]byte(plain), &creds) != nil {
		return routing.Integration{}, false
	}
	return routing.Integration{ID: rec.ID, Workspace: rec.Workspace, Carrier: rec.Carrier,
		AccountID: creds["account_sid"], AuthToken: creds["auth_token"], PublicKey: creds["public_key"],
		Termination: s.routingTermination(rec), SRTP: rec.SRTP}, true
}

// ListIntegrations lists the workspace's integrations (masked), reading
// only the workspace's own (index.go).
func (s *Service) ListIntegrations(ctx context.Context, p Principal) ([]Integration, error) {
	ids, err := s.indexed(ctx, indexIntegrations, p.Workspace)
	if err != nil {
		return nil, err
	}
	out := []Integration{}
	err = getEach(ctx, s.st.Integrations, ids, func(e jetstream.KeyValueEntry) error {
		var rec integrationRecord
		if json.Unmarshal(e.Value(), &rec) == nil && rec.Workspace == p.Workspace {
			out = append(out, s.shown(rec))
		}
		return nil
	})
	if err != nil {
		return nil, storeErr("list integrations", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}

// GetIntegration returns one integration (masked).
func (s *Service) GetIntegration(ctx context.Context, p Principal, id string) (Integration, error) {
	rec, _, err := s.integration(ctx, p.Workspace, id)
	return s.shown(rec), err
}

// DeleteIntegration removes an integration no number depends on.
func (s *Service) DeleteIntegration(ctx context.Context, p Principal, id string) error {
	if _, _, err := s.integration(ctx, p.Workspace, id); err != nil {
		return err
	}
	nums, err := s.ListNumbers(ctx, p)
	if err != nil {
		return err
	}
	var using []string
	for _, n := range nums {
		if n.IntegrationID == id {
			using = append(using, n.PhoneNumber)
		}
	}
	if len(using) > 0 {
		return errorf(ErrConflict, "integration %s still has %d number(s) in callgate (%s); release them first", id, len(using), strings.Join(using, ", "))
	}
	irev := s.indexStampOf(ctx, indexIntegrations, p.Workspace, id)
	if err := s.st.Integrations.Delete(ctx, id); err != nil {
		return storeErr("delete integration", err)
	}
	s.indexRemove(ctx, indexIntegrations, p.Workspace, id, irev)
	return nil
}

// ImportableNumber is a number on the carrier account.
type ImportableNumber struct {
	PhoneNumber string               `json:"phone_number"`
	Features    carrier.Features     `json:"features"`
	Config      carrier.NumberConfig `json:"current_settings"`
	Importable  bool                 `json:"importable"`
	Reason      string               `json:"reason,omitempty"`
}

// IntegrationNumbers lists the account's numbers and whether each can be imported.
func (s *Service) IntegrationNumbers(ctx context.Context, p Principal, id string) ([]ImportableNumber, error) {
	c, err := s.integrationCarrier(ctx, p, id)
	if err != nil {
		return nil, err
	}
	owned, err := c.ListOwned(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ImportableNumber, 0, len(owned))
	for _, o := range owned {
		n := ImportableNumber{PhoneNumber: o.PhoneNumber, Features: o.Features, Config: o.Config, Importable: true}
		if taken, err := s.isOwned(ctx, o.PhoneNumber); err != nil {
			return nil, err
		} else if taken {
			n.Importable, n.Reason = false, "already in callgate"
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PhoneNumber < out[j].PhoneNumber })
	return out, nil
}

func (s *Service) integrationCarrier(ctx context.Context, p Principal, id string) (carrier.Carrier, error) {
	rec, creds, err := s.integration(ctx, p.Workspace, id)
	if err != nil {
		return nil, err
	}
	return s.buildCarrier(rec.Carrier, creds)
}

// ImportRequest is the body of POST /v1/integrations/{id}/import.
type ImportRequest struct {
	PhoneNumbers []string `json:"phone_numbers"`
	WebhookMode  string   `json:"webhook_mode"`
	AgentID      string   `json:"agent_id,omitempty"`
}

// ImportResult is the outcome for one number.
type ImportResult struct {
	PhoneNumber string  `json:"phone_number"`
	Status      string  `json:"status"` // imported, failed
	Error       string  `json:"error,omitempty"`
	Number      *Number `json:"number,omitempty"`
}

// Import brings numbers the customer owns at the carrier into callgate.
// outbound_only changes nothing on the carrier account; full_control
// records the number's settings, then points it at callgate. Imported
// numbers cost no credits.
func (s *Service) Import(ctx context.Context, p Principal, id string, r ImportRequest) ([]ImportResult, error) {
	v := &ValidationError{}
	if len(r.PhoneNumbers) == 0 {
		v.Add("phone_numbers", "at least one number is required")
	}
	if len(r.PhoneNumbers) > 100 {
		v.Add("phone_numbers", "at most 100 numbers per request")
	}
	if r.WebhookMode == "" {
		r.WebhookMode = WebhookOutboundOnly
	}
	if r.WebhookMode != WebhookOutboundOnly && r.WebhookMode != WebhookFullControl {
		v.Add("webhook_mode", "must be outbound_only or full_control")
	}
	norm := make([]string, len(r.PhoneNumbers))
	for i, raw := range r.PhoneNumbers {
		e, err := phone.Normalize(raw, "")
		if err != nil {
			v.Add(fmt.Sprintf("phone_numbers[%d]", i), "%v", err)
		}
		norm[i] = e
	}
	if r.AgentID != "" {
		if _, err := s.GetAgent(ctx, p, r.AgentID); err != nil {
			v.Add("agent_id", "agent %q does not exist in this workspace", r.AgentID)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	rec, creds, err := s.integration(ctx, p.Workspace, id)
	if err != nil {
		return nil, err
	}
	c, err := s.buildCarrier(rec.Carrier, creds)
	if err != nil {
		return nil, err
	}
	target := s.callbackConfig()
	if rec.Carrier == "telnyx" {
		target = carrier.NumberConfig{ConnectionID: creds["connection_id"], MessagingProfileID: creds["messaging_profile_id"]}
		if r.WebhookMode == WebhookFullControl && target.ConnectionID == "" {
			return nil, invalid("webhook_mode", "full_control on Telnyx needs connection_id (and messaging_profile_id) in the integration's credentials: the connection that points at callgate")
		}
	} else if r.WebhookMode == WebhookFullControl && target.VoiceURL == "" {
		return nil, invalid("webhook_mode", "full_control needs public_url set on the gateway, so the carrier can reach its webhooks")
	}
	owned, err := c.ListOwned(ctx)
	if err != nil {
		return nil, err
	}
	onAccount := map[string]carrier.OwnedNumber{}
	for _, o := range owned {
		onAccount[o.PhoneNumber] = o
	}
	results := make([]ImportResult, len(norm))
	for i, e164 := range norm {
		results[i] = s.importOne(ctx, p, rec, c, e164, onAccount, r, target)
		s.m.op("import", map[bool]string{true: "ok", false: "error"}[results[i].Status == "imported"])
	}
	return results, nil
}

func (s *Service) importOne(ctx context.Context, p Principal, in integrationRecord, c carrier.Carrier, e164 string, onAccount map[string]carrier.OwnedNumber, r ImportRequest, target carrier.NumberConfig) ImportResult {
	res := ImportResult{PhoneNumber: e164, Status: "failed"}
	o, ok := onAccount[e164]
	if !ok {
		res.Error = fmt.Sprintf("%s is not on this %s account", e164, carrierTitle(in.Carrier))
		return res
	}
	info, _ := phone.Describe(e164)
	now := s.now().UTC()
	rec := numberRecord{
		Number: Number{
			PhoneNumber: e164, Country: info.Country, Region: info.Region, Type: info.Type, Features: o.Features,
			Carrier: in.Carrier, Origin: routing.OriginImported, Status: StatusPending, AgentID: r.AgentID,
			WebhookMode: r.WebhookMode, IntegrationID: in.ID, CarrierID: o.CarrierID, PurchasedAt: now,
		},
		WorkspaceID: p.Workspace, ClaimedAt: now,
	}
	ref, err := s.indexAdd(ctx, indexNumbers, p.Workspace, numberKey(e164))
	if err != nil {
		res.Error = err.Error()
		return res
	}
	b, _ := json.Marshal(rec)
	rev, err := s.st.Numbers.Create(ctx, numberKey(e164), b)
	if err != nil {
		s.indexUndo(ctx, ref)
		if errors.Is(err, jetstream.ErrKeyExists) {
			res.Error = e164 + " is already in callgate"
		} else {
			res.Error = storeErr("claim number", err).Error()
		}
		return res
	}
	if r.AgentID != "" {
		// As in purchase: the claim names the agent; give up if it
		// began to be deleted meanwhile (DeleteAgent sees claims).
		if err := s.assignableAgent(ctx, p.Workspace, r.AgentID); err != nil {
			s.unclaimImport(ctx, p.Workspace, ref, e164, rev)
			res.Error = err.Error()
			return res
		}
	}
	if r.WebhookMode == WebhookFullControl {
		prev, err := c.Configure(ctx, e164, target)
		if err != nil {
			s.unclaimImport(ctx, p.Workspace, ref, e164, rev)
			res.Error = "the carrier did not accept the new settings: " + err.Error()
			return res
		}
		rec.Previous = &prev
	}
	rec.Status = routing.StatusActive
	b, _ = json.Marshal(rec)
	if _, err := s.st.Numbers.Update(context.WithoutCancel(ctx), numberKey(e164), b, rev); err != nil {
		if rec.Previous != nil {
			_, _ = c.Configure(context.WithoutCancel(ctx), e164, *rec.Previous)
		}
		if s.st.Numbers.Delete(context.WithoutCancel(ctx), numberKey(e164)) == nil {
			s.indexRemove(ctx, indexNumbers, p.Workspace, numberKey(e164), ref.stamp)
		}
		res.Error = storeErr("commit import", err).Error()
		return res
	}
	n := rec.number()
	res.Status, res.Number = "imported", &n
	s.log.Info("provisioning: number imported", "workspace", p.Workspace, "number", phone.Mask(e164), "carrier", in.Carrier, "mode", r.WebhookMode)
	return res
}

// unclaimImport deletes the claim of an import that did not go through
// (at rev) and then its index entry.
func (s *Service) unclaimImport(ctx context.Context, ws string, ref indexRef, e164 string, rev uint64) {
	if s.st.Numbers.Delete(context.WithoutCancel(ctx), numberKey(e164), jetstream.LastRevision(rev)) == nil {
		s.indexRemove(ctx, indexNumbers, ws, numberKey(e164), ref.stamp)
	}
}
