package sip

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

// newDualMediaManager is a relay with an IPv4 (127.0.0.1) and an IPv6
// (::1) side.
func newDualMediaManager(t *testing.T, portMin, portMax int) *media.Manager {
	t.Helper()
	mgr, err := media.NewManager(media.Config{BindIP: "127.0.0.1", BindIP6: "::1", PortMin: portMin, PortMax: portMax,
		MediaTimeout: 30 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mgr.Close() })
	return mgr
}

// freeUDPPortOn is a free UDP port on host (127.0.0.1 or ::1).
func freeUDPPortOn(t testing.TB, host string) int {
	t.Helper()
	c, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// waitBoundOn waits until another process has bound UDP port on host.
func waitBoundOn(t testing.TB, host string, port int) {
	t.Helper()
	network := "udp"
	if strings.Contains(host, ":") {
		network = "udp6"
	}
	waitBoundProc(t, network, port)
}

// TestSIPpDualStackRTP: SIPp as the carrier on one family and SIPp as
// the agent on the other (`sipp -i ::1`), callgate listening on both and
// relaying media between an IPv4 and an IPv6 socket. The carrier plays
// 7 s of G.711 (236 RTP packets), the agent echoes each: the caller leg
// counts all 236 with no loss and the agent leg their echo, so RTP
// crossed families both ways through the relay; the call ends 200.
func TestSIPpDualStackRTP(t *testing.T) {
	const pcap, pcapPackets = "/usr/share/sip-tester/g711a.pcap", 236
	for _, f := range []string{sippBin, pcap} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (Debian sip-tester)", f)
		}
	}
	if testing.Short() {
		t.Skip("runs SIPp for 8 s")
	}
	needV6(t)
	for i, tc := range []struct{ name, carrier, agent string }{
		{"v4 carrier to v6 agent", "127.0.0.1", "::1"},
		{"v6 carrier to v4 agent", "::1", "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scen, _ := filepath.Abs("testdata/sipp")
			dir := t.TempDir()
			uasPort, uasMedia := freeUDPPortOn(t, tc.agent), freeUDPPortOn(t, tc.agent)
			uacMedia := freeUDPPortOn(t, tc.carrier)
			lo := 31500 + 100*i
			mgr := newDualMediaManager(t, lo, lo+99)
			ep := routing.Endpoint{Region: "local", URI: "sip:bot@" + net.JoinHostPort(tc.agent, strconv.Itoa(uasPort))}
			e := runEdge(t, relayTable(ep), dualTweak(false), media.Anchor[MediaSession]{M: mgr})
			in := e.UDPAddr()
			if tc.carrier == "::1" {
				in = e.UDPAddr6()
			}
			uas, uasOut := startSIPp(t, dir, 30, "-sf", filepath.Join(scen, "uas_rr.xml"), "-i", tc.agent,
				"-p", strconv.Itoa(uasPort), "-mi", tc.agent, "-mp", strconv.Itoa(uasMedia), "-rtp_echo",
				"-m", "1", "-nostdin", "-trace_err")
			waitBoundOn(t, tc.agent, uasPort)
			uac, uacOut := startSIPp(t, dir, 30, "-sf", filepath.Join(scen, "uac_rtp.xml"), "-i", tc.carrier,
				"-mi", tc.carrier, "-mp", strconv.Itoa(uacMedia),
				"-s", numPurchased, in.String(), "-m", "1", "-nostdin", "-trace_err")
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
			if ended.Status != 200 {
				t.Errorf("ended %+v", ended)
			}
			st, ok := ended.Media.(*media.CallStats)
			if !ok {
				t.Fatalf("ended event media = %T, want *media.CallStats", ended.Media)
			}
			c, a := st.Caller, st.Agent
			t.Logf("caller leg (%s): %d RTP, lost %d; agent leg (%s, echo): %d RTP, lost %d",
				tc.carrier, c.RTPPackets, c.Lost, tc.agent, a.RTPPackets, a.Lost)
			if c.RTPPackets != pcapPackets || c.Lost != 0 {
				t.Errorf("caller leg: %d RTP packets, lost %d; want the capture's %d, none lost", c.RTPPackets, c.Lost, pcapPackets)
			}
			if a.RTPPackets < pcapPackets-2 || a.RTPPackets > pcapPackets || a.Lost > 2 {
				t.Errorf("agent leg: %d RTP packets echoed, lost %d; want about %d", a.RTPPackets, a.Lost, pcapPackets)
			}
			if c.Ignored != 0 || a.Ignored != 0 || c.Undeliverable != 0 || a.Undeliverable != 0 {
				t.Errorf("packets dropped: caller ignored %d undeliverable %d, agent ignored %d undeliverable %d",
					c.Ignored, c.Undeliverable, a.Ignored, a.Undeliverable)
			}
		})
	}
}
