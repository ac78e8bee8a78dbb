package sip

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/sip/transport/dnstest"
	"github.com/callgate/callgate/routing"
)

// A bridged transfer to a sip: URI whose host name resolves to an
// internal address (here loopback, where a UA listens) never sends it
// anything: the transfer fails 503 and the caller stays with the agent.
// An IP literal is refused before (transfertarget.go).
func TestBridgeSIPTargetResolvingInsideRefused(t *testing.T) {
	d := dnstest.Run(t)
	d.Set("inside.test", "127.0.0.1", 60)
	human := newUA(t, "127.0.0.1")
	e, _, agent, ds := bridgeEdge(t, routing.MediaRelay, human, nil, withDNS(d, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	callID := ds.InviteRequest.CallID().Value()
	rep, ok := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: callID, Workspace: "w",
		To: "sip:human@inside.test:" + strconv.Itoa(human.port), Mode: TransferBridge})
	if !ok || rep.Status != 202 {
		t.Fatalf("bridge transfer: %+v, want 202 (the name is resolved when the leg is placed)", rep)
	}
	if out := lastTransfer(t, e, calls.TransferFailed); out.Status != 503 {
		t.Errorf("transfer %+v, want failed 503", out)
	}
	select {
	case inv := <-human.invites:
		t.Fatalf("the UA on loopback got an INVITE: %s", inv.StartLine())
	default:
	}
	select {
	case bye := <-agent.byes:
		t.Fatalf("the agent got a BYE (the caller must stay with it): %s", bye.StartLine())
	default:
	}
	if d.Count("inside.test.", 1) == 0 && d.Count("inside.test", 1) == 0 {
		t.Error("the target's name was never looked up")
	}
}
