package provisioning_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
)

// A business line registered by one workspace stops attributing calls
// once another workspace buys that number, and comes back if it is
// released; the holder's own registration is refused.
func TestForwardingOfANumberAnotherWorkspaceHolds(t *testing.T) {
	s, _ := newService(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, b := newWorkspace(t, s, "a", 1000), newWorkspace(t, s, "b", 1000)
	nums := search(t, s, a, "228", 3)
	gwA, line, gwB := nums[0].PhoneNumber, nums[1].PhoneNumber, nums[2].PhoneNumber
	for _, x := range []struct {
		p   provisioning.Principal
		num string
	}{{a, gwA}, {b, gwB}} {
		if _, err := s.Purchase(ctx, x.p, provisioning.PurchaseRequest{PhoneNumber: x.num}, ""); err != nil {
			t.Fatal(err)
		}
	}
	table := &routing.Table{}
	y := &provisioning.Syncer{Table: table, Debounce: time.Millisecond}
	st := s.Store()
	go y.Run(ctx, st.Numbers, st.Agents, st.Forwarding, st.Integrations)
	<-y.Ready()
	forward := func(want string) func() error {
		return func() error {
			f, ok := table.Load().ForwardFrom(line)
			if got := map[bool]string{true: f.Workspace, false: ""}[ok]; got != want {
				return fmt.Errorf("business line %s attributed to %q, want %q", line, got, want)
			}
			return nil
		}
	}
	// b cannot register a's number, nor forward to it.
	if _, err := s.CreateForwarding(ctx, b, gwA, gwB); !errors.Is(err, provisioning.ErrInvalid) {
		t.Fatalf("b registers a's gateway number as its line: %v", err)
	}
	if _, err := s.CreateForwarding(ctx, b, "+14155550199", gwA); !errors.Is(err, provisioning.ErrInvalid) {
		t.Fatalf("b forwards to a's gateway number: %v", err)
	}
	if _, err := s.CreateForwarding(ctx, a, line, gwA); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, forward("a"))
	if _, err := s.Purchase(ctx, b, provisioning.PurchaseRequest{PhoneNumber: line}, ""); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, forward(""))
	if err := s.Release(ctx, b, line); err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, forward("a"))
}
