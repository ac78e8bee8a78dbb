package provisioning_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning"
)

func TestIntegrationTerminationAndRotation(t *testing.T) {
	n := newSettingsNodes(t)
	ctx := context.Background()
	s := n.a
	p := newWorkspace(t, s, "acme", 0)
	good := map[string]string{"account_sid": n.fake.AccountSID(), "auth_token": n.fake.AuthToken()}
	it, err := s.CreateIntegration(ctx, p, provisioning.IntegrationInput{Name: "tw", Carrier: "twilio", Credentials: good})
	if err != nil {
		t.Fatal(err)
	}
	if it.Termination != nil {
		t.Fatalf("a new integration has termination %+v", it.Termination)
	}
	got, err := s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{Termination: []byte(`{"uri":"SIP:Acme.PSTN.twilio.com","username":"trunk","password":"pa55-word"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if tm := got.Termination; tm == nil || strings.Join(tm.URIs, ",") != "sip:acme.pstn.twilio.com" || tm.Username != "trunk" || !tm.PasswordSet {
		t.Fatalf("termination %+v", got.Termination)
	}
	e, _ := s.Store().Integrations.Get(ctx, it.ID)
	if raw := string(e.Value()); strings.Contains(raw, "pa55-word") || strings.Contains(raw, `"trunk"`) {
		t.Fatalf("termination credentials stored in the clear: %s", raw)
	}
	shown, _ := n.b.GetIntegration(ctx, p, it.ID)
	if strings.Contains(asJSON(shown), "pa55-word") || shown.Termination == nil || shown.Termination.Username != "trunk" {
		t.Fatalf("GET on another node: %s", asJSON(shown))
	}
	list, _ := s.ListIntegrations(ctx, p)
	if len(list) != 1 || strings.Contains(asJSON(list), "pa55-word") || list[0].Termination == nil {
		t.Fatalf("list: %s", asJSON(list))
	}
	// Changing the URIs keeps the credentials.
	got, err = s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{Termination: []byte(`{"uris":["sip:a.pstn.twilio.com","sip:b.pstn.twilio.com"]}`)})
	if err != nil || len(got.Termination.URIs) != 2 || got.Termination.Username != "trunk" || !got.Termination.PasswordSet {
		t.Fatalf("after URIs change: %+v %v", got.Termination, err)
	}

	// Rotation: a rejected token saves nothing.
	before, _ := s.Store().Integrations.Get(ctx, it.ID)
	_, err = s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{Credentials: map[string]string{"account_sid": n.fake.AccountSID(), "auth_token": "wrongtoken123"}})
	if !errors.Is(err, provisioning.ErrInvalid) || strings.Join(fieldsOf(err), ",") != "credentials" {
		t.Fatalf("rejected rotation: %v", err)
	}
	after, _ := s.Store().Integrations.Get(ctx, it.ID)
	if after.Revision() != before.Revision() {
		t.Fatal("a rejected rotation wrote the integration")
	}
	if _, err := s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{Credentials: map[string]string{"api_key": "x"}}); !errors.Is(err, provisioning.ErrInvalid) {
		t.Fatalf("telnyx fields on a twilio integration: %v", err)
	}
	if _, err := s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{Credentials: good, Name: ptr("renamed")}); err != nil {
		t.Fatalf("valid rotation: %v", err)
	}
	if c, err := s.Carrier(ctx, "acme", it.ID); err != nil || c.ValidateCredentials(ctx) != nil {
		t.Fatalf("carrier after rotation: %v", err)
	}

	for _, tc := range []struct{ body, field string }{
		{`{"uri":"http://a.pstn.twilio.com"}`, "termination.uri"},
		{`{"uris":["sip:a.pstn.twilio.com","sip:a.pstn.twilio.com"]}`, "termination.uris[1]"},
		{`{"uri":"sip:a.example.com","uris":["sip:b.example.com"]}`, "termination.uri"},
		{`{"uris":[]}`, "termination.uri"},
		{`{"username":"only-user","password":""}`, "termination.password"},
		{`{"username":"a@b"}`, "termination.username"},
		{`{"host":"x"}`, "termination.host"},
	} {
		rev, _ := s.Store().Integrations.Get(ctx, it.ID)
		_, err := s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{Termination: []byte(tc.body)})
		if !errors.Is(err, provisioning.ErrInvalid) || !strings.Contains(strings.Join(fieldsOf(err), ","), tc.field) {
			t.Fatalf("termination %s: %v (fields %v); want 400 naming %s", tc.body, err, fieldsOf(err), tc.field)
		}
		if now, _ := s.Store().Integrations.Get(ctx, it.ID); now.Revision() != rev.Revision() {
			t.Fatalf("refused termination %s was written", tc.body)
		}
	}
	// Another workspace cannot see or change it; null removes termination.
	other := newWorkspace(t, s, "other", 0)
	if _, err := s.UpdateIntegration(ctx, other, it.ID, provisioning.IntegrationPatch{Name: ptr("mine")}); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("another workspace's patch: %v", err)
	}
	got, err = s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{Termination: []byte(`null`)})
	if err != nil || got.Termination != nil {
		t.Fatalf("after null: %+v %v", got.Termination, err)
	}
}
