package sip

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

// SDPs of the direct-media bridge tests: each party has its own media
// port (the agent answers testSDP: o=- 1 1, port 40000).
const (
	callerSDP       = "v=0\r\no=carrier 9 9 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	callerReSDP     = "v=0\r\no=carrier 9 10 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	humanSDP        = "v=0\r\no=human 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	callerMediaPort = 41000
	humanMediaPort  = 42000
)

// answerHuman: the human answers 180, then 200 with humanSDP.
func answerHuman(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
	ds, err := u.dsc.ReadInvite(req, tx)
	if err != nil {
		return
	}
	u.sessMu.Lock()
	u.sessions[req.CallID().Value()] = ds
	u.sessMu.Unlock()
	_ = ds.Respond(180, "Ringing", nil)
	_ = ds.RespondSDP([]byte(humanSDP))
}

// directBridgeEdge: a direct-media call from a sipgo carrier offering
// callerSDP to a sipgo agent, answered and ACKed, on an edge whose
// sandbox termination is human.
func directBridgeEdge(t *testing.T, human *testUA) (*testEdge, *testUA, *testUA, *sipgo.DialogClientSession) {
	t.Helper()
	agent := newUA(t, "127.0.0.1")
	mgr := newMediaManager(t, 31580, 31599)
	e := runAgentEdge(t, bridgeTable(agent.endpoint("local"), routing.MediaDirect), sandboxURI(human), nil, func(d *Deps) {
		d.Media = media.Anchor[MediaSession]{M: mgr}
	})
	carrier := newUA(t, "127.0.0.1")
	carrier.mu.Lock()
	carrier.reinviteSDP = []byte(callerReSDP)
	carrier.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := carrier.dcc.Invite(ctx, e.uri(numBridge), []byte(callerSDP), sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("call not answered: %v", err)
	}
	if got := sdpPort(string(ds.InviteResponse.Body())); got != 40000 {
		t.Fatalf("the caller's answer has media port %d, want the agent's 40000 (direct media)", got)
	}
	_ = ds.Ack(ctx)
	recv(t, agent.invites, "INVITE at the agent")
	recv(t, agent.acks, "ACK at the agent")
	return e, carrier, agent, ds
}

// TestBridgeDirectMedia: a bridged transfer of a call whose media is not
// relayed (RFC 3725 style). The human is offered the caller's SDP (its
// media port); when it answers, the caller is re-INVITEd in the agent's
// place (From the agent's tag, CSeq above anything the agent used, the
// human's media port, the agent's o= with the next version) and ACKed;
// the agent gets BYE; the caller's session refresh is answered here, a
// media move 488; the caller's BYE reaches the human.
func TestBridgeDirectMedia(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	human := newUA(t, "127.0.0.1", answerHuman)
	e, carrier, agent, ds := directBridgeEdge(t, human)
	callID := ds.InviteRequest.CallID().Value()
	rep, ok := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: callID,
		Workspace: "w", To: "tel:" + bridgeDest, Mode: TransferBridge})
	if !ok || rep.Status != 202 || rep.Detail["mode"] != TransferBridge {
		t.Fatalf("bridge on a direct-media call: %+v, want 202 mode bridge", rep)
	}
	inv := recv(t, human.invites, "INVITE at the human")
	if inv.Recipient.User != bridgeDest {
		t.Errorf("new leg to %s, want %s", inv.Recipient.String(), bridgeDest)
	}
	if got := sdpPort(string(inv.Body())); got != callerMediaPort {
		t.Errorf("the human was offered media port %d, want the caller's %d\n%s", got, callerMediaPort, inv.Body())
	}
	recv(t, human.acks, "ACK at the human")

	re := recv(t, carrier.invites, "re-INVITE at the caller")
	agentTag, _ := ds.InviteResponse.To().Params.Get("tag")
	callerTag, _ := ds.InviteRequest.From().Params.Get("tag")
	if tag, _ := re.From().Params.Get("tag"); tag != agentTag {
		t.Errorf("re-INVITE From tag %q, want the agent's %q", tag, agentTag)
	}
	if tag, _ := re.To().Params.Get("tag"); tag != callerTag {
		t.Errorf("re-INVITE To tag %q, want the caller's %q", tag, callerTag)
	}
	if re.CallID().Value() != callID {
		t.Errorf("re-INVITE Call-ID %s, want the caller's %s", re.CallID().Value(), callID)
	}
	if cs := re.CSeq().SeqNo; cs < infoCSeqBase {
		t.Errorf("re-INVITE CSeq %d, want above the caller-facing numbering (>= %d)", cs, infoCSeqBase)
	}
	if got := sdpPort(string(re.Body())); got != humanMediaPort {
		t.Errorf("the caller was offered media port %d, want the human's %d\n%s", got, humanMediaPort, re.Body())
	}
	if o := sdpOrigin(re.Body()); o != "o=- 1 2 IN IP4 127.0.0.1" {
		t.Errorf("re-INVITE o= %q, want the agent's session with version 2", o)
	}
	ack := recv(t, carrier.acks, "ACK of the re-INVITE at the caller")
	if ack.CSeq().SeqNo != re.CSeq().SeqNo || ack.CSeq().MethodName != sip.ACK {
		t.Errorf("ACK CSeq %s, want %d ACK", ack.CSeq().Value(), re.CSeq().SeqNo)
	}
	recv(t, agent.byes, "BYE at the agent")
	if tr := lastTransfer(t, e, calls.TransferCompleted); tr.Mode != TransferBridge || tr.Status != 200 {
		t.Errorf("transfer %+v, want bridge completed 200", tr)
	}

	// a session refresh (the o= the caller answered with) is answered
	// with the SDP the caller has; a media move cannot be carried: 488
	refresh := sip.NewRequest(sip.INVITE, ds.InviteResponse.Contact().Address)
	refresh.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	refresh.SetBody([]byte(callerReSDP))
	res, err := ds.Do(ctx, refresh)
	if err != nil || res.StatusCode != 200 || sdpPort(string(res.Body())) != humanMediaPort {
		t.Fatalf("caller's session refresh after the bridge: %v %v, want 200 with the human's port", res, err)
	}
	move := sip.NewRequest(sip.INVITE, ds.InviteResponse.Contact().Address)
	move.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	move.SetBody([]byte(strings.Replace(callerReSDP, "9 10", "9 11", 1)))
	if res, err := ds.Do(ctx, move); err != nil || res.StatusCode != 488 {
		t.Errorf("caller's media move after the bridge: %v %v, want 488", res, err)
	}
	select {
	case r := <-agent.invites:
		t.Errorf("the agent got %s after it was hung up", r.Method)
	default:
	}

	// the caller hangs up: the human gets BYE
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("caller's BYE: %v", err)
	}
	bye := recv(t, human.byes, "BYE at the human")
	if bye.CallID().Value() != inv.CallID().Value() {
		t.Errorf("BYE at the human in %s, want the new leg %s", bye.CallID().Value(), inv.CallID().Value())
	}
	if end := e.events.waitEvent(t, calls.Ended, callID); end.Reason != "bye_caller" {
		t.Errorf("ended %s, want bye_caller", end.Reason)
	}
}

// TestBridgeDirectMediaRefused: the caller refuses the re-INVITE (488)
// of a direct-media bridged transfer the agent asked for by REFER (which
// the caller's carrier refused, so callgate bridges): the human gets BYE,
// the transfer failed with 488, the agent keeps the call (it gets no
// BYE, and the caller's BYE reaches it).
func TestBridgeDirectMediaRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	human := newUA(t, "127.0.0.1", answerHuman)
	e, carrier, agent, ds := directBridgeEdge(t, human)
	carrier.reinvite.Store(488)
	callID := ds.InviteRequest.CallID().Value()
	var sess *sipgo.DialogServerSession
	checkFor(t, 5*time.Second, func() error {
		if sess = agent.session(callID); sess == nil {
			return errors.New("no agent dialog yet")
		}
		return nil
	})
	refer := sip.NewRequest(sip.REFER, ds.InviteRequest.Contact().Address)
	refer.AppendHeader(sip.NewHeader("Refer-To", "<tel:"+bridgeDest+">"))
	res, err := sess.Do(ctx, refer)
	if err != nil || res.StatusCode != 202 {
		t.Fatalf("the agent's REFER (refused by the carrier, bridged): %v %v, want 202", res, err)
	}
	recv(t, human.invites, "INVITE at the human")
	recv(t, human.acks, "ACK at the human")
	re := recv(t, carrier.invites, "re-INVITE at the caller")
	if re.Method != sip.INVITE {
		t.Fatalf("got %s at the caller", re.Method)
	}
	recv(t, human.byes, "BYE at the human")
	if tr := lastTransfer(t, e, calls.TransferFailed); tr.Status != 488 || tr.Via != "sip_refer" {
		t.Errorf("transfer %+v, want failed 488 via sip_refer", tr)
	}
	select {
	case <-agent.byes:
		t.Fatalf("the agent got BYE though the transfer failed")
	default:
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("caller's BYE: %v", err)
	}
	recv(t, agent.byes, "the caller's BYE at the agent")
	if end := e.events.waitEvent(t, calls.Ended, callID); end.Reason != "bye_caller" || end.Transfer == nil || end.Transfer.State != calls.TransferFailed {
		t.Errorf("ended %s with transfer %+v, want bye_caller, failed", end.Reason, end.Transfer)
	}
}

// TestSDPNextVersion: callgate's re-INVITE offers the new leg's SDP as
// the next version of the session the caller has (RFC 3264 8): the
// previous o= username and session id, its version plus one, the new
// leg's address fields; nothing to go on leaves the SDP as it is.
func TestSDPNextVersion(t *testing.T) {
	for _, tc := range []struct{ name, sdp, prev, want string }{
		{"agent session, human address", humanSDP, testSDP, "o=- 1 2 IN IP4 127.0.0.1"},
		{"64-bit version", "v=0\r\no=h 5 5 IN IP6 ::1\r\n", "v=0\r\no=agent 42 18446744073709551614 IN IP4 10.0.0.1\r\n", "o=agent 42 18446744073709551615 IN IP6 ::1"},
		{"no previous o=", humanSDP, "v=0\r\n", "o=human 5 5 IN IP4 127.0.0.1"},
		{"bad previous version", humanSDP, "v=0\r\no=a 1 x IN IP4 1.2.3.4\r\n", "o=human 5 5 IN IP4 127.0.0.1"},
	} {
		got := sdpNextVersion([]byte(tc.sdp), []byte(tc.prev))
		if o := sdpOrigin(got); o != tc.want {
			t.Errorf("%s: o= %q, want %q", tc.name, o, tc.want)
		}
		if sdpMediaAddr(got) != sdpMediaAddr([]byte(tc.sdp)) {
			t.Errorf("%s: media address changed: %q", tc.name, got)
		}
	}
	if !sameSession([]byte(callerReSDP), []byte(callerReSDP)) || sameSession([]byte(callerSDP), []byte(callerReSDP)) {
		t.Errorf("sameSession: a refresh (same o=) must be the same session, another version not")
	}
	if got := sdpMediaAddr([]byte(humanSDP)); got != "127.0.0.1 42000" {
		t.Errorf("sdpMediaAddr(humanSDP) = %q", got)
	}
}

// TestBridgeDirectMediaTargetLeaves: the human hangs up while the caller
// is being re-INVITEd to its media: the transfer fails (503), and once
// the caller accepted that re-INVITE it is re-INVITEd back to the agent's
// media (next o= version); the agent keeps the call.
func TestBridgeDirectMediaTargetLeaves(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	human := newUA(t, "127.0.0.1", answerHuman)
	hold := make(chan struct{})
	e, carrier, agent, ds := directBridgeEdge(t, human)
	carrier.mu.Lock()
	carrier.reinviteHold = hold
	carrier.mu.Unlock()
	callID := ds.InviteRequest.CallID().Value()
	if rep, _ := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: callID,
		Workspace: "w", To: "tel:" + bridgeDest, Mode: TransferBridge}); rep.Status != 202 {
		t.Fatalf("bridge: %+v, want 202", rep)
	}
	inv := recv(t, human.invites, "INVITE at the human")
	recv(t, human.acks, "ACK at the human")
	re := recv(t, carrier.invites, "re-INVITE at the caller")
	var sess *sipgo.DialogServerSession
	checkFor(t, 5*time.Second, func() error {
		if sess = human.session(inv.CallID().Value()); sess == nil {
			return errors.New("no dialog at the human yet")
		}
		return nil
	})
	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("the human's BYE: %v", err)
	}
	if tr := lastTransfer(t, e, calls.TransferFailed); tr.Status != 503 {
		t.Errorf("transfer %+v, want failed 503", tr)
	}
	close(hold) // the caller accepts the first re-INVITE, then the second
	recv(t, carrier.acks, "ACK of the re-INVITE")
	back := recv(t, carrier.invites, "re-INVITE back to the agent")
	if got := sdpPort(string(back.Body())); got != 40000 {
		t.Errorf("the caller was re-INVITEd back to media port %d, want the agent's 40000\n%s", got, back.Body())
	}
	if o := sdpOrigin(back.Body()); o != "o=- 1 3 IN IP4 127.0.0.1" {
		t.Errorf("re-INVITE back: o= %q, want the agent's session, version 3", o)
	}
	if back.CSeq().SeqNo <= re.CSeq().SeqNo {
		t.Errorf("re-INVITE back CSeq %d, want above %d", back.CSeq().SeqNo, re.CSeq().SeqNo)
	}
	recv(t, carrier.acks, "ACK of the re-INVITE back")
	select {
	case <-agent.byes:
		t.Fatalf("the agent got BYE though the transfer failed")
	default:
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("caller's BYE: %v", err)
	}
	recv(t, agent.byes, "the caller's BYE at the agent")
}

// TestBridgeDirectMediaAfterReinvites: the agent and the caller each
// moved their media by re-INVITE before the transfer: the human is
// offered the caller's latest media port, and callgate's re-INVITE of the
// caller numbers the next o= version after the agent's latest (the test
// agent answers the caller's re-INVITE with its first SDP, version 1:
// the version callgate numbers from never goes back).
func TestBridgeDirectMediaAfterReinvites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	human := newUA(t, "127.0.0.1", answerHuman)
	e, carrier, agent, ds := directBridgeEdge(t, human)
	callID := ds.InviteRequest.CallID().Value()
	var sess *sipgo.DialogServerSession
	checkFor(t, 5*time.Second, func() error {
		if sess = agent.session(callID); sess == nil {
			return errors.New("no agent dialog yet")
		}
		return nil
	})
	// the agent's re-INVITE: its session, version 7, port 40010 (the
	// caller answers testSDP)
	agentRe := sip.NewRequest(sip.INVITE, ds.InviteRequest.Contact().Address)
	agentRe.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	agentRe.SetBody([]byte(strings.NewReplacer("o=- 1 1", "o=- 1 7", "40000", "40010").Replace(testSDP)))
	if res, err := sess.Do(ctx, agentRe); err != nil || res.StatusCode != 200 {
		t.Fatalf("the agent's re-INVITE: %v %v", res, err)
	}
	recv(t, carrier.invites, "the agent's re-INVITE at the caller")
	// the caller's re-INVITE: its media moves to 41010 (the agent answers)
	callerRe := sip.NewRequest(sip.INVITE, ds.InviteResponse.Contact().Address)
	callerRe.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	callerRe.SetBody([]byte(strings.NewReplacer("9 9", "9 10", "41000", "41010").Replace(callerSDP)))
	if res, err := ds.Do(ctx, callerRe); err != nil || res.StatusCode != 200 {
		t.Fatalf("the caller's re-INVITE: %v %v", res, err)
	}
	recv(t, agent.invites, "the caller's re-INVITE at the agent")

	if rep, _ := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: callID,
		Workspace: "w", To: "tel:" + bridgeDest, Mode: TransferBridge}); rep.Status != 202 {
		t.Fatalf("bridge: %+v, want 202", rep)
	}
	inv := recv(t, human.invites, "INVITE at the human")
	if got := sdpPort(string(inv.Body())); got != 41010 {
		t.Errorf("the human was offered media port %d, want the caller's latest 41010", got)
	}
	re := recv(t, carrier.invites, "re-INVITE at the caller")
	if o := sdpOrigin(re.Body()); o != "o=- 1 8 IN IP4 127.0.0.1" {
		t.Errorf("re-INVITE o= %q, want the agent's session after its version 7", o)
	}
	recv(t, agent.byes, "BYE at the agent")
}
