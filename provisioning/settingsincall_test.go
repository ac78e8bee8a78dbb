package provisioning_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
)

// In-call settings (issue 18): an agent's early media, media timeout and
// SRTP policy, a workspace's header allow-list and mixed-SRTP switch,
// validated with the field named and carried into another node's
// routing snapshot.
func TestInCallSettingsReachTheSnapshot(t *testing.T) {
	n := newSettingsNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	table := &routing.Table{}
	stB := n.b.Store()
	y := &provisioning.Syncer{Table: table, WorkspaceBucket: stB.Workspaces, Workspaces: n.b.DecodeWorkspace}
	go y.Run(ctx, stB.Numbers, stB.Agents, stB.Forwarding, stB.Integrations)
	<-y.Ready()
	a := n.a
	p := newWorkspace(t, a, "acme", 1000)
	ep := []provisioning.Endpoint{{Region: "us-east", URI: "sip:bot@127.0.0.1:5090"}}

	bad := []struct {
		in    provisioning.AgentCallSettings
		field string
	}{
		{provisioning.AgentCallSettings{EarlyMedia: "music"}, "early_media"},
		{provisioning.AgentCallSettings{MediaTimeoutMS: 999}, "media_timeout_ms"},
		{provisioning.AgentCallSettings{MediaTimeoutMS: 3600*1000 + 1}, "media_timeout_ms"},
		{provisioning.AgentCallSettings{SRTP: "yes"}, "srtp"},
	}
	for _, tc := range bad {
		_, err := a.CreateAgent(ctx, p, provisioning.AgentInput{ID: "bad", Name: "bad", Endpoints: ep, AgentCallSettings: tc.in})
		if !errors.Is(err, provisioning.ErrInvalid) || strings.Join(fieldsOf(err), ",") != tc.field {
			t.Fatalf("%+v: err %v; want 400 naming %s", tc.in, err, tc.field)
		}
	}
	if _, err := a.GetAgent(ctx, p, "bad"); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("a refused agent was stored: %v", err)
	}
	in := provisioning.AgentInput{ID: "bot", Name: "bot", Endpoints: ep, Media: "relay",
		AgentCallSettings: provisioning.AgentCallSettings{EarlyMedia: "ringback_tone", MediaTimeoutMS: 5000, SRTP: "required"}}
	got, err := a.CreateAgent(ctx, p, in)
	if err != nil {
		t.Fatal(err)
	}
	if got.EarlyMedia != "ringback_tone" || got.MediaTimeoutMS != 5000 || got.SRTP != "required" {
		t.Fatalf("created agent %+v", got)
	}
	// "off" is stored as the default.
	in.SRTP = "off"
	in.EarlyMedia = "ringback"
	if _, err := a.UpdateAgent(ctx, p, "bot", in); err != nil {
		t.Fatal(err)
	}

	hdrs := func(allow, keep *[]string) provisioning.WorkspacePatch {
		var w provisioning.WorkspacePatch
		if err := jsonInto(fmt.Sprintf(`{"sip_headers":{"allow":%s,"keep":%s},"media":{"allow_mixed_srtp":true}}`, asJSON(allow), asJSON(keep)), &w); err != nil {
			t.Fatal(err)
		}
		return w
	}
	if _, err := a.UpdateWorkspaceSettings(ctx, "acme", hdrs(&[]string{"X-Acme-*", "bad header"}, nil)); !errors.Is(err, provisioning.ErrInvalid) || strings.Join(fieldsOf(err), ",") != "sip_headers.allow[1]" {
		t.Fatalf("bad header name: %v %v", err, fieldsOf(err))
	}
	def, err := a.GetWorkspaceSettings(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(def.SIPHeaders.Allow, ",") != "X-*,User-to-User" || def.Media.AllowMixedSRTP {
		t.Fatalf("defaults %+v (a refused patch must write nothing)", def)
	}
	ws := mustPatch(t, a, "acme", hdrs(&[]string{"X-Acme-*", "Diversion"}, &[]string{"X-Acme-Ticket"}))
	if strings.Join(ws.SIPHeaders.Allow, ",") != "X-Acme-*,Diversion" || strings.Join(ws.SIPHeaders.Keep, ",") != "X-Acme-Ticket" || !ws.Media.AllowMixedSRTP {
		t.Fatalf("settings %+v", ws)
	}

	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		snap := table.Load()
		ag, ok := snap.Agent("acme", "bot")
		if !ok || ag.EarlyMedia != routing.EarlyMediaRingback || ag.MediaTimeout != 5*time.Second || ag.SRTP != routing.SRTPOff {
			return fmt.Errorf("agent %+v", ag)
		}
		w := snap.Workspace("acme")
		if w == nil || !w.AllowMixedSRTP || !w.Headers.Allowed("x-acme-id") || w.Headers.Allowed("X-Other") || !w.Headers.Kept("X-Acme-Ticket") {
			return fmt.Errorf("workspace %+v", w)
		}
		return nil
	})
}

func jsonInto(s string, v any) error { return json.Unmarshal([]byte(s), v) }
