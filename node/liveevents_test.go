package node_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
)

// refusedCall sends an INVITE for num from 127.0.0.1 (the default local
// trunk) to n's SIP listener and waits for its final response.
func refusedCall(t *testing.T, n *node.Node, num, callID string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	to := net.UDPAddrFromAddrPort(n.SIP().UDPAddr())
	local := pc.LocalAddr().String()
	inv := "INVITE sip:" + num + "@" + to.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + callID + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:+15005550006@" + local + ">;tag=live\r\n" +
		"To: <sip:" + num + "@" + to.String() + ">\r\n" +
		"Call-ID: " + callID + "\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Contact: <sip:caller@" + local + ">\r\n" +
		"Content-Length: 0\r\n\r\n"
	if _, err := pc.WriteTo([]byte(inv), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	for {
		if err := pc.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no final response to the INVITE: %v", err)
		}
		line, _, _ := strings.Cut(string(buf[:k]), "\r\n")
		if !strings.HasPrefix(line, "SIP/2.0 1") {
			return line
		}
	}
}

// TestLiveEventsOnlyWhenSubscribed: a node on its embedded NATS sends
// a call's events on callgate.calls.<region>.<kind> only while someone
// subscribes (counting the others in
// callgate_calls_live_events_skipped_total); a dashboard connected to
// nats.listen gets the events of every call after its subscription.
func TestLiveEventsOnlyWhenSubscribed(t *testing.T) {
	n := startNode(t, t.TempDir(), func(c *config.Config) { c.NATS.Listen = "127.0.0.1:0" })
	defer n.Close()
	c := httpClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	num := firstAvailable(t, c, "228")
	if code, m := c.do("POST", "/v1/numbers", `{"phone_number":"`+num+`","carrier":"sandbox"}`); code != 201 {
		t.Fatalf("buy: %d %v", code, m)
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, ok := n.Table().Load().Lookup(num); !ok {
			return fmt.Errorf("%s not in the routing table yet", num)
		}
		return nil
	})
	skipped := func() float64 {
		mfs, err := n.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "callgate_calls_live_events_skipped_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no callgate_calls_live_events_skipped_total")
		return 0
	}

	// The number is not assigned: 480, with a started and an ended event.
	if got := refusedCall(t, n, num, "unheard-1@127.0.0.1"); !strings.HasPrefix(got, "SIP/2.0 480") {
		t.Fatalf("unassigned number: %s", got)
	}
	testwait.CheckFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if s := skipped(); s != 2 {
			return fmt.Errorf("%v live events skipped, want 2", s)
		}
		return nil
	})

	sc, err := nats.Connect(n.Store().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sub, err := sc.SubscribeSync("callgate.calls.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := refusedCall(t, n, num, "heard-1@127.0.0.1"); !strings.HasPrefix(got, "SIP/2.0 480") {
		t.Fatalf("unassigned number: %s", got)
	}
	region := n.Config().Region
	if region == "" {
		region = "none"
	}
	for _, kind := range []string{"started", "ended"} {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for %s: %v", kind, err)
		}
		if m.Subject != "callgate.calls."+region+"."+kind || !strings.Contains(string(m.Data), `"heard-1@127.0.0.1"`) {
			t.Fatalf("got %s %s, want %s of heard-1", m.Subject, m.Data, kind)
		}
	}
	if s := skipped(); s != 2 {
		t.Fatalf("%v live events skipped with a subscriber, want still 2", s)
	}
}
