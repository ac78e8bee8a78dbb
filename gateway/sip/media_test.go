package sip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

// relayTable is buildTable with agent a1 in relay mode.
func relayTable(eps ...routing.Endpoint) *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Media: "relay", Endpoints: eps})
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

func newMediaManager(t *testing.T, portMin, portMax int) *media.Manager {
	t.Helper()
	mgr, err := media.NewManager(media.Config{BindIP: "127.0.0.1", PortMin: portMin, PortMax: portMax,
		MediaTimeout: 30 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	return mgr
}

func sdpPort(sdp string) int {
	for _, l := range strings.Split(sdp, "\r\n") {
		if strings.HasPrefix(l, "m=audio ") {
			var p int
			fmt.Sscanf(strings.TrimPrefix(l, "m=audio "), "%d", &p)
			return p
		}
	}
	return 0
}

// TestMediaRelay: with the real gateway/media relay, both SDPs are
// rewritten to relay ports, the ended event carries the media figures,
// running out of ports answers 503 and malformed SDP 400.
func TestMediaRelay(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	mgr := newMediaManager(t, 31000, 31003) // room for exactly one call (two port pairs)
	e := runEdge(t, relayTable(agent.endpoint("eu")), nil, media.Anchor[MediaSession]{M: mgr})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ds := carrier.answered(ctx, t, e)
	inv := recv(t, agent.invites, "INVITE")
	offer := string(inv.Body())
	if p := sdpPort(offer); p < 31000 || p > 31003 {
		t.Errorf("agent's offer not rewritten to a relay port: m= port %d\n%s", p, offer)
	}
	answer := string(ds.InviteResponse.Body())
	if p := sdpPort(answer); p < 31000 || p > 31003 {
		t.Errorf("caller's answer not rewritten to a relay port: m= port %d\n%s", p, answer)
	}

	// a second call while the first holds every port: 503
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "media-2", ""))
	if m := raw.readFinal(3 * time.Second); !strings.HasPrefix(m, "SIP/2.0 503") {
		t.Errorf("out of ports: got %q, want 503", statusLine(m))
	}

	_ = ds.Bye(ctx)
	recv(t, agent.byes, "BYE")
	en := e.events.waitEvent(t, calls.Ended, inv.CallID().Value())
	if en.Media == nil {
		t.Error("ended event without media figures")
	}

	// malformed SDP: 400 (ports free again after the BYE)
	const from, to = "m=audio 40000 RTP/AVP 0 8 101", "m=audio notaport"
	bad := strings.Replace(raw.invite(e, numPurchased, "media-3", ""), from, to, 1)
	bad = strings.Replace(bad, fmt.Sprintf("Content-Length: %d", len(testSDP)),
		fmt.Sprintf("Content-Length: %d", len(testSDP)-len(from)+len(to)), 1)
	raw.send(bad)
	if m := raw.readFinal(3 * time.Second); !strings.HasPrefix(m, "SIP/2.0 400") || !strings.Contains(m, "malformed SDP") {
		t.Errorf("malformed SDP: got %q, want 400 (malformed SDP)", m)
	}
}

// TestMediaTimeoutByesBothSides: no RTP for media_timeout ends the call
// with a BYE to the caller and to the agent.
func TestMediaTimeoutByesBothSides(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	mgr, err := media.NewManager(media.Config{BindIP: "127.0.0.1", PortMin: 31100, PortMax: 31199,
		MediaTimeout: 300 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	e := runEdge(t, relayTable(agent.endpoint("eu")), nil, media.Anchor[MediaSession]{M: mgr})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	carrier.answered(ctx, t, e)
	inv := recv(t, agent.invites, "INVITE")
	recv(t, agent.byes, "BYE at agent")
	recv(t, carrier.byes, "BYE at carrier")
	en := e.events.waitEvent(t, calls.Ended, inv.CallID().Value())
	if en.Reason != "media_timeout" {
		t.Errorf("ended = %+v", en)
	}
}

// TestMediaModeDefault: Deps.MediaMode "relay" relays agents that did not
// choose; an agent's "direct" still wins.
func TestMediaModeDefault(t *testing.T) {
	for _, tc := range []struct {
		agentMode string
		relayed   bool
	}{{"", true}, {"direct", false}} {
		agent := newUA(t, "127.0.0.1")
		mgr := newMediaManager(t, 31200, 31299)
		b := routing.NewBuilder()
		b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Media: tc.agentMode, Endpoints: []routing.Endpoint{agent.endpoint("eu")}})
		b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Status: routing.StatusActive, AgentID: "a1"})
		table := &routing.Table{}
		table.Store(b.Build())
		cfg := DefaultConfig()
		cfg.Addr = "127.0.0.1:0"
		cfg.Probe.Disabled = true
		s, err := New(cfg, Deps{Table: table, Media: media.Anchor[MediaSession]{M: mgr}, MediaMode: "relay"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { _ = s.Serve(ctx) }()
		e := &testEdge{Server: s}
		raw := newRaw(t, "127.0.0.1", net_(e))
		raw.send(raw.invite(e, numPurchased, "mode-"+tc.agentMode, ""))
		inv := recv(t, agent.invites, "INVITE")
		p := sdpPort(string(inv.Body()))
		if relayed := p != 40000; relayed != tc.relayed {
			t.Errorf("agent media %q: m= port %d, relayed %v, want %v", tc.agentMode, p, relayed, tc.relayed)
		}
		cancel()
	}
}

// TestSIPpRTPThroughMediaRelay: SIPp as the carrier plays 7 s of G.711
// RTP (its own g711a.pcap, 236 packets) into a relayed call; SIPp as the
// agent answers and echoes every RTP packet it gets (-rtp_echo). All of
// it crosses callgate's relay: the caller leg counts the 236 packets with
// no loss, the agent leg the echo of each of them, and the figures are on
// the call's ended event.
func TestSIPpRTPThroughMediaRelay(t *testing.T) {
	const pcap, pcapPackets = "/usr/share/sip-tester/g711a.pcap", 236
	for _, f := range []string{sippBin, pcap} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (Debian sip-tester)", f)
		}
	}
	if testing.Short() {
		t.Skip("runs SIPp for 8 s")
	}
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	uasPort, uasMedia, uacMedia := freeUDPPort(t), freeUDPPort(t), freeUDPPort(t)
	mgr := newMediaManager(t, 31300, 31399)
	e := runEdge(t, relayTable(routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(uasPort)}),
		nil, media.Anchor[MediaSession]{M: mgr})

	uas, uasOut := startSIPp(t, dir, 30, "-sf", filepath.Join(scen, "uas_rr.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(uasPort), "-mi", "127.0.0.1", "-mp", strconv.Itoa(uasMedia), "-rtp_echo",
		"-m", "1", "-nostdin", "-trace_err")
	waitBound(t, "udp", uasPort)
	uac, uacOut := startSIPp(t, dir, 30, "-sf", filepath.Join(scen, "uac_rtp.xml"), "-i", "127.0.0.1",
		"-mi", "127.0.0.1", "-mp", strconv.Itoa(uacMedia),
		"-s", numPurchased, "127.0.0.1:"+strconv.Itoa(int(e.UDPAddr().Port())), "-m", "1", "-nostdin", "-trace_err")
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp uac: %v\n%s\nuas:\n%s\n%s", err, tail(uacOut.String()), tail(uasOut.String()), sippErrors(dir))
	}
	if err := uas.Wait(); err != nil {
		t.Fatalf("sipp uas: %v\n%s", err, tail(uasOut.String()))
	}

	var ended *calls.Event
	e.events.mu.Lock()
	for i := range e.events.events {
		if e.events.events[i].Kind == calls.Ended {
			ended = &e.events.events[i]
		}
	}
	e.events.mu.Unlock()
	if ended == nil {
		t.Fatal("no ended event")
	}
	st, ok := ended.Media.(*media.CallStats)
	if !ok {
		t.Fatalf("ended event media = %T, want *media.CallStats", ended.Media)
	}
	c, a := st.Caller, st.Agent
	t.Logf("caller leg: %d RTP, lost %d, jitter mean %.2f ms; agent leg (echo): %d RTP, lost %d, jitter mean %.2f ms",
		c.RTPPackets, c.Lost, c.JitterMeanMs, a.RTPPackets, a.Lost, a.JitterMeanMs)
	if c.RTPPackets != pcapPackets || c.Lost != 0 || c.ClockRate != 8000 {
		t.Errorf("caller leg: %d RTP packets, lost %d, clock %d; want the capture's %d, none lost, 8000 Hz", c.RTPPackets, c.Lost, c.ClockRate, pcapPackets)
	}
	// The echo of each packet, except any still in flight when the BYE
	// closed the session.
	if a.RTPPackets < pcapPackets-2 || a.RTPPackets > pcapPackets || a.Lost > 2 {
		t.Errorf("agent leg: %d RTP packets echoed, lost %d; want about %d", a.RTPPackets, a.Lost, pcapPackets)
	}
	if c.Ignored != 0 || a.Ignored != 0 || c.Undeliverable != 0 {
		t.Errorf("packets dropped: caller ignored %d undeliverable %d, agent ignored %d", c.Ignored, c.Undeliverable, a.Ignored)
	}
	// The caller leg's jitter is SIPp's own pacing (large on a loaded
	// machine); the agent leg's is that plus the relay's forwarding and
	// the echo. A relay holding packets shows as the agent leg's jitter
	// far above the caller's. (The relay's added latency is measured by
	// bench/media, not here.)
	if a.JitterMeanMs > c.JitterMeanMs+10 {
		t.Errorf("jitter: caller %.2f ms, agent %.2f ms: the relay added more than 10 ms", c.JitterMeanMs, a.JitterMeanMs)
	}
}

// TestMediaPortsFreedOnFailureAndCancel: a relayed call's ports go back
// to the pool when the agent refuses it and when the caller cancels it,
// not only on BYE: with room for one call, each next call gets them.
func TestMediaPortsFreedOnFailureAndCancel(t *testing.T) {
	mgr := newMediaManager(t, 31400, 31403) // two port pairs: one call
	busy := newUA(t, "127.0.0.1", reject(486))
	ringing := newUA(t, "127.0.0.1", ringForever)
	for i, tc := range []struct {
		name   string
		agent  *testUA
		status int
	}{{"refused", busy, 486}, {"cancelled", ringing, 487}, {"refused again", busy, 486}} {
		e := runEdge(t, relayTable(tc.agent.endpoint("eu")), nil, media.Anchor[MediaSession]{M: mgr})
		raw := newRaw(t, "127.0.0.1", net_(e))
		callID := fmt.Sprintf("media-free-%d", i)
		inv := raw.invite(e, numPurchased, callID, "")
		raw.send(inv)
		fwd := recv(t, tc.agent.invites, tc.name+": INVITE at agent")
		if p := sdpPort(string(fwd.Body())); p < 31400 || p > 31403 {
			t.Fatalf("%s: offer not relayed (m= port %d): ports of the previous call not freed?", tc.name, p)
		}
		if tc.status == 487 {
			raw.send(cancelFor(inv))
		}
		en := e.events.waitEvent(t, calls.Ended, callID)
		if en.Status != tc.status || en.Media == nil {
			t.Fatalf("%s: ended %+v, want status %d with media figures", tc.name, en, tc.status)
		}
		checkFor(t, 2*time.Second, func() error {
			if n := mgr.Active(); n != 0 {
				return errorf("%s: %d relay sessions still open", tc.name, n)
			}
			return nil
		})
	}
}

// TestMediaRelayReInvite: a re-INVITE in a relayed call is rewritten
// like the INVITE: the agent is offered the same relay port as before and
// the caller's answer points at the same caller-facing port, so media
// keeps flowing through the same session.
func TestMediaRelayReInvite(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	mgr := newMediaManager(t, 31500, 31599)
	e := runEdge(t, relayTable(agent.endpoint("eu")), nil, media.Anchor[MediaSession]{M: mgr})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e)
	inv := recv(t, agent.invites, "INVITE")
	agentSide, callerSide := sdpPort(string(inv.Body())), sdpPort(string(ds.InviteResponse.Body()))
	if agentSide < 31500 || callerSide < 31500 || agentSide == callerSide {
		t.Fatalf("INVITE not relayed: agent offered port %d, caller answered port %d", agentSide, callerSide)
	}
	// The caller moves its media (hold/transfer at the carrier).
	moved := strings.Replace(testSDP, "m=audio 40000 ", "m=audio 40100 ", 1)
	re := sip.NewRequest(sip.INVITE, ds.InviteResponse.Contact().Address)
	re.SetBody([]byte(moved))
	re.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	res, err := ds.Do(ctx, re)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("re-INVITE: %v %v", res, err)
	}
	reinv := recv(t, agent.invites, "re-INVITE at agent")
	if p := sdpPort(string(reinv.Body())); p != agentSide {
		t.Errorf("re-INVITE offers the agent port %d, want the call's relay port %d\n%s", p, agentSide, reinv.Body())
	}
	if strings.Contains(string(reinv.Body()), "40100") {
		t.Errorf("the caller's new port leaked to the agent:\n%s", reinv.Body())
	}
	if p := sdpPort(string(res.Body())); p != callerSide {
		t.Errorf("re-INVITE answer points the caller at port %d, want %d\n%s", p, callerSide, res.Body())
	}
	if mgr.Active() != 1 {
		t.Errorf("%d relay sessions, want the call's one", mgr.Active())
	}
	_ = ds.WriteRequest(sip.NewRequest(sip.ACK, ds.InviteResponse.Contact().Address))
	_ = ds.Bye(ctx)
	recv(t, agent.byes, "BYE")
}
