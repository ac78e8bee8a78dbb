package provisioning_test

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/callgate/callgate/provisioning"
)

func credFixture(t *testing.T) (settingsNodes, provisioning.Principal) {
	t.Helper()
	n := newSettingsNodes(t)
	ctx := context.Background()
	p := newWorkspace(t, n.a, "acme", 0)
	for _, id := range []string{"bot", "bot2"} {
		in := provisioning.AgentInput{ID: id, Name: id, Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:" + id + "@127.0.0.1:5090"}}}
		if _, err := n.a.CreateAgent(ctx, p, in); err != nil {
			t.Fatal(err)
		}
	}
	return n, p
}

func TestSIPCredentialStoredAsHA1Only(t *testing.T) {
	n, p := credFixture(t)
	ctx := context.Background()
	c, err := n.a.CreateSIPCredential(ctx, p, "bot")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.Username, "ag_") || len(c.Password) < 24 || c.Realm != "callgate" || c.CreatedAt.IsZero() {
		t.Fatalf("credential %+v", c)
	}
	e, err := n.a.Store().SIPCredentials.Get(ctx, c.Username)
	if err != nil {
		t.Fatal(err)
	}
	raw := string(e.Value())
	if strings.Contains(raw, c.Password) {
		t.Fatalf("the password is stored: %s", raw)
	}
	in := c.Username + ":callgate:" + c.Password
	m, h := md5.Sum([]byte(in)), sha256.Sum256([]byte(in))
	if !strings.Contains(raw, hex.EncodeToString(m[:])) || !strings.Contains(raw, hex.EncodeToString(h[:])) {
		t.Fatalf("stored record %s lacks the RFC 7616 HA1s of %s", raw, in)
	}
	list, err := n.b.ListSIPCredentials(ctx, p, "bot")
	if err != nil || len(list) != 1 || list[0].Username != c.Username {
		t.Fatalf("list %+v %v", list, err)
	}
	if s := asJSON(list); strings.Contains(s, c.Password) || strings.Contains(s, "ha1") {
		t.Fatalf("list shows secrets: %s", s)
	}
	if l2, _ := n.a.ListSIPCredentials(ctx, p, "bot2"); len(l2) != 0 {
		t.Fatalf("bot2 lists bot's credential: %+v", l2)
	}
	// Not this agent's, not this workspace's, not a username: 404.
	other := newWorkspace(t, n.a, "other", 0)
	for _, tc := range []struct {
		p     provisioning.Principal
		agent string
		user  string
	}{{p, "bot2", c.Username}, {other, "bot", c.Username}, {p, "bot", "ag_nothing"}, {p, "bot", "a.b>"}} {
		if err := n.a.RevokeSIPCredential(ctx, tc.p, tc.agent, tc.user); !errors.Is(err, provisioning.ErrNotFound) {
			t.Fatalf("revoke %s of %s/%s: %v; want 404", tc.user, tc.p.Workspace, tc.agent, err)
		}
	}
	if _, err := n.a.CreateSIPCredential(ctx, p, "nobody"); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("credential for an unknown agent: %v", err)
	}
	if _, err := n.a.CreateSIPCredential(ctx, other, "bot"); !errors.Is(err, provisioning.ErrNotFound) {
		t.Fatalf("credential for another workspace's agent: %v", err)
	}
	if err := n.b.RevokeSIPCredential(ctx, p, "bot", c.Username); err != nil {
		t.Fatal(err)
	}
	if l, _ := n.a.ListSIPCredentials(ctx, p, "bot"); len(l) != 0 {
		t.Fatalf("after revoke: %+v", l)
	}
}

// Two nodes issuing credentials at once never hand out one username
// twice, and every credential they report exists.
func TestSIPCredentialConcurrentCreates(t *testing.T) {
	n, p := credFixture(t)
	ctx := context.Background()
	var (
		mu    sync.Mutex
		users = map[string]int{}
		wg    sync.WaitGroup
	)
	for i := 0; i < 10; i++ {
		for _, s := range []*provisioning.Service{n.a, n.b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				agent := "bot"
				if i%2 == 1 {
					agent = "bot2"
				}
				c, err := s.CreateSIPCredential(ctx, p, agent)
				if err != nil {
					if errors.Is(err, provisioning.ErrConflict) {
						return // the per-agent cap, counted before the claim
					}
					t.Error(err)
					return
				}
				mu.Lock()
				users[c.Username]++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	for u, k := range users {
		if k != 1 {
			t.Fatalf("username %s issued %d times", u, k)
		}
	}
	l1, _ := n.a.ListSIPCredentials(ctx, p, "bot")
	l2, _ := n.a.ListSIPCredentials(ctx, p, "bot2")
	if len(l1)+len(l2) != len(users) || len(users) < 10 {
		t.Fatalf("%d issued, %d stored", len(users), len(l1)+len(l2))
	}
}

// Deleting an agent revokes its credentials; an agent with a number is
// not deleted and keeps them.
func TestDeleteAgentRevokesCredentials(t *testing.T) {
	n, p := credFixture(t)
	ctx := context.Background()
	c, err := n.a.CreateSIPCredential(ctx, p, "bot")
	if err != nil {
		t.Fatal(err)
	}
	keep, err := n.a.CreateSIPCredential(ctx, p, "bot2")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.b.DeleteAgent(ctx, p, "bot"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.a.Store().SIPCredentials.Get(ctx, c.Username); err == nil {
		t.Fatal("the deleted agent's credential is still stored")
	}
	if _, err := n.a.Store().SIPCredentials.Get(ctx, keep.Username); err != nil {
		t.Fatalf("another agent's credential went too: %v", err)
	}
}

func TestAgentSourceCIDRs(t *testing.T) {
	s, _ := newService(t)
	ctx := context.Background()
	p := newWorkspace(t, s, "acme", 0)
	in := provisioning.AgentInput{ID: "bot", Name: "Bot", Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:bot@127.0.0.1:5090"}},
		SourceCIDRs: []string{"203.0.113.9/24", "198.51.100.7", "::ffff:192.0.2.1", "2001:db8::/32", "203.0.113.0/24"}}
	a, err := s.CreateAgent(ctx, p, in)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(a.SourceCIDRs, ","); got != "203.0.113.0/24,198.51.100.7/32,192.0.2.1/32,2001:db8::/32" {
		t.Fatalf("source_cidrs %s", got)
	}
	many := make([]string, 21)
	for i := range many {
		many[i] = "10.0.0.1"
	}
	for _, bad := range [][]string{{"10.0.0.0/33"}, {"example.com"}, {"fe80::1%eth0"}, many} {
		in.ID, in.SourceCIDRs = "", bad
		if _, err := s.CreateAgent(ctx, p, in); !errors.Is(err, provisioning.ErrInvalid) || !strings.HasPrefix(strings.Join(fieldsOf(err), ","), "source_cidrs") {
			t.Fatalf("source_cidrs %q: %v; want 400 naming source_cidrs", bad[0], err)
		}
	}
	in.ID, in.SourceCIDRs = "bot", nil
	a, err = s.UpdateAgent(ctx, p, "bot", in)
	if err != nil || a.SourceCIDRs != nil {
		t.Fatalf("PUT without source_cidrs: %+v %v; want them cleared", a.SourceCIDRs, err)
	}
}

// Two nodes drawing the same username at once: the KV create lets one
// have it; the other draws again. Nobody is handed a credential that
// belongs to someone else.
func TestSIPCredentialUsernameClaimedOnce(t *testing.T) {
	n, p := credFixture(t)
	ctx := context.Background()
	for i, s := range []*provisioning.Service{n.a, n.b} {
		var mu sync.Mutex
		draws := 0
		provisioning.DrawUsernamesForTest(s, func() string {
			mu.Lock()
			defer mu.Unlock()
			draws++
			if draws == 1 {
				return "ag_taken"
			}
			return "ag_node" + string(rune('a'+i))
		})
	}
	type res struct {
		agent string
		c     provisioning.NewSIPCredential
		err   error
	}
	out := make(chan res, 2)
	start := make(chan struct{})
	for _, x := range []struct {
		s     *provisioning.Service
		agent string
	}{{n.a, "bot"}, {n.b, "bot2"}} {
		go func() {
			<-start
			c, err := x.s.CreateSIPCredential(ctx, p, x.agent)
			out <- res{x.agent, c, err}
		}()
	}
	close(start)
	got := map[string]string{} // username -> agent
	for i := 0; i < 2; i++ {
		r := <-out
		if r.err != nil {
			t.Fatal(r.err)
		}
		if prev, dup := got[r.c.Username]; dup {
			t.Fatalf("username %s issued to %s and %s", r.c.Username, prev, r.agent)
		}
		got[r.c.Username] = r.agent
	}
	owner, ok := got["ag_taken"]
	if !ok {
		t.Fatalf("nobody got the first draw: %v", got)
	}
	cs, err := n.a.ListSIPCredentials(ctx, p, owner)
	if err != nil || len(cs) != 1 || cs[0].Username != "ag_taken" {
		t.Fatalf("ag_taken is stored for %+v, want %s (%v)", cs, owner, err)
	}
}
