package sip

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/media"
)

// TestEarlyUpdateRelayed: in a relayed call, an UPDATE with an SDP offer
// sent by the caller in the early dialog (after a reliable 183, before
// the answer) reaches the agent by the 183's route set with the offer
// rewritten to the call's relay port, like the INVITE's (the early
// dialog is recorded from the 183); the agent's 2xx to the INVITE then
// completes the call.
func TestEarlyUpdateRelayed(t *testing.T) {
	updates := make(chan *sip.Request, 1)
	agent := newUA(t, "127.0.0.1", func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
		p := sip.NewResponseFromRequest(req, 183, "Session Progress", []byte(testSDP))
		p.To().Params = p.To().Params.Add("tag", "agent-early")
		p.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bot", Host: u.host, Port: u.port}})
		p.AppendHeader(sip.NewHeader("Require", "100rel"))
		p.AppendHeader(sip.NewHeader("RSeq", "1"))
		p.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		_ = tx.Respond(p)
		select {
		case up := <-u.others: // the UPDATE (answered 200 by the UA)
			updates <- up
		case <-time.After(10 * time.Second):
			return
		}
		ok := sip.NewResponseFromRequest(req, 200, "OK", []byte(testSDP))
		ok.To().Params = ok.To().Params.Add("tag", "agent-early")
		ok.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bot", Host: u.host, Port: u.port}})
		ok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		_ = tx.Respond(ok)
	})
	mgr := newMediaManager(t, 31600, 31699)
	e := runEdge(t, relayTable(agent.endpoint("eu")), nil, media.Anchor[MediaSession]{M: mgr})
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "early-upd", "Supported: 100rel\r\n"))
	inv := recv(t, agent.invites, "INVITE at the agent")
	agentSide := sdpPort(string(inv.Body()))
	var p183 string
	deadline := time.Now().Add(5 * time.Second)
	for p183 == "" && time.Now().Before(deadline) {
		if m := raw.read(time.Until(deadline)); strings.HasPrefix(m, "SIP/2.0 183 ") {
			p183 = m
		}
	}
	if p183 == "" || !strings.Contains(p183, "\r\nRSeq: 1\r\n") || !strings.Contains(p183, "Require: 100rel") {
		t.Fatalf("no reliable 183 at the caller:\n%s", p183)
	}
	var rr []string
	for _, l := range strings.Split(p183, "\r\n") {
		if strings.HasPrefix(l, "Record-Route: ") {
			rr = append(rr, "Route: "+strings.TrimPrefix(l, "Record-Route: "))
		}
	}
	if len(rr) == 0 {
		t.Fatalf("183 without Record-Route:\n%s", p183)
	}
	moved := strings.Replace(testSDP, "m=audio 40000 ", "m=audio 40200 ", 1)
	raw.send(fmt.Sprintf("UPDATE sip:bot@127.0.0.1:%d SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-early-upd-2;rport\r\n%s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:+15005550006@127.0.0.1>;tag=caller-early-upd\r\n"+
		"To: <sip:%s@127.0.0.1>;tag=agent-early\r\nCall-ID: early-upd\r\nCSeq: 2 UPDATE\r\n"+
		"Contact: <sip:caller@127.0.0.1:%d>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		agent.port, raw.port(), strings.Join(rr, "\r\n"), numPurchased, raw.port(), len(moved), moved))
	var up *sip.Request
	select {
	case up = <-updates:
	case <-time.After(5 * time.Second):
		t.Fatal("the early UPDATE did not reach the agent")
	}
	if p := sdpPort(string(up.Body())); p != agentSide {
		t.Errorf("early UPDATE offers the agent port %d, want the call's relay port %d\n%s", p, agentSide, up.Body())
	}
	if res := raw.readFinal(5 * time.Second); !strings.HasPrefix(res, "SIP/2.0 200 ") {
		t.Fatalf("want 200 (UPDATE, then INVITE), got\n%s", res)
	}
}
