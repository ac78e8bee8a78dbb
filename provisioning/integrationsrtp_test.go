package provisioning_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
)

// An integration's srtp is validated (400 naming srtp, nothing written),
// stored, shown and carried into the routing snapshot that the SIP edge
// reads for calls from that carrier account.
func TestIntegrationSRTPReachesTheSnapshot(t *testing.T) {
	n := newSettingsNodes(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	table := &routing.Table{}
	stB := n.b.Store()
	y := &provisioning.Syncer{Table: table, WorkspaceBucket: stB.Workspaces, Workspaces: n.b.DecodeWorkspace, Integrations: n.b.DecodeIntegration}
	go y.Run(ctx, stB.Numbers, stB.Agents, stB.Forwarding, stB.Integrations)
	<-y.Ready()
	s := n.a
	p := newWorkspace(t, s, "acme", 0)
	good := map[string]string{"account_sid": n.fake.AccountSID(), "auth_token": n.fake.AuthToken()}
	it, err := s.CreateIntegration(ctx, p, provisioning.IntegrationInput{Name: "tw", Carrier: "twilio", Credentials: good})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := s.Store().Integrations.Get(ctx, it.ID)
	if _, err := s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{SRTP: ptr("always")}); !errors.Is(err, provisioning.ErrInvalid) || strings.Join(fieldsOf(err), ",") != "srtp" {
		t.Fatalf("bad srtp: %v", err)
	}
	if after, _ := s.Store().Integrations.Get(ctx, it.ID); after.Revision() != before.Revision() {
		t.Fatal("a refused srtp was written")
	}
	got, err := s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{SRTP: ptr("required")})
	if err != nil || got.SRTP != routing.SRTPRequired {
		t.Fatalf("set srtp: %+v %v", got, err)
	}
	shown, _ := n.b.GetIntegration(ctx, p, it.ID)
	if shown.SRTP != routing.SRTPRequired {
		t.Fatalf("GET on another node: %s", asJSON(shown))
	}
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		in, ok := table.Load().Integration(it.ID)
		if !ok || in.SRTP != routing.SRTPRequired {
			return fmt.Errorf("snapshot integration %v srtp %q", ok, in.SRTP)
		}
		return nil
	})
	if got, err := s.UpdateIntegration(ctx, p, it.ID, provisioning.IntegrationPatch{SRTP: ptr("off")}); err != nil || got.SRTP != routing.SRTPOff {
		t.Fatalf("srtp off: %+v %v", got, err)
	}
}
