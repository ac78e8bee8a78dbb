package sip

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

// inCallTable is relayTable with agent a1's in-call settings set by mod.
func inCallTable(mod func(*routing.Agent), eps ...routing.Endpoint) *routing.Table {
	b := routing.NewBuilder()
	a := routing.Agent{ID: "a1", Workspace: "w", Media: "relay", Endpoints: eps}
	mod(&a)
	b.AddAgent(a)
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

// An agent's media_timeout replaces the node's (30 s here): a silent
// call to it ends after about its 1 s, with BYE to both sides.
func TestAgentMediaTimeoutEndsSilentCall(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	mgr := newMediaManager(t, 31800, 31899) // media_timeout 30 s
	e := runEdge(t, inCallTable(func(a *routing.Agent) { a.MediaTimeout = time.Second }, agent.endpoint("eu")), nil,
		media.Anchor[MediaSession]{M: mgr})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	ds := carrier.answered(ctx, t, e)
	recv(t, agent.byes, "BYE at the agent")
	recv(t, carrier.byes, "BYE at the caller")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the call ended after %v: the node's 30 s, not the agent's 1 s", d)
	}
	en := e.events.waitEvent(t, calls.Ended, ds.InviteRequest.CallID().Value())
	if en.Reason != "media_timeout" {
		t.Fatalf("ended %q, want media_timeout", en.Reason)
	}
}

// early_media "ringback": callgate answers the caller's INVITE with its
// own 180 (To tag "cg...", a Contact) at once, even when the agent's
// endpoint has not answered anything; without the setting it does not.
func TestRingbackSent180AtOnce(t *testing.T) {
	for _, mode := range []string{routing.EarlyMediaRingback, routing.EarlyMediaNone} {
		t.Run("mode="+mode, func(t *testing.T) {
			silent := newRTPSock(t) // an endpoint that never answers
			ep := routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + itoa(silent.port())}
			e := runEdge(t, inCallTable(func(a *routing.Agent) { a.Media, a.EarlyMedia = "direct", mode }, ep), func(c *Config) {
				c.InviteTimeout = 5 * time.Second
			}, nil)
			raw := newRaw(t, "127.0.0.1", net_(e))
			raw.send(raw.invite(e, numPurchased, "ringback-"+mode, ""))
			var got string
			for m := raw.read(2 * time.Second); m != ""; m = raw.read(2 * time.Second) {
				if !strings.HasPrefix(m, "SIP/2.0 100") {
					got = m
					break
				}
			}
			if mode == routing.EarlyMediaNone {
				if got != "" {
					t.Fatalf("without early_media callgate answered %q", statusLine(got))
				}
				return
			}
			if !strings.HasPrefix(got, "SIP/2.0 180") || !strings.Contains(got, ";tag=cg") || !strings.Contains(got, "Contact:") {
				t.Fatalf("want callgate's 180 with its own To tag and a Contact, got:\n%s", got)
			}
			if v := testutil.ToFloat64(e.Metrics().incall.early.WithLabelValues("ringback")); v != 1 {
				t.Fatalf("callgate_sip_early_media_total{mode=ringback} = %v", v)
			}
		})
	}
}

// A SIPp carrier calls an agent with early_media "ringback" whose
// endpoint rings (its own 180) and answers: the carrier gets callgate's
// 180 first, then the agent's 180 and 200 with the agent's tag, and the
// call completes (ACK, BYE through the route set).
func TestSIPpCarrierCompletesAfterRingback(t *testing.T) {
	if _, err := os.Stat(sippBin); err != nil {
		t.Skip("sipp not installed (Debian sip-tester)")
	}
	agent := newUA(t, "127.0.0.1", func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
		answer(u, req, tx) // 180 (the agent's tag), then 200
	})
	e := runEdge(t, inCallTable(func(a *routing.Agent) { a.Media, a.EarlyMedia = "direct", routing.EarlyMediaRingback }, agent.endpoint("eu")), nil, nil)
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	uac, out := startSIPp(t, dir, 30, "-sf", filepath.Join(scen, "uac_ringback.xml"), "-i", "127.0.0.1",
		"-s", numPurchased, "127.0.0.1:"+itoa(int(e.UDPAddr().Port())), "-m", "3", "-r", "3", "-nostdin", "-trace_err")
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp: %v\n%s\n%s", err, tail(out.String()), sippErrors(dir))
	}
	for i := 0; i < 3; i++ {
		recv(t, agent.byes, "BYE at the agent")
	}
	if v := testutil.ToFloat64(e.Metrics().incall.early.WithLabelValues("ringback")); v != 3 {
		t.Fatalf("callgate_sip_early_media_total{mode=ringback} = %v, want 3", v)
	}
}

// early_media "ringback_tone" on a relayed call: a 183 whose SDP points
// the caller at the relay, then a ringback tone in the caller's G.711
// while the agent's endpoint rings; the agent's answer stops it.
func TestRingbackToneWhileAgentRings(t *testing.T) {
	callerRTP, agentRTP := newRTPSock(t), newRTPSock(t)
	answerLater := make(chan struct{})
	agent := newUA(t, "127.0.0.1", func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		select {
		case <-answerLater:
		case <-time.After(10 * time.Second):
			return
		}
		answerSDP(sdpAt(agentRTP.port(), 101))(u, req, tx)
	})
	mgr := newMediaManager(t, 32000, 32099)
	e := runEdge(t, inCallTable(func(a *routing.Agent) { a.EarlyMedia = routing.EarlyMediaRingbackTone }, agent.endpoint("eu")),
		nil, media.Anchor[MediaSession]{M: mgr})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ds, err := carrier.dcc.Invite(ctx, e.uri(numPurchased), sdpAt(callerRTP.port(), 101), sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	got183 := make(chan *sip.Response, 4)
	answered := make(chan error, 1)
	go func() {
		answered <- ds.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
			if res.StatusCode == 183 {
				got183 <- res
			}
			return nil
		}})
	}()
	var r183 *sip.Response
	select {
	case r183 = <-got183:
	case <-time.After(5 * time.Second):
		t.Fatal("no 183 from callgate")
	}
	if tag, _ := r183.To().Params.Get("tag"); !strings.HasPrefix(tag, "cg") || sdpPort(string(r183.Body())) < 32000 {
		t.Fatalf("183: To tag %q, SDP\n%s", tag, r183.Body())
	}
	for i := 0; i < 3; i++ {
		p, _ := callerRTP.next(t)
		if p.PayloadType != 0 || len(p.Payload) != 160 {
			t.Fatalf("tone packet %d: PT %d, %d bytes", i, p.PayloadType, len(p.Payload))
		}
	}
	close(answerLater)
	if err := <-answered; err != nil {
		t.Fatalf("answer: %v", err)
	}
	_ = ds.Ack(ctx)
	checkFor(t, 5*time.Second, func() error {
		if v := testutil.ToFloat64(e.Metrics().incall.early.WithLabelValues("ringback_tone")); v != 1 {
			return fmt.Errorf("early_media_total{ringback_tone} = %v", v)
		}
		return nil
	})
	_ = ds.Bye(ctx)
}
