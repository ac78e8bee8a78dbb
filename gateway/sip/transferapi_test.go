package sip

import (
	"context"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
)

// The API's blind transfer sends the REFER in the agent's place; the
// agent's later requests toward the caller (an INFO, then API digits as
// INFO, then its BYE) reach the caller numbered above that REFER, each
// above the last, and the agent sees its own numbers in the answers.
func TestAPITransferREFERAndAgentCSeqRenumbering(t *testing.T) {
	agent := newUA(t, "127.0.0.1", answerSDP([]byte(testSDP)))
	apiBus, edgeBus := controlBus(t)
	cfg := DefaultConfig()
	cfg.Addr, cfg.Region, cfg.Probe.Disabled = "127.0.0.1:0", "test", true
	e := startEdge(t, cfg, Deps{Table: buildTable(agent.endpoint("eu")), Control: edgeBus})
	carrier := newUA(t, "127.0.0.1")
	carrier.acceptRefer.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	ds := carrier.answered(ctx, t, e)
	callID := ds.InviteRequest.CallID().Value()
	r, err := apiBus.Send(ctx, calls.Command{Op: calls.OpTransfer, CallID: callID, Workspace: "w", To: "tel:+14155550143", Mode: "blind"})
	if err != nil || r.Status != 202 {
		t.Fatalf("transfer: %+v %v", r, err)
	}
	refer := recv(t, carrier.others, "REFER at the caller")
	if refer.Method != "REFER" {
		t.Fatalf("got %s, want REFER", refer.Method)
	}
	if rt := refer.GetHeader("Refer-To"); rt == nil || rt.Value() != "<tel:+14155550143>" {
		t.Fatalf("Refer-To %v", rt)
	}
	want, _ := ds.InviteRequest.From().Params.Get("tag")
	if tag, _ := refer.To().Params.Get("tag"); tag != want {
		t.Fatalf("REFER To tag %q, want the caller's From tag %q", tag, want)
	}
	last := refer.CSeq().SeqNo

	sess := agentDialog(t, agent, callID)
	ainfo := dtmfInfo(ds.InviteRequest.Contact().Address, "text/plain", "hello")
	res, err := sess.Do(ctx, ainfo)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("agent INFO: %v %v", res, err)
	}
	got := recv(t, carrier.others, "the agent's INFO at the caller")
	if got.CSeq().SeqNo <= last {
		t.Fatalf("agent's INFO reached the caller with CSeq %d, not above callgate's REFER %d", got.CSeq().SeqNo, last)
	}
	if res.CSeq().SeqNo != ainfo.CSeq().SeqNo {
		t.Fatalf("answer reached the agent with CSeq %d, want its own %d", res.CSeq().SeqNo, ainfo.CSeq().SeqNo)
	}
	last = got.CSeq().SeqNo

	// digits from the API after the transfer share the same numbering
	r, err = apiBus.Send(ctx, calls.Command{Op: calls.OpDTMF, CallID: callID, Workspace: "w", Digits: "7"})
	if err != nil || r.Status != 202 {
		t.Fatalf("dtmf: %+v %v", r, err)
	}
	dinfo := recv(t, carrier.others, "callgate's INFO at the caller")
	if dinfo.CSeq().SeqNo <= last {
		t.Fatalf("callgate's INFO CSeq %d, not above %d", dinfo.CSeq().SeqNo, last)
	}
	last = dinfo.CSeq().SeqNo

	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("agent BYE: %v", err)
	}
	bye := recv(t, carrier.byes, "BYE at the caller")
	if bye.CSeq().SeqNo <= last {
		t.Fatalf("BYE CSeq %d at the caller, not above %d", bye.CSeq().SeqNo, last)
	}
}
