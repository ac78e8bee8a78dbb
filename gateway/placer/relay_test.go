package placer

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/internal/testwait"
)

// TestSandboxRelayedMedia: with media "relay" the agent gets the callee's
// offer pointed at the relay (not at the PSTN's own port), the PSTN gets
// the agent's answer (rewritten, its ACK check still passes), and the
// ended event carries the relay's figures; no relay session is left.
func TestSandboxRelayedMedia(t *testing.T) {
	needSIPp(t)
	mm, err := media.NewManager(media.Config{PortMin: 41000, PortMax: 41999}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mm.Close() })
	port := freeUDPPort(t)
	done := sipp(t, "pstn_answer_hangup.xml", port)
	ag := startAgent(t, 0)
	uac, err := NewUAC(UACConfig{TerminationURI: "sip:127.0.0.1:" + strconv.Itoa(port), RingTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ev := &events{}
	p := New(Config{}, Deps{Table: table("sandbox", "", ag.uri), Events: ev, Sandbox: uac,
		Media: media.Anchor[MediaSession]{M: mm}, MediaMode: "relay"})
	t.Cleanup(p.Close)
	c, err := p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if msg := <-done; msg != "" {
		t.Fatal(msg)
	}
	var e = ev.last(c.ID)
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if e = ev.last(c.ID); e.Kind != "ended" {
			return fmt.Errorf("last event %q", e.Kind)
		}
		return nil
	})
	offer, _, _ := ag.snapshot()
	m := regexp.MustCompile(`m=audio (\d+) `).FindStringSubmatch(offer)
	if m == nil {
		t.Fatalf("agent offer %q", offer)
	}
	if p, _ := strconv.Atoi(m[1]); p < 41000 || p > 41999 {
		t.Fatalf("the agent's offer points at port %d, not at the relay: %q", p, offer)
	}
	if e.Media == nil || e.Reason != "bye_callee" {
		t.Fatalf("ended %+v", e)
	}
	if mm.Active() != 0 {
		t.Fatalf("%d relay sessions left", mm.Active())
	}
}
