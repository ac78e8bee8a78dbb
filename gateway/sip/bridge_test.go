package sip

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

const (
	numBridge  = "+12282001250" // sandbox number of the bridge tests
	bridgeDest = "+14155550143" // the "human" the agent transfers to
)

// bridgeTable: agent a1 in relay mode at ep answers sandbox number
// numBridge; agent a2 (the transfer target) is at a2 when given.
func bridgeTable(ep routing.Endpoint, media string, a2 ...routing.Endpoint) *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Media: media, Endpoints: []routing.Endpoint{ep}})
	if len(a2) > 0 {
		b.AddAgent(routing.Agent{ID: "a2", Workspace: "w", Media: media, Endpoints: a2})
	}
	b.AddNumber(routing.Number{E164: numBridge, Workspace: "w", Carrier: "sandbox", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	b.AddWorkspace(routing.Workspace{ID: "w"})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

// rtpCounter counts the RTP packets (payload type pt) arriving at a UDP
// socket: the transfer target's media port.
type rtpCounter struct {
	conn *net.UDPConn
	n    atomic.Int64
	from atomic.Value // string: source of the last packet
}

func newRTPCounter(t *testing.T, pt uint8) *rtpCounter {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &rtpCounter{conn: conn}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		var p rtp.Packet
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if p.Unmarshal(buf[:n]) == nil && p.PayloadType == pt {
				r.n.Add(1)
				r.from.Store(from.String())
			}
		}
	}()
	return r
}

func (r *rtpCounter) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

// waitSIPp waits until a SIPp has bound UDP port on 127.0.0.1; a SIPp
// that never does fails the test with its output.
func waitSIPp(t *testing.T, port int, out *strings.Builder, dir string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // SIPp starts slowly on a loaded machine
	for time.Now().Before(deadline) {
		if portBound("udp", port) { // never a probe that binds: it could take the port from SIPp
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("SIPp did not bind 127.0.0.1:%d:\n%s\n%s", port, tail(out.String()), sippErrors(dir))
}

// sippMessages is the -trace_msg log of the SIPp run with scenario
// scen (file name) in dir.
func sippMessages(t *testing.T, dir, scen string) string {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(dir, strings.TrimSuffix(scen, ".xml")+"_*_messages.log"))
	if len(ms) == 0 {
		t.Fatalf("no SIPp message log for %s in %s", scen, dir)
	}
	b, err := os.ReadFile(ms[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// receivedInvite is the first INVITE a SIPp UAS logged (its text).
func receivedInvite(log string) string {
	i := strings.Index(log, "INVITE sip:")
	if i < 0 {
		return ""
	}
	rest := log[i:]
	if j := strings.Index(rest, "----------"); j > 0 {
		rest = rest[:j]
	}
	return rest
}

// TestSIPpBridgedTransfer: SIPp plays the caller's carrier, which
// answers REFER 501, the agent, which transfers with REFER to
// tel:+14155550143, and the "human" behind the sandbox termination.
// callgate carries the transfer out itself:
//   - the human answers: it gets an INVITE for +14155550143 from the
//     called gateway number, offering only the codec the caller and agent
//     agreed on (PCMA) and telephone-event; the agent gets 202, NOTIFYs
//     ending in 200 and a BYE; the caller's RTP (g711a.pcap) reaches the
//     human's media port through the relay; the caller's BYE reaches the
//     human; the events say mode bridge, completed, and the call ends
//     bye_caller with that transfer;
//   - the human is busy (486): the agent's final NOTIFY says 486, the
//     caller stays with the agent (the agent's INFO reaches it, its BYE
//     reaches the agent); the outcome is busy with status 486;
//   - direct media (agent media: direct): the human is offered the
//     caller's own media port, the caller gets a re-INVITE with the
//     human's media port, accepts it and sends its RTP straight to the
//     human (bridge3pcc.go).
func TestSIPpBridgedTransfer(t *testing.T) {
	const pcap = "/usr/share/sip-tester/g711a.pcap"
	for _, f := range []string{sippBin, pcap} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (Debian sip-tester)", f)
		}
	}
	if testing.Short() {
		t.Skip("runs SIPp for 8 s")
	}
	cases := []struct {
		name, caller, agent, human string
		mline                      string // the new leg's offer: the agreed codec and telephone-event
		want                       string
		status                     int
		media                      string
	}{
		{"human answers", "uac_bridge.xml", "uas_bridge_agent.xml", "uas_bridge_human.xml", "RTP/AVP 8 101", calls.TransferCompleted, 200, routing.MediaRelay},
		{"human busy", "uac_refer_refuse.xml", "uas_bridge_agent_busy.xml", "uas_bridge_human_busy.xml", "RTP/AVP 0 101", calls.TransferBusy, 486, routing.MediaRelay},
		{"direct media", "uac_bridge_direct.xml", "uas_bridge_agent.xml", "uas_bridge_human.xml", "RTP/AVP 8 101", calls.TransferCompleted, 200, routing.MediaDirect},
	}
	scen, _ := filepath.Abs("testdata/sipp")
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			human := newRTPCounter(t, 8)
			// each SIPp binds its port right after it is picked (the
			// edge's own ports come after: no free port taken meanwhile)
			humanPort := freeUDPPort(t)
			hum, humOut := startSIPp(t, dir, 40, "-sf", filepath.Join(scen, tc.human), "-i", "127.0.0.1",
				"-p", strconv.Itoa(humanPort), "-mp", strconv.Itoa(freeUDPPort(t)), "-m", "1", "-nostdin", "-trace_err", "-trace_msg",
				"-key", "human_rtp", strconv.Itoa(human.port()))
			waitSIPp(t, humanPort, humOut, dir)
			agentPort := freeUDPPort(t)
			ag, agOut := startSIPp(t, dir, 40, "-sf", filepath.Join(scen, tc.agent), "-i", "127.0.0.1",
				"-p", strconv.Itoa(agentPort), "-mp", strconv.Itoa(freeUDPPort(t)), "-m", "1", "-nostdin", "-trace_err",
				"-key", "refer_to", "tel:"+bridgeDest)
			waitSIPp(t, agentPort, agOut, dir)
			mgr := newMediaManager(t, 31500+20*i, 31519+20*i)
			table := bridgeTable(routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(agentPort)}, tc.media)
			e := runAgentEdge(t, table, "sip:pstn@127.0.0.1:"+strconv.Itoa(humanPort), nil, func(d *Deps) {
				d.Media = media.Anchor[MediaSession]{M: mgr}
			})
			callerRTP := freeUDPPort(t)
			car, carOut := startSIPp(t, dir, 40, "-sf", filepath.Join(scen, tc.caller), "-i", "127.0.0.1",
				"-mi", "127.0.0.1", "-mp", strconv.Itoa(callerRTP),
				"-s", numBridge, "127.0.0.1:"+strconv.Itoa(int(e.UDPAddr().Port())), "-m", "1", "-nostdin", "-trace_err", "-trace_msg")
			if err := car.Wait(); err != nil {
				t.Fatalf("sipp caller: %v\n%s\nagent:\n%s\nhuman:\n%s\n%s", err, tail(carOut.String()), tail(agOut.String()),
					tail(humOut.String()), sippErrors(dir))
			}
			if err := ag.Wait(); err != nil {
				t.Fatalf("sipp agent: %v\n%s\n%s", err, tail(agOut.String()), sippErrors(dir))
			}
			if err := hum.Wait(); err != nil {
				t.Fatalf("sipp human: %v\n%s\n%s", err, tail(humOut.String()), sippErrors(dir))
			}

			// the new leg's INVITE, as the human got it
			inv := strings.ReplaceAll(receivedInvite(sippMessages(t, dir, tc.human)), "\r", "")
			if !strings.HasPrefix(inv, "INVITE sip:"+bridgeDest+"@127.0.0.1:"+strconv.Itoa(humanPort)+" SIP/2.0") {
				t.Errorf("the human's INVITE: want Request-URI %s at the termination\n%s", bridgeDest, inv)
			}
			if !strings.Contains(inv, "From: <sip:"+numBridge+"@") || !strings.Contains(inv, "P-Asserted-Identity: <sip:"+numBridge+"@") {
				t.Errorf("the human's INVITE: want caller ID %s (the called gateway number)\n%s", numBridge, inv)
			}
			if !strings.Contains(inv, tc.mline+"\n") || strings.Count(inv, "a=rtpmap:") != 2 {
				t.Errorf("the human's INVITE: want %q (the agreed codec only, and telephone-event)\n%s", tc.mline, inv)
			}
			if tc.media == routing.MediaDirect {
				// the human is offered the caller's own media; the caller is
				// re-INVITEd (the last INVITE in its log) to the human's
				if want := "m=audio " + strconv.Itoa(callerRTP) + " "; !strings.Contains(inv, want) {
					t.Errorf("the human's INVITE: want the caller's media %q\n%s", want, inv)
				}
				log := sippMessages(t, dir, tc.caller)
				re := strings.ReplaceAll(log[strings.LastIndex(log, "INVITE sip:"):], "\r", "")
				if j := strings.Index(re, "----------"); j > 0 {
					re = re[:j]
				}
				if want := "m=audio " + strconv.Itoa(human.port()) + " "; !strings.Contains(re, want) || !strings.Contains(re, "CSeq: ") {
					t.Errorf("the caller's re-INVITE: want the human's media %q\n%s", want, re)
				}
			}

			ended := e.events.waitEvent(t, calls.Ended, "")
			if ended.Status != 200 || ended.Reason != "bye_caller" {
				t.Errorf("ended %d %s, want 200 bye_caller", ended.Status, ended.Reason)
			}
			var states, modes []string
			e.events.mu.Lock()
			for _, ev := range e.events.events {
				if ev.Kind == calls.TransferKind && ev.Transfer != nil {
					states = append(states, ev.Transfer.State)
					modes = append(modes, ev.Transfer.Mode)
				}
			}
			e.events.mu.Unlock()
			if len(states) < 3 || states[len(states)-1] != tc.want || modes[len(modes)-1] != TransferBridge || modes[0] != "refer" {
				t.Fatalf("transfer states %v modes %v, want refer trying, bridge trying, … bridge %s", states, modes, tc.want)
			}
			if ended.Transfer == nil || ended.Transfer.State != tc.want || ended.Transfer.Status != tc.status ||
				ended.Transfer.Mode != TransferBridge || ended.Transfer.To != "tel:"+bridgeDest {
				t.Errorf("ended event's transfer %+v, want bridge %s %d to tel:%s", ended.Transfer, tc.want, tc.status, bridgeDest)
			}
			if got := testutil.ToFloat64(e.xferMetrics.Transfers.WithLabelValues("sip_refer", tc.want)); got != 1 {
				t.Errorf("callgate_sip_transfers_total{via=sip_refer,outcome=%s} = %v, want 1", tc.want, got)
			}
			if got := testutil.ToFloat64(e.xferMetrics.Transfers.WithLabelValues("sip_refer", calls.TransferFailed)); got != 0 {
				t.Errorf("the carrier's 501 counted as a failed transfer (%v)", got)
			}
			n := human.n.Load()
			t.Logf("RTP packets at the human's media port: %d (from %v)", n, human.from.Load())
			if from, _ := human.from.Load().(string); tc.media == routing.MediaDirect && from != "127.0.0.1:"+strconv.Itoa(callerRTP) {
				t.Errorf("the human's RTP came from %s, want straight from the caller's media port %d", from, callerRTP)
			}
			if tc.want == calls.TransferCompleted {
				// 236 packets over 7 s; the bridge is up well within the
				// first second, loaded CI or not most must arrive
				if n < 100 {
					t.Errorf("%d RTP packets from the caller reached the human, want most of the capture's 236", n)
				}
			} else if n != 0 {
				t.Errorf("%d RTP packets reached the busy human", n)
			}
		})
	}
}

// bridgeEdge: a relayed (or direct) call from a sipgo carrier to a sipgo
// agent, answered, on an edge whose sandbox termination is human.
func bridgeEdge(t *testing.T, mediaMode string, human *testUA, m *testMeter, tweak func(*Config), a2 ...routing.Endpoint) (*testEdge, *testUA, *testUA, *sipgo.DialogClientSession) {
	t.Helper()
	agent := newUA(t, "127.0.0.1")
	mgr := newMediaManager(t, 31560, 31579)
	e := runAgentEdge(t, bridgeTable(agent.endpoint("local"), mediaMode, a2...), sandboxURI(human), tweak, func(d *Deps) {
		d.Media = media.Anchor[MediaSession]{M: mgr}
		if m != nil {
			d.Usage = m
		}
	})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, _, err := carrier.call(ctx, e, numBridge)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	_ = ds.Ack(ctx)
	recv(t, agent.invites, "INVITE at the agent")
	recv(t, agent.acks, "ACK at the agent")
	return e, carrier, agent, ds
}

// TestBridgeAPITransfer: POST /v1/calls/{id}/transfer with mode bridge
// (the ControlBus command) on a relayed call: 202; the human behind the
// sandbox termination gets the INVITE (destination, caller ID) and the
// ACK, the agent a BYE; an INFO from the caller is answered by callgate
// (the agent is gone); the new leg is metered under its own call id; the
// human's BYE reaches the caller and ends the call bye_transfer_target.
// On a call whose media is not relayed, the caller is re-INVITEd.
func TestBridgeAPITransfer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	t.Run("direct media", func(t *testing.T) {
		// the caller is re-INVITEd to the human's media (TestBridgeDirectMedia)
		human := newUA(t, "127.0.0.1")
		e, carrier, agent, ds := bridgeEdge(t, routing.MediaDirect, human, nil, nil)
		rep, ok := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: ds.InviteRequest.CallID().Value(),
			Workspace: "w", To: "tel:" + bridgeDest, Mode: TransferBridge})
		if !ok || rep.Status != 202 {
			t.Fatalf("bridge on a direct-media call: %+v, want 202", rep)
		}
		recv(t, human.invites, "INVITE at the human")
		recv(t, carrier.invites, "re-INVITE at the caller")
		recv(t, agent.byes, "BYE at the agent")
	})
	t.Run("relayed", func(t *testing.T) {
		human := newUA(t, "127.0.0.1")
		m := &testMeter{answered: map[string]string{}, ended: map[string]int{}}
		e, carrier, agent, ds := bridgeEdge(t, routing.MediaRelay, human, m, nil)
		callID := ds.InviteRequest.CallID().Value()
		rep, ok := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: callID,
			Workspace: "w", To: bridgeDest, Mode: TransferBridge})
		if !ok || rep.Status != 202 || rep.Detail["mode"] != TransferBridge || rep.Detail["state"] != calls.TransferTrying {
			t.Fatalf("bridge transfer: %+v, want 202 mode bridge state trying", rep)
		}
		inv := recv(t, human.invites, "INVITE at the human")
		if inv.Recipient.User != bridgeDest || inv.From().Address.User != numBridge {
			t.Errorf("the human's INVITE: %s from %s, want %s from %s", inv.Recipient.String(), inv.From().Address.String(), bridgeDest, numBridge)
		}
		leg := inv.CallID().Value()
		if leg == callID {
			t.Errorf("the new leg reuses the caller's Call-ID")
		}
		recv(t, human.acks, "ACK at the human")
		recv(t, agent.byes, "BYE at the agent")
		if tr := lastTransfer(t, e, calls.TransferCompleted); tr.Mode != TransferBridge || tr.Via != "api" || tr.Status != 200 || tr.To != "tel:"+bridgeDest {
			t.Errorf("transfer %+v", tr)
		}
		m.mu.Lock()
		dest := m.answered[leg]
		m.mu.Unlock()
		if dest != bridgeDest {
			t.Errorf("metering of the new leg %s: %q, want %s", leg, dest, bridgeDest)
		}

		// the caller's in-dialog request is answered here; the agent sees nothing
		info := sip.NewRequest(sip.INFO, ds.InviteResponse.Contact().Address)
		res, err := ds.Do(ctx, info)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("caller's INFO after the bridge: %v %v", res, err)
		}
		select {
		case r := <-agent.others:
			t.Errorf("the agent got %s after it was hung up", r.Method)
		default:
		}

		// a session refresh from the caller is answered here with the SDP it has
		reinv := sip.NewRequest(sip.INVITE, ds.InviteResponse.Contact().Address)
		reinv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		reinv.SetBody([]byte(testSDP))
		res, err = ds.Do(ctx, reinv)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("caller's re-INVITE after the bridge: %v %v", res, err)
		}
		if got, want := sdpPort(string(res.Body())), sdpPort(string(ds.InviteResponse.Body())); got == 0 || got != want {
			t.Errorf("re-INVITE answered with media port %d, want the caller's relay port %d", got, want)
		}
		select {
		case r := <-agent.invites:
			t.Errorf("the agent got the caller's re-INVITE (%s) after it was hung up", r.Method)
		default:
		}

		// once bridged, the call is not transferred again
		if rep, _ := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: callID, Workspace: "w",
			To: bridgeDest, Mode: TransferBridge}); rep.Status != 409 {
			t.Errorf("second transfer of a bridged call: %+v, want 409", rep)
		}

		// the human hangs up: the caller gets BYE
		var sess *sipgo.DialogServerSession
		checkFor(t, 5*time.Second, func() error {
			if sess = human.session(leg); sess == nil {
				return errors.New("no dialog at the human yet")
			}
			return nil
		})
		if err := sess.Bye(ctx); err != nil {
			t.Fatalf("the human's BYE: %v", err)
		}
		recv(t, carrier.byes, "BYE at the caller")
		end := e.events.waitEvent(t, calls.Ended, callID)
		if end.Reason != "bye_transfer_target" || end.Transfer == nil || end.Transfer.State != calls.TransferCompleted {
			t.Errorf("ended %s with transfer %+v, want bye_transfer_target, completed", end.Reason, end.Transfer)
		}
		checkFor(t, 5*time.Second, func() error {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.ended[leg] != 1 {
				return errorf("new leg metering ended %d times, want 1", m.ended[leg])
			}
			return nil
		})
	})
}

// TestBridgeNoAnswer: the new leg rings past ring_timeout: callgate
// CANCELs it, the outcome is no_answer (408), and the caller stays with
// the agent (its BYE reaches the agent).
func TestBridgeNoAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	human := newUA(t, "127.0.0.1", ringForever)
	e, _, agent, ds := bridgeEdge(t, routing.MediaRelay, human, nil, func(c *Config) { c.RingTimeout = time.Second })
	callID := ds.InviteRequest.CallID().Value()
	rep, _ := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: callID, Workspace: "w", To: "tel:" + bridgeDest, Mode: TransferBridge})
	if rep.Status != 202 {
		t.Fatalf("bridge transfer: %+v", rep)
	}
	recv(t, human.invites, "INVITE at the human")
	recv(t, human.cancels, "CANCEL at the human")
	if last := lastTransfer(t, e, calls.TransferNoAnswer); last.Status != 408 || last.Mode != TransferBridge {
		t.Errorf("transfer %+v, want bridge no_answer 408", last)
	}
	select {
	case <-agent.byes:
		t.Fatal("the agent got BYE though the transfer failed")
	default:
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("caller's BYE: %v", err)
	}
	recv(t, agent.byes, "BYE at the agent (the caller stayed with it)")
	if end := e.events.waitEvent(t, calls.Ended, callID); end.Reason != "bye_caller" || end.Transfer == nil || end.Transfer.State != calls.TransferNoAnswer {
		t.Errorf("ended %+v", end)
	}
}

// lastTransfer waits for a transfer event in state want and returns it.
func lastTransfer(t *testing.T, e *testEdge, want string) calls.TransferInfo {
	t.Helper()
	var got calls.TransferInfo
	checkFor(t, 10*time.Second, func() error {
		e.events.mu.Lock()
		defer e.events.mu.Unlock()
		for _, ev := range e.events.events {
			if ev.Kind == calls.TransferKind && ev.Transfer != nil && ev.Transfer.State == want {
				got = *ev.Transfer
				return nil
			}
		}
		return errorf("no %s transfer event yet", want)
	})
	return got
}

// TestBridgeFallbackAPIBlind: an API blind transfer whose REFER the
// caller's carrier refuses (sipgo's UA has no REFER handler: 405) is
// carried out by callgate: the human gets the new leg, the agent a BYE,
// and the transfer (via api) ends completed in mode bridge.
func TestBridgeFallbackAPIBlind(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	human := newUA(t, "127.0.0.1")
	e, _, agent, ds := bridgeEdge(t, routing.MediaRelay, human, nil, nil)
	rep, _ := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: ds.InviteRequest.CallID().Value(),
		Workspace: "w", To: "tel:" + bridgeDest, Mode: TransferBlind})
	if rep.Status != 202 || rep.Detail["mode"] != TransferBlind {
		t.Fatalf("blind transfer: %+v", rep)
	}
	inv := recv(t, human.invites, "INVITE at the human (the carrier refused the REFER)")
	if inv.Recipient.User != bridgeDest {
		t.Errorf("new leg to %s, want %s", inv.Recipient.String(), bridgeDest)
	}
	recv(t, agent.byes, "BYE at the agent")
	if tr := lastTransfer(t, e, calls.TransferCompleted); tr.Mode != TransferBridge || tr.Via != "api" {
		t.Errorf("transfer %+v, want bridge via api", tr)
	}
	if got := testutil.ToFloat64(e.xferMetrics.Transfers.WithLabelValues("api", calls.TransferCompleted)); got != 1 {
		t.Errorf("callgate_sip_transfers_total{via=api,outcome=completed} = %v", got)
	}
}

// TestBridgeReferToAgent: the agent's REFER to another agent of the
// workspace (sip:agent=a2@callgate) is answered 202 by callgate, which
// calls a2's endpoint offering the agreed codec (PCMU, the first of the
// agent's answer) and telephone-event, and hangs up the first agent when
// a2 answers; the caller's BYE then reaches a2.
func TestBridgeReferToAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	human := newUA(t, "127.0.0.1")
	a2 := newUA(t, "127.0.0.1")
	e, _, agent, ds := bridgeEdge(t, routing.MediaRelay, human, nil, nil, a2.endpoint("local"))
	callID := ds.InviteRequest.CallID().Value()
	var sess *sipgo.DialogServerSession
	checkFor(t, 5*time.Second, func() error {
		if sess = agent.session(callID); sess == nil {
			return errors.New("no agent dialog yet")
		}
		return nil
	})
	refer := sip.NewRequest(sip.REFER, ds.InviteRequest.Contact().Address)
	refer.AppendHeader(sip.NewHeader("Refer-To", "<sip:agent=a2@callgate>"))
	res, err := sess.Do(ctx, refer)
	if err != nil || res.StatusCode != 202 {
		t.Fatalf("REFER to an agent: %v %v, want 202", res, err)
	}
	inv := recv(t, a2.invites, "INVITE at agent a2")
	body := strings.ReplaceAll(string(inv.Body()), "\r", "")
	if !strings.Contains(body, "m=audio ") || !strings.Contains(body, " RTP/AVP 0 101\n") || strings.Contains(body, "PCMA") {
		t.Errorf("a2's offer: want PCMU and telephone-event only\n%s", body)
	}
	recv(t, a2.acks, "ACK at agent a2")
	recv(t, agent.byes, "BYE at the first agent")
	if tr := lastTransfer(t, e, calls.TransferCompleted); tr.Mode != TransferBridge || tr.Via != "sip_refer" || tr.To != "agent:a2" && tr.To != "sip:agent=a2@callgate" {
		t.Errorf("transfer %+v", tr)
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("caller's BYE: %v", err)
	}
	recv(t, a2.byes, "BYE at agent a2")
	if end := e.events.waitEvent(t, calls.Ended, callID); end.Reason != "bye_caller" {
		t.Errorf("ended %s, want bye_caller", end.Reason)
	}
}

// TestBridgeTerminationDigest: the new leg of a bridged transfer from a
// Twilio number leaves through the integration's termination, which
// challenges (407): the INVITE is sent once more with the termination's
// credentials (same Call-ID, next CSeq) and the transfer completes.
func TestBridgeTerminationDigest(t *testing.T) {
	const user, pass = "trunkuser", "trunkPass123"
	chal := &digest.Challenge{Realm: "sip.twilio.com", Nonce: "n0nce-2", Algorithm: "MD5", QOP: []string{"auth"}}
	var mu sync.Mutex
	var invites []*sip.Request
	human := newUA(t, "127.0.0.1", func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
		mu.Lock()
		invites = append(invites, req.Clone())
		mu.Unlock()
		h := req.GetHeader("Proxy-Authorization")
		if h == nil {
			res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
			res.AppendHeader(sip.NewHeader("Proxy-Authenticate", chal.String()))
			_ = tx.Respond(res)
			return
		}
		cr, err := digest.ParseCredentials(h.Value())
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Auth", nil))
			return
		}
		want, _ := digest.Digest(chal, digest.Options{Method: "INVITE", URI: cr.URI, Username: user, Password: pass,
			Count: cr.Nc, Cnonce: cr.Cnonce})
		if cr.Username != user || cr.Response != want.Response {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 403, "Bad Credentials", nil))
			return
		}
		answer(u, req, tx)
	})
	agent := newUA(t, "127.0.0.1")
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Media: routing.MediaRelay, Endpoints: []routing.Endpoint{agent.endpoint("local")}})
	b.AddNumber(routing.Number{E164: numBridge, Workspace: "w", Carrier: "twilio", Origin: routing.OriginImported,
		Status: routing.StatusActive, AgentID: "a1", IntegrationID: "i1"})
	b.AddIntegration(routing.Integration{ID: "i1", Workspace: "w", Carrier: "twilio",
		Termination: routing.Termination{URIs: []string{sandboxURI(human)}, Username: user, Password: pass}})
	b.AddWorkspace(routing.Workspace{ID: "w"})
	table := &routing.Table{}
	table.Store(b.Build())
	mgr := newMediaManager(t, 31580, 31599)
	e := runAgentEdge(t, table, "", nil, func(d *Deps) { d.Media = media.Anchor[MediaSession]{M: mgr} })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	carrier := newUA(t, "127.0.0.1")
	ds, _, err := carrier.call(ctx, e, numBridge)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	_ = ds.Ack(ctx)
	recv(t, agent.acks, "ACK at the agent")
	rep, _ := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: ds.InviteRequest.CallID().Value(),
		Workspace: "w", To: "tel:" + bridgeDest, Mode: TransferBridge})
	if rep.Status != 202 {
		t.Fatalf("bridge transfer: %+v", rep)
	}
	recv(t, agent.byes, "BYE at the agent")
	if tr := lastTransfer(t, e, calls.TransferCompleted); tr.Status != 200 {
		t.Errorf("transfer %+v", tr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(invites) != 2 || invites[1].CallID().Value() != invites[0].CallID().Value() ||
		invites[1].CSeq().SeqNo != invites[0].CSeq().SeqNo+1 || invites[0].GetHeader("Proxy-Authorization") != nil {
		t.Fatalf("INVITEs at the termination: %d, want the challenged one and one with credentials (same Call-ID, next CSeq)", len(invites))
	}
}

// heldHuman answers 180 at once and its final answer (200 with SDP, or
// code) only when release is closed.
func heldHuman(release <-chan struct{}, code int) func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
	return func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		select {
		case <-release:
		case <-time.After(15 * time.Second):
			return
		}
		if code != 200 {
			_ = tx.Respond(sip.NewResponseFromRequest(req, code, "Busy Here", nil))
			return
		}
		answer(u, req, tx)
	}
}

// TestBridgeAgentLeavesEarly: an agent that hangs up right after its
// REFER's 202 (while the new leg rings) gets 200 and the caller stays:
// when the new leg answers, the caller is with it (the caller's BYE
// reaches it); when it is busy, nobody is left and callgate hangs up the
// caller (transfer_failed) instead of leaving it in silence.
func TestBridgeAgentLeavesEarly(t *testing.T) {
	for _, code := range []int{200, 486} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			release := make(chan struct{})
			human := newUA(t, "127.0.0.1", heldHuman(release, code))
			e, carrier, agent, ds := bridgeEdge(t, routing.MediaRelay, human, nil, nil)
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
			if res, err := sess.Do(ctx, refer); err != nil || res.StatusCode != 202 {
				t.Fatalf("REFER: %v %v, want 202 (sipgo's caller UA refuses REFER: bridged)", res, err)
			}
			recv(t, human.invites, "INVITE at the human")
			if err := sess.Bye(ctx); err != nil {
				t.Fatalf("the agent's BYE while the new leg rings: %v", err)
			}
			select {
			case <-carrier.byes:
				t.Fatal("the agent's BYE reached the caller while the transfer ran")
			default:
			}
			close(release)
			if code == 200 {
				recv(t, human.acks, "ACK at the human")
				lastTransfer(t, e, calls.TransferCompleted)
				if err := ds.Bye(ctx); err != nil {
					t.Fatalf("caller's BYE: %v", err)
				}
				recv(t, human.byes, "BYE at the human")
				if end := e.events.waitEvent(t, calls.Ended, callID); end.Reason != "bye_caller" {
					t.Errorf("ended %s, want bye_caller", end.Reason)
				}
				return
			}
			recv(t, carrier.byes, "BYE at the caller (the transfer failed and the agent is gone)")
			if end := e.events.waitEvent(t, calls.Ended, callID); end.Reason != "transfer_failed" || end.Transfer == nil || end.Transfer.State != calls.TransferBusy {
				t.Errorf("ended %s with %+v, want transfer_failed, busy", end.Reason, end.Transfer)
			}
		})
	}
}

// TestBridgeOffer: the new leg is offered the caller's SDP narrowed to
// the codec of the agent's answer and telephone-event (their rtpmap and
// fmtp lines only); without a usable answer, or when the caller never
// offered that codec, the offer goes as it is.
func TestBridgeOffer(t *testing.T) {
	const offer = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 111 8 0 101\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n" +
		"a=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
	answer := func(fmts string, maps ...string) []byte {
		s := "v=0\r\no=- 2 2 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP " + fmts + "\r\n"
		for _, m := range maps {
			s += "a=rtpmap:" + m + "\r\n"
		}
		return []byte(s)
	}
	cases := []struct {
		name   string
		answer []byte
		mline  string
		absent []string
	}{
		{"PCMA agreed", answer("8 101", "8 PCMA/8000", "101 telephone-event/8000"), "m=audio 4000 RTP/AVP 8 101",
			[]string{"opus", "PCMU", "useinbandfec"}},
		{"opus agreed", answer("111", "111 opus/48000/2"), "m=audio 4000 RTP/AVP 111 101", []string{"PCMA", "PCMU"}},
		{"telephone-event only", answer("101", "101 telephone-event/8000"), "m=audio 4000 RTP/AVP 111 8 0 101", nil},
		{"codec never offered", answer("9 101", "9 G722/8000"), "m=audio 4000 RTP/AVP 111 8 0 101", nil},
		{"no answer", nil, "m=audio 4000 RTP/AVP 111 8 0 101", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := string(bridgeOffer([]byte(offer), tc.answer))
			if !strings.Contains(got, tc.mline+"\r\n") {
				t.Errorf("offer has no %q:\n%s", tc.mline, got)
			}
			for _, a := range tc.absent {
				if strings.Contains(got, a) {
					t.Errorf("offer still names %s:\n%s", a, got)
				}
			}
			if !strings.Contains(got, "a=fmtp:101 0-16\r\n") || !strings.Contains(got, "a=ptime:20\r\n") {
				t.Errorf("telephone-event's fmtp or ptime lost:\n%s", got)
			}
		})
	}
}

// TestBridgeFailover: a Twilio number's termination with two URIs; the
// first answers the new leg 503, the second answers it: the transfer
// completes through the second.
func TestBridgeFailover(t *testing.T) {
	down := newUA(t, "127.0.0.1", reject(503))
	human := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Media: routing.MediaRelay, Endpoints: []routing.Endpoint{agent.endpoint("local")}})
	b.AddNumber(routing.Number{E164: numBridge, Workspace: "w", Carrier: "twilio", Origin: routing.OriginImported,
		Status: routing.StatusActive, AgentID: "a1", IntegrationID: "i1"})
	b.AddIntegration(routing.Integration{ID: "i1", Workspace: "w", Carrier: "twilio",
		Termination: routing.Termination{URIs: []string{sandboxURI(down), sandboxURI(human)}}})
	b.AddWorkspace(routing.Workspace{ID: "w"})
	table := &routing.Table{}
	table.Store(b.Build())
	mgr := newMediaManager(t, 31600, 31619)
	e := runAgentEdge(t, table, "", nil, func(d *Deps) { d.Media = media.Anchor[MediaSession]{M: mgr} })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	carrier := newUA(t, "127.0.0.1")
	ds, _, err := carrier.call(ctx, e, numBridge)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	_ = ds.Ack(ctx)
	recv(t, agent.acks, "ACK at the agent")
	rep, _ := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: ds.InviteRequest.CallID().Value(),
		Workspace: "w", To: "tel:" + bridgeDest, Mode: TransferBridge})
	if rep.Status != 202 {
		t.Fatalf("bridge transfer: %+v", rep)
	}
	first := recv(t, down.invites, "INVITE at the first termination URI")
	second := recv(t, human.invites, "INVITE at the second termination URI")
	if first.CallID().Value() != second.CallID().Value() {
		t.Errorf("failover changed the new leg's Call-ID")
	}
	recv(t, human.acks, "ACK at the human")
	recv(t, agent.byes, "BYE at the agent")
	lastTransfer(t, e, calls.TransferCompleted)
}

// TestBridgeAnswerWithoutSDP: a new leg that answers without SDP cannot
// take the caller's media: callgate ACKs and hangs it up, the transfer
// fails (488), and the caller stays with the agent (its INFO reaches the
// agent).
func TestBridgeAnswerWithoutSDP(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	human := newUA(t, "127.0.0.1", func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
		ds, err := u.dsc.ReadInvite(req, tx)
		if err != nil {
			return
		}
		u.sessMu.Lock()
		u.sessions[req.CallID().Value()] = ds
		u.sessMu.Unlock()
		_ = ds.Respond(200, "OK", nil)
	})
	e, _, agent, ds := bridgeEdge(t, routing.MediaRelay, human, nil, nil)
	rep, _ := e.controlTransfer(ctx, calls.Command{Op: calls.OpTransfer, CallID: ds.InviteRequest.CallID().Value(),
		Workspace: "w", To: "tel:" + bridgeDest, Mode: TransferBridge})
	if rep.Status != 202 {
		t.Fatalf("bridge transfer: %+v", rep)
	}
	recv(t, human.acks, "ACK at the human")
	recv(t, human.byes, "BYE at the human")
	if tr := lastTransfer(t, e, calls.TransferFailed); tr.Status != 488 {
		t.Errorf("transfer %+v, want failed 488", tr)
	}
	info := sip.NewRequest(sip.INFO, ds.InviteResponse.Contact().Address)
	if res, err := ds.Do(ctx, info); err != nil || res.StatusCode != 200 {
		t.Fatalf("caller's INFO: %v %v", res, err)
	}
	recv(t, agent.others, "the caller's INFO at the agent")
	select {
	case <-agent.byes:
		t.Error("the agent was hung up though the transfer failed")
	default:
	}
}
