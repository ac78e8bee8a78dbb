package calls_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/store/storetest"
)

// A command sent from one node reaches the node that holds the call, and
// only for the workspace the call belongs to.
func TestControlBusReachesTheHoldingNode(t *testing.T) {
	srv := storetest.RunServer(t)
	conn := func() *nats.Conn {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	// A node that holds the call answers within Timeout even on a loaded
	// machine; Send's own wait is bounded by its context below.
	a, b := calls.NewControlBus(conn(), nil), calls.NewControlBus(conn(), nil)
	a.Timeout, b.Timeout = 10*time.Second, 10*time.Second
	got := make(chan calls.Command, 4)
	b.Handle(func(ctx context.Context, c calls.Command) (calls.Reply, bool) {
		if c.CallID != "c1" || c.Workspace != "acme" {
			return calls.Reply{}, false
		}
		got <- c
		return calls.Reply{Status: 202, Detail: map[string]string{"mode": "bridge"}}, true
	})
	for _, x := range []*calls.ControlBus{a, b} {
		if err := x.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(x.Close)
	}
	ctx := context.Background()
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		t.Cleanup(cancel)
		return c
	}
	r, err := a.Send(ctx, calls.Command{Op: calls.OpTransfer, CallID: "c1", Workspace: "acme", To: "tel:+14155550100", Mode: "bridge"})
	if err != nil || r.Status != 202 || r.Detail["mode"] != "bridge" {
		t.Fatalf("reply %+v, %v", r, err)
	}
	if c := <-got; c.To != "tel:+14155550100" || c.Op != calls.OpTransfer {
		t.Fatalf("handler got %+v", c)
	}
	if _, err := a.Send(short(), calls.Command{Op: calls.OpDTMF, CallID: "c2", Workspace: "acme", Digits: "1"}); !errors.Is(err, calls.ErrCallNotHere) {
		t.Fatalf("unknown call: %v", err)
	}
	// Another workspace naming acme's call, on its own subject: ignored.
	if _, err := a.Send(short(), calls.Command{Op: calls.OpDTMF, CallID: "c1", Workspace: "evil", Digits: "1"}); !errors.Is(err, calls.ErrCallNotHere) {
		t.Fatalf("other workspace: %v", err)
	}
	// A body naming acme sent on evil's subject: ignored too.
	data, _ := json.Marshal(calls.Command{Op: calls.OpDTMF, CallID: "c1", Workspace: "acme", Digits: "1"})
	if _, err := conn().Request(calls.ControlSubject+"evil", data, 300*time.Millisecond); err == nil {
		t.Fatal("a command whose subject and workspace disagree was answered")
	}
	if len(got) != 0 {
		t.Fatalf("handler ran for refused commands: %d", len(got))
	}
}
