package callhistory_test

import (
	"context"
	"testing"
	"time"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/gateway/calls"
)

// TestTransferOutcomeInTheCallRecord: a call's transfer events (issue 18)
// give its record the last transfer's state; a failed transfer (busy)
// leaves the call answered, and a transfer that never ended shows its
// last progress.
func TestTransferOutcomeInTheCallRecord(t *testing.T) {
	st, rec, m := recorder(t)
	n := answeredCall(rec, "acme", "xfer-busy", t0)
	for _, st := range []string{calls.TransferTrying, calls.TransferRinging} {
		rec.Publish(calls.Event{Kind: calls.TransferKind, CallID: "xfer-busy", Time: t0.Add(time.Second), Workspace: "acme",
			Transfer: &calls.TransferInfo{To: "tel:+14155550143", Mode: "refer", Via: "sip_refer", State: st}})
	}
	rec.Publish(calls.Event{Kind: calls.TransferKind, CallID: "xfer-busy", Time: t0.Add(2 * time.Second), Workspace: "acme",
		Transfer: &calls.TransferInfo{To: "tel:+14155550143", Mode: "refer", Via: "sip_refer", State: calls.TransferBusy, Status: 486}})
	rec.Publish(calls.Event{Kind: calls.TransferKind, CallID: "xfer-open", Time: t0, Workspace: "acme",
		Transfer: &calls.TransferInfo{To: "sip:human@pbx.example.com", Mode: "refer", Via: "api", State: calls.TransferRinging}})
	waitStored(t, m, n+4)
	r := callhistory.NewReader(st, nil)
	c, err := r.Get(context.Background(), "acme", "xfer-busy")
	if err != nil {
		t.Fatal(err)
	}
	if c.Outcome != callhistory.OutcomeAnswered || c.Transfer == nil || c.Transfer.State != calls.TransferBusy ||
		c.Transfer.Status != 486 || c.Transfer.To != "tel:+14155550143" || c.Transfer.Via != "sip_refer" {
		t.Errorf("record %+v transfer %+v: want answered, transfer busy 486", c, c.Transfer)
	}
	o, err := r.Get(context.Background(), "acme", "xfer-open")
	if err != nil || o.Transfer == nil || o.Transfer.State != calls.TransferRinging {
		t.Errorf("open transfer: %+v %v", o, err)
	}
}
