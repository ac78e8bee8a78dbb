package sip

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

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

// bridgeTable: agent a1 in relay mode at ep answers sandbox number numBridge.
func bridgeTable(ep routing.Endpoint, media string) *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Media: media, Endpoints: []routing.Endpoint{ep}})
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
//     reaches the agent); the outcome is busy with status 486.
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
	}{
		{"human answers", "uac_bridge.xml", "uas_bridge_agent.xml", "uas_bridge_human.xml", "RTP/AVP 8 101", calls.TransferCompleted, 200},
		{"human busy", "uac_refer_refuse.xml", "uas_bridge_agent_busy.xml", "uas_bridge_human_busy.xml", "RTP/AVP 0 101", calls.TransferBusy, 486},
	}
	scen, _ := filepath.Abs("testdata/sipp")
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			agentPort, humanPort := freeUDPPort(t), freeUDPPort(t)
			mgr := newMediaManager(t, 31500+20*i, 31519+20*i)
			human := newRTPCounter(t, 8)
			table := bridgeTable(routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(agentPort)}, routing.MediaRelay)
			e := runAgentEdge(t, table, "sip:pstn@127.0.0.1:"+strconv.Itoa(humanPort), nil, func(d *Deps) {
				d.Media = media.Anchor[MediaSession]{M: mgr}
			})
			hum, humOut := startSIPp(t, dir, 40, "-sf", filepath.Join(scen, tc.human), "-i", "127.0.0.1",
				"-p", strconv.Itoa(humanPort), "-mp", strconv.Itoa(freeUDPPort(t)), "-m", "1", "-nostdin", "-trace_err", "-trace_msg",
				"-key", "human_rtp", strconv.Itoa(human.port()))
			waitBound(t, "udp", humanPort)
			ag, agOut := startSIPp(t, dir, 40, "-sf", filepath.Join(scen, tc.agent), "-i", "127.0.0.1",
				"-p", strconv.Itoa(agentPort), "-mp", strconv.Itoa(freeUDPPort(t)), "-m", "1", "-nostdin", "-trace_err",
				"-key", "refer_to", "tel:"+bridgeDest)
			waitBound(t, "udp", agentPort)
			car, carOut := startSIPp(t, dir, 40, "-sf", filepath.Join(scen, tc.caller), "-i", "127.0.0.1",
				"-mi", "127.0.0.1", "-mp", strconv.Itoa(freeUDPPort(t)),
				"-s", numBridge, "127.0.0.1:"+strconv.Itoa(int(e.UDPAddr().Port())), "-m", "1", "-nostdin", "-trace_err")
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
