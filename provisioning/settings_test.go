package provisioning_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
	"github.com/callgate/callgate/provisioning/secrets"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

// settingsNodes are two services (two nodes) on one external JetStream
// server, sharing the secret key, with Twilio integrations pointed at a
// fake Twilio account.
type settingsNodes struct {
	a, b *provisioning.Service
	fake *twiliofake.Server
}

func newSettingsNodes(t testing.TB) settingsNodes {
	t.Helper()
	srv := storetest.RunJetStreamServer(t)
	fk := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+14155550101", Voice: true, SMS: true}}})
	box, err := secrets.NewBox(secrets.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	open := func() *provisioning.Service {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := store.Open(ctx, store.Config{URL: srv.ClientURL()}, t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return provisioning.New(st, provisioning.Options{Sandbox: true, Box: box, Carriers: provisioning.CarrierSettings{TwilioAPIBase: fk.URL()}})
	}
	return settingsNodes{a: open(), b: open(), fake: fk}
}

func ptr[T any](v T) *T { return &v }

func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func mustPatch(t *testing.T, s *provisioning.Service, ws string, p provisioning.WorkspacePatch) provisioning.WorkspaceSettings {
	t.Helper()
	out, err := s.UpdateWorkspaceSettings(context.Background(), ws, p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fieldOf returns the single field a validation error names.
func fieldsOf(err error) []string {
	var v *provisioning.ValidationError
	if !errors.As(err, &v) {
		return nil
	}
	var out []string
	for _, f := range v.Fields {
		out = append(out, f.Field)
	}
	return out
}

func TestWorkspaceSettingsMergeAndDefaults(t *testing.T) {
	n := newSettingsNodes(t)
	ctx := context.Background()
	s := n.a
	newWorkspace(t, s, "acme", 0)
	got, err := s.GetWorkspaceSettings(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got.RoutingHook != nil || got.Limits != (provisioning.Limits{}) || len(got.Outbound.AllowedCountries) != 0 || !got.WebhookSecretSet {
		t.Fatalf("new workspace settings: %+v; want no hook, no limits, a webhook secret", got)
	}
	// A hook with only a URL takes the defaults.
	got = mustPatch(t, s, "acme", provisioning.WorkspacePatch{RoutingHook: []byte(`{"url":"https://hooks.example.com/route"}`)})
	if h := got.RoutingHook; h == nil || h.URL != "https://hooks.example.com/route" || h.TimeoutMS != 1500 || h.OnFailure != "static" {
		t.Fatalf("hook %+v; want the URL with timeout 1500 and static", h)
	}
	// A later patch of other fields keeps the hook; a hook patch merges.
	got = mustPatch(t, s, "acme", provisioning.WorkspacePatch{RoutingHook: []byte(`{"on_failure":"reject"}`), Outbound: &struct {
		AllowedCountries   *[]string `json:"allowed_countries"`
		AllowPremium       *bool     `json:"allow_premium"`
		AllowSharedCost    *bool     `json:"allow_shared_cost"`
		AllowUAN           *bool     `json:"allow_uan"`
		MaxConcurrentCalls *int      `json:"max_concurrent_calls"`
		MaxCallsPerSecond  *int      `json:"max_calls_per_second"`
	}{AllowedCountries: &[]string{"ca", "US", "us"}, AllowPremium: ptr(true), MaxCallsPerSecond: ptr(3)}})
	if h := got.RoutingHook; h == nil || h.URL != "https://hooks.example.com/route" || h.OnFailure != "reject" {
		t.Fatalf("hook after merge: %+v", h)
	}
	if o := got.Outbound; strings.Join(o.AllowedCountries, ",") != "CA,US" || !o.AllowPremium || o.AllowUAN || o.MaxCallsPerSecond != 3 {
		t.Fatalf("outbound %+v; want CA,US (upper-cased, once), premium, 3/s", o)
	}
	got = mustPatch(t, s, "acme", provisioning.WorkspacePatch{Name: ptr("Acme Inc")})
	if got.RoutingHook == nil || got.Outbound.MaxCallsPerSecond != 3 || got.Name != "Acme Inc" {
		t.Fatalf("a name patch changed other settings: %+v", got)
	}
	// null removes the hook.
	got = mustPatch(t, s, "acme", provisioning.WorkspacePatch{RoutingHook: []byte(` null `)})
	if got.RoutingHook != nil {
		t.Fatalf("hook after null: %+v", got.RoutingHook)
	}
	if _, err := s.GetWorkspaceSettings(ctx, "nobody"); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("unknown workspace: %v", err)
	}
	if _, err := s.GetWorkspaceSettings(ctx, "bad.id>"); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("bad workspace id: %v", err)
	}
}

func TestWorkspaceSettingsInvalidWritesNothing(t *testing.T) {
	n := newSettingsNodes(t)
	ctx := context.Background()
	s := n.a
	newWorkspace(t, s, "acme", 0)
	before := mustPatch(t, s, "acme", provisioning.WorkspacePatch{RoutingHook: []byte(`{"url":"https://ok.example.com/"}`)})
	limits := func(c, r *int) provisioning.WorkspacePatch {
		p := provisioning.WorkspacePatch{}
		p.Limits = &struct {
			MaxConcurrentCalls *int `json:"max_concurrent_calls"`
			MaxCallsPerSecond  *int `json:"max_calls_per_second"`
		}{c, r}
		return p
	}
	countries := func(cs ...string) provisioning.WorkspacePatch {
		p := provisioning.WorkspacePatch{}
		p.Outbound = &struct {
			AllowedCountries   *[]string `json:"allowed_countries"`
			AllowPremium       *bool     `json:"allow_premium"`
			AllowSharedCost    *bool     `json:"allow_shared_cost"`
			AllowUAN           *bool     `json:"allow_uan"`
			MaxConcurrentCalls *int      `json:"max_concurrent_calls"`
			MaxCallsPerSecond  *int      `json:"max_calls_per_second"`
		}{AllowedCountries: &cs}
		return p
	}
	hook := func(s string) provisioning.WorkspacePatch { return provisioning.WorkspacePatch{RoutingHook: []byte(s)} }
	tests := []struct {
		name  string
		patch provisioning.WorkspacePatch
		field string
	}{
		{"http to a public host", hook(`{"url":"http://hooks.example.com/"}`), "routing_hook.url"},
		{"userinfo", hook(`{"url":"https://u:p@hooks.example.com/"}`), "routing_hook.url"},
		{"ftp", hook(`{"url":"ftp://hooks.example.com/"}`), "routing_hook.url"},
		{"too long", hook(`{"url":"https://hooks.example.com/` + strings.Repeat("a", 2100) + `"}`), "routing_hook.url"},
		{"timeout 0", hook(`{"timeout_ms":0}`), "routing_hook.timeout_ms"},
		{"timeout 5001", hook(`{"timeout_ms":5001}`), "routing_hook.timeout_ms"},
		{"on_failure", hook(`{"on_failure":"retry"}`), "routing_hook.on_failure"},
		{"unknown hook field", hook(`{"url":"https://a.example.com/","secret":"x"}`), "routing_hook.secret"},
		{"hook not an object", hook(`"https://a.example.com/"`), "routing_hook"},
		{"timeout a string", hook(`{"timeout_ms":"5"}`), "routing_hook.timeout_ms"},
		{"negative limit", limits(ptr(-1), nil), "limits.max_concurrent_calls"},
		{"limit too high", limits(nil, ptr(10001)), "limits.max_calls_per_second"},
		{"unknown country", countries("US", "XX"), "outbound.allowed_countries[1]"},
		{"alpha-3", countries("USA"), "outbound.allowed_countries[0]"},
		{"empty name", provisioning.WorkspacePatch{Name: ptr(" ")}, "name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.UpdateWorkspaceSettings(ctx, "acme", tc.patch)
			if !errors.Is(err, provisioning.ErrInvalid) || strings.Join(fieldsOf(err), ",") != tc.field {
				t.Fatalf("err %v (fields %v); want 400 naming %s", err, fieldsOf(err), tc.field)
			}
			after, err := s.GetWorkspaceSettings(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if a, b := asJSON(after), asJSON(before); a != b {
				t.Fatalf("refused patch changed settings: %+v -> %+v", before, after)
			}
		})
	}
	// Loopback http is fine (local development).
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://[::1]:9/x", "http://localhost/x"} {
		mustPatch(t, s, "acme", hook(`{"url":"`+u+`"}`))
	}
}

func TestWebhookSecretSealedAndRotated(t *testing.T) {
	n := newSettingsNodes(t)
	ctx := context.Background()
	s := n.a
	newWorkspace(t, s, "acme", 0)
	e, err := s.Store().Workspaces.Get(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	first, ok := s.DecodeWorkspace("acme", e.Value())
	if !ok || !strings.HasPrefix(first.WebhookSecret, "whsec_") || len(first.WebhookSecret) != len("whsec_")+64 {
		t.Fatalf("a new workspace's decoded secret %q; want whsec_ and 64 hex", first.WebhookSecret)
	}
	if strings.Contains(string(e.Value()), first.WebhookSecret) || strings.Contains(string(e.Value()), strings.TrimPrefix(first.WebhookSecret, "whsec_")) {
		t.Fatalf("the webhook secret is stored in the clear: %s", e.Value())
	}
	secret, err := s.RotateWebhookSecret(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if secret == first.WebhookSecret || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("rotated secret %q (first %q)", secret, first.WebhookSecret)
	}
	e, _ = s.Store().Workspaces.Get(ctx, "acme")
	if w, _ := n.b.DecodeWorkspace("acme", e.Value()); w.WebhookSecret != secret {
		t.Fatalf("another node decodes %q, want the rotated secret", w.WebhookSecret)
	}
	if strings.Contains(string(e.Value()), secret[6:]) {
		t.Fatal("the rotated secret is stored in the clear")
	}
	// The record keeps its id, name and creation time.
	ws, err := s.GetWorkspace(ctx, "acme")
	if err != nil || ws.ID != "acme" || ws.CreatedAt.IsZero() {
		t.Fatalf("workspace after rotation: %+v %v", ws, err)
	}
	if _, err := s.RotateWebhookSecret(ctx, "nobody"); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("rotate for an unknown workspace: %v", err)
	}
}

// Workspaces created before webhook secrets existed get one at start.
func TestEnsureWebhookSecretsMigrates(t *testing.T) {
	st := storetest.OpenEmbedded(t)
	ctx := context.Background()
	old := provisioning.New(st, provisioning.Options{Sandbox: true}) // no box: as before secrets
	newWorkspace(t, old, "legacy", 0)
	// The bucket holds other keys (node's _meta.secret_check), not JSON.
	if _, err := st.Workspaces.Put(ctx, "_meta.secret_check", []byte("AAAA")); err != nil {
		t.Fatal(err)
	}
	box, _ := secrets.NewBox(secrets.NewKey())
	s := provisioning.New(st, provisioning.Options{Sandbox: true, Box: box})
	if w, _ := s.GetWorkspaceSettings(ctx, "legacy"); w.WebhookSecretSet {
		t.Fatal("legacy workspace already has a secret")
	}
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i := range counts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.EnsureWebhookSecrets(ctx)
			if err != nil {
				t.Error(err)
			}
			counts[i] = c
		}()
	}
	wg.Wait()
	if counts[0]+counts[1] != 1 {
		t.Fatalf("two concurrent migrations changed %v workspaces; want 1 in all", counts)
	}
	if w, _ := s.GetWorkspaceSettings(ctx, "legacy"); !w.WebhookSecretSet {
		t.Fatal("no secret after migration")
	}
	if c, _ := s.EnsureWebhookSecrets(ctx); c != 0 {
		t.Fatalf("second migration changed %d", c)
	}
}

func TestCheckHookURL(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"https://hooks.example.com/route?x=1", true},
		{"http://127.0.0.2:8080/", true},
		{"http://[::1]/", true},
		{"http://10.0.0.1/", false},
		{"http://example.com/", false},
		{"https://", false},
		{"https://a.example.com/#frag", false},
		{"https://user@a.example.com/", false},
		{"https://a.example.com/ x", false},
		{"javascript:alert(1)", false},
		{"", false},
	} {
		_, err := provisioning.CheckHookURL(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("CheckHookURL(%q) = %v; want ok=%v", tc.in, err, tc.ok)
		}
	}
}

// A settings change on one node, a credential, number control, agent
// source ranges and an integration's termination all reach the routing
// table of another node's Syncer.
func TestSettingsReachAnotherNodesSnapshot(t *testing.T) {
	n := newSettingsNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	table := &routing.Table{}
	stB := n.b.Store()
	y := &provisioning.Syncer{Table: table, WorkspaceBucket: stB.Workspaces, Workspaces: n.b.DecodeWorkspace, CredentialBucket: stB.SIPCredentials,
		Integrations: n.b.DecodeIntegration}
	go y.Run(ctx, stB.Numbers, stB.Agents, stB.Forwarding, stB.Integrations)
	<-y.Ready()

	a := n.a
	p := newWorkspace(t, a, "acme", 1000)
	for _, id := range []string{"bot", "bot2"} {
		in := provisioning.AgentInput{ID: id, Name: id, Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:" + id + "@127.0.0.1:5090"}}, SourceCIDRs: []string{"203.0.113.7", "2001:db8::1/32"}}
		if _, err := a.CreateAgent(ctx, p, in); err != nil {
			t.Fatal(err)
		}
	}
	num := search(t, a, p, "228", 1)[0].PhoneNumber
	if _, err := a.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: num, AgentID: "bot"}, ""); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		r, ok := table.Load().Lookup(num)
		if !ok || r.Number.Control != nil {
			return fmt.Errorf("plain number: %+v %v; want routed without control", r, ok)
		}
		return nil
	})

	mustPatch(t, a, "acme", provisioning.WorkspacePatch{RoutingHook: []byte(`{"url":"https://hooks.example.com/r","timeout_ms":900}`)})
	secret, err := a.RotateWebhookSecret(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := a.CreateSIPCredential(ctx, p, "bot")
	if err != nil {
		t.Fatal(err)
	}
	agents := []provisioning.AgentWeight{{AgentID: "bot", Weight: 1}, {AgentID: "bot2", Weight: 3}}
	fallback := []provisioning.FallbackStep{{URI: "sip:backup@127.0.0.1:5091"}, {Number: "+14155550100"}}
	if _, err := a.UpdateNumber(ctx, p, num, provisioning.NumberPatch{Agents: &agents, SMSAgentID: ptr("bot2"), Fallback: &fallback}); err != nil {
		t.Fatal(err)
	}
	it, err := a.CreateIntegration(ctx, p, provisioning.IntegrationInput{Name: "tw", Carrier: "twilio", Credentials: map[string]string{"account_sid": n.fake.AccountSID(), "auth_token": n.fake.AuthToken()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{Termination: []byte(`{"uris":["sip:acme.pstn.twilio.com","sips:acme2.pstn.twilio.com;transport=tls"],"username":"trunk","password":"s3cret-pass"}`)}); err != nil {
		t.Fatal(err)
	}
	md5h, shah := provisioning.HA1(cred.Username, "callgate", cred.Password)

	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		snap := table.Load()
		w := snap.Workspace("acme")
		if w == nil || w.Hook == nil || w.Hook.URL != "https://hooks.example.com/r" || w.Hook.TimeoutMS != 900 || w.WebhookSecret != secret {
			return fmt.Errorf("workspace %+v", w)
		}
		c, ok := snap.Credential(cred.Username)
		if !ok || c.AgentID != "bot" || c.Workspace != "acme" || c.HA1MD5 != md5h || c.HA1SHA256 != shah || c.Realm != "callgate" {
			return fmt.Errorf("credential %+v %v", c, ok)
		}
		ag, ok := snap.Agent("acme", "bot")
		if !ok || strings.Join(ag.SourceCIDRs, ",") != "203.0.113.7/32,2001:db8::/32" {
			return fmt.Errorf("agent %+v", ag)
		}
		r, ok := snap.Lookup(num)
		if !ok || r.Number.Control == nil {
			return fmt.Errorf("number %+v", r)
		}
		ctl := r.Number.Control
		if fmt.Sprint(ctl.Agents) != "[{bot 1} {bot2 3}]" || ctl.SMSAgentID != "bot2" || len(ctl.Fallback) != 2 || ctl.Fallback[1].Number != "+14155550100" || r.Number.AgentID != "bot" {
			return fmt.Errorf("control %+v agent %s", ctl, r.Number.AgentID)
		}
		in, ok := snap.Integration(it.ID)
		if !ok || strings.Join(in.Termination.URIs, " ") != "sip:acme.pstn.twilio.com sips:acme2.pstn.twilio.com;transport=tls" || in.Termination.Username != "trunk" || in.Termination.Password != "s3cret-pass" {
			return fmt.Errorf("integration termination %+v", in.Termination)
		}
		return nil
	})

	// Revoking the credential and removing the hook follow too.
	if err := a.RevokeSIPCredential(ctx, p, "bot", cred.Username); err != nil {
		t.Fatal(err)
	}
	mustPatch(t, a, "acme", provisioning.WorkspacePatch{RoutingHook: []byte(`null`)})
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		snap := table.Load()
		if _, ok := snap.Credential(cred.Username); ok {
			return errors.New("revoked credential still in the snapshot")
		}
		if w := snap.Workspace("acme"); w == nil || w.Hook != nil {
			return fmt.Errorf("workspace %+v; want no hook", w)
		}
		return nil
	})
}

// BenchmarkSettingsToSnapshot measures a workspace settings PATCH on one
// node until another node's routing table shows it.
func BenchmarkSettingsToSnapshot(b *testing.B) {
	srvNodes := newSettingsNodes(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	table := &routing.Table{}
	stB := srvNodes.b.Store()
	y := &provisioning.Syncer{Table: table, WorkspaceBucket: stB.Workspaces, Workspaces: srvNodes.b.DecodeWorkspace, CredentialBucket: stB.SIPCredentials}
	go y.Run(ctx, stB.Numbers, stB.Agents, stB.Forwarding, stB.Integrations)
	<-y.Ready()
	if _, _, err := srvNodes.a.CreateWorkspace(ctx, "acme", "acme", 0); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := i%10000 + 1
		p := provisioning.WorkspacePatch{}
		p.Limits = &struct {
			MaxConcurrentCalls *int `json:"max_concurrent_calls"`
			MaxCallsPerSecond  *int `json:"max_calls_per_second"`
		}{MaxCallsPerSecond: &want}
		if _, err := srvNodes.a.UpdateWorkspaceSettings(ctx, "acme", p); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if w := table.Load().Workspace("acme"); w != nil && w.Limits.MaxCallsPerSecond == want {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("patch %d not in the other node's table after 10s", i)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
}
