package sip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

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

	ds, _, err := carrier.call(ctx, e, numPurchased)
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
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
	ds, _, err := carrier.call(ctx, e, numPurchased)
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
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
