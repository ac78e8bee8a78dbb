package provisioning

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/routing"
)

// Termination bounds.
const (
	MaxTerminationURIs  = 5
	maxTerminationCreds = 128
)

// Termination is an integration's SIP termination (outbound calls) as the
// API shows it: never the password.
type Termination struct {
	URIs        []string `json:"uris"`
	Username    string   `json:"username,omitempty"`
	PasswordSet bool     `json:"password_set"`
}

// terminationSecret is the sealed part of a termination.
type terminationSecret struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func terminationAD(id string) string { return "integration-termination:" + id }

// IntegrationPatch is the body of PATCH /v1/integrations/{id}.
type IntegrationPatch struct {
	Name *string `json:"name"`
	// Termination: an object (merged: uri/uris replace the URIs, username
	// and password replace theirs) or null (removed).
	Termination json.RawMessage `json:"termination"`
	// Credentials replace the carrier API credentials (same fields as
	// POST /v1/integrations), validated at the carrier before saving.
	Credentials map[string]string `json:"credentials"`
	// SRTP: "off" (or ""), "optional" or "required" (integrationsrtp.go).
	SRTP *string `json:"srtp"`
}

type terminationPatch struct {
	URI      *string   `json:"uri"`
	URIs     *[]string `json:"uris"`
	Username *string   `json:"username"`
	Password *string   `json:"password"`
}

// shown is the integration as the API shows it (termination username
// decrypted).
func (s *Service) shown(rec integrationRecord) Integration {
	in := rec.Integration
	if in.Termination != nil {
		t := *in.Termination
		t.Username = s.openTermination(rec).Username
		in.Termination = &t
	}
	return in
}

func (s *Service) openTermination(rec integrationRecord) terminationSecret {
	var ts terminationSecret
	if rec.SealedTermination == "" || s.opts.Box == nil {
		return ts
	}
	plain, err := s.opts.Box.OpenString(rec.SealedTermination, terminationAD(rec.ID))
	if err != nil || json.Unmarshal([]byte(plain), &ts) != nil {
		s.log.Warn("provisioning: integration termination credentials cannot be decrypted", "integration", rec.ID)
		return terminationSecret{}
	}
	return ts
}

// routingTermination is the data plane's view (decrypted).
func (s *Service) routingTermination(rec integrationRecord) routing.Termination {
	if rec.Termination == nil {
		return routing.Termination{}
	}
	ts := s.openTermination(rec)
	return routing.Termination{URIs: slices.Clone(rec.Termination.URIs), Username: ts.Username, Password: ts.Password}
}

// applyTermination merges a termination value of a PATCH body onto rec.
func (s *Service) applyTermination(v *ValidationError, box *secrets.Box, rec *integrationRecord, raw json.RawMessage) {
	if isNull(raw) {
		rec.Termination, rec.SealedTermination = nil, ""
		return
	}
	var p terminationPatch
	if !decodeStrict(v, "termination", raw, &p) {
		return
	}
	t := Termination{}
	if rec.Termination != nil {
		t.URIs = slices.Clone(rec.Termination.URIs)
	}
	ts := s.openTermination(*rec)
	if p.URI != nil && p.URIs != nil {
		v.Add("termination.uri", "give uri or uris, not both")
		return
	}
	var uris []string
	field := "termination.uris"
	switch {
	case p.URI != nil:
		uris, field = []string{*p.URI}, "termination.uri"
	case p.URIs != nil:
		uris = *p.URIs
	}
	if p.URI != nil || p.URIs != nil {
		if len(uris) > MaxTerminationURIs {
			v.Add(field, "at most %d URIs", MaxTerminationURIs)
			return
		}
		t.URIs = make([]string, 0, len(uris))
		for i, u := range uris {
			f := field
			if p.URIs != nil {
				f += "[" + strconv.Itoa(i) + "]"
			}
			c, err := s.CheckEndpoint(u)
			if err != nil {
				v.Add(f, "%v (e.g. sip:mytrunk.pstn.twilio.com)", err)
				continue
			}
			if slices.Contains(t.URIs, c) {
				v.Add(f, "listed twice")
				continue
			}
			t.URIs = append(t.URIs, c)
		}
	}
	if len(t.URIs) == 0 {
		v.Add("termination.uri", "required: the carrier's SIP termination URI, e.g. sip:mytrunk.pstn.twilio.com")
	}
	if p.Username != nil {
		ts.Username = *p.Username
	}
	if p.Password != nil {
		ts.Password = *p.Password
	}
	for name, val := range map[string]string{"username": ts.Username, "password": ts.Password} {
		if len(val) > maxTerminationCreds {
			v.Add("termination."+name, "must be at most %d characters", maxTerminationCreds)
		}
		if strings.ContainsFunc(val, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			v.Add("termination."+name, "must not hold control characters")
		}
	}
	if strings.ContainsAny(ts.Username, ":@ ") {
		v.Add("termination.username", "must not hold ':', '@' or spaces")
	}
	if (ts.Username == "") != (ts.Password == "") {
		v.Add("termination.password", "give both username and password (digest authentication) or neither (IP authentication)")
	}
	if v.Err() != nil {
		return
	}
	t.PasswordSet = ts.Password != ""
	rec.Termination = &t
	rec.SealedTermination = ""
	if ts.Username != "" {
		plain, _ := json.Marshal(ts)
		rec.SealedTermination = box.SealString(string(plain), terminationAD(rec.ID))
	}
}

// UpdateIntegration renames an integration, sets or removes its SIP
// termination and rotates its API credentials. New credentials are
// validated at the carrier first: when the carrier refuses them, nothing
// is saved.
func (s *Service) UpdateIntegration(ctx context.Context, p Principal, id string, patch IntegrationPatch) (Integration, error) {
	if patch.Name == nil && patch.Termination == nil && patch.Credentials == nil && patch.SRTP == nil {
		return Integration{}, invalid("body", "nothing to change: give name, termination, credentials and/or srtp")
	}
	box, err := s.box()
	if err != nil {
		return Integration{}, err
	}
	if _, _, err := s.integration(ctx, p.Workspace, id); err != nil {
		return Integration{}, err // not found, or not this workspace's
	}
	validated := false
	for attempt := 0; attempt < 20; attempt++ {
		var rec integrationRecord
		rev, err := getJSON(ctx, s.st.Integrations, id, &rec)
		if err != nil || rec.Workspace != p.Workspace {
			if err == nil || errors.Is(err, jetstream.ErrKeyNotFound) {
				return Integration{}, errorf(ErrNotFound, "integration %q not found", id)
			}
			return Integration{}, storeErr("update integration", err)
		}
		v := &ValidationError{}
		if patch.Name != nil {
			if n := strings.TrimSpace(*patch.Name); n == "" || len(*patch.Name) > 200 {
				v.Add("name", "must be 1 to 200 characters")
			} else {
				rec.Name = *patch.Name
			}
		}
		if patch.Termination != nil {
			s.applyTermination(v, box, &rec, patch.Termination)
		}
		if patch.Credentials != nil {
			checkCredentialFields(v, rec.Carrier, patch.Credentials)
		}
		if patch.SRTP != nil {
			applyIntegrationSRTP(v, &rec, *patch.SRTP)
		}
		if err := v.Err(); err != nil {
			return Integration{}, err
		}
		if patch.Credentials != nil {
			if !validated {
				if err := s.validateAtCarrier(ctx, rec.Carrier, patch.Credentials); err != nil {
					return Integration{}, err
				}
				validated = true
			}
			spec := credentialFields[rec.Carrier]
			hints := map[string]string{}
			for k, val := range patch.Credentials {
				if spec.secret[k] {
					hints[k] = secrets.Mask(val)
				} else {
					hints[k] = val
				}
			}
			plain, _ := json.Marshal(patch.Credentials)
			rec.Hints, rec.Sealed = hints, box.SealString(string(plain), rec.ID)
		}
		b, _ := json.Marshal(rec)
		if _, err := s.st.Integrations.Update(ctx, id, b, rev); err != nil {
			if isRevisionConflict(err) {
				continue
			}
			return Integration{}, storeErr("update integration", err)
		}
		return s.shown(rec), nil
	}
	return Integration{}, errorf(ErrConflict, "integration %q is changing too fast; retry", id)
}
