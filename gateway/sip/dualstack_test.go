package sip

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/routing"
)

// Dual stack (dualstack.go): listeners on 127.0.0.1 and [::1] at once,
// Via and Record-Route with the address of the family each leg uses.

// needV6 skips when this machine has no IPv6 loopback.
func needV6(t testing.TB) {
	t.Helper()
	c, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	c.Close()
}

// dualTweak listens on both families (and the agent listener, when
// agents is set, on both too).
func dualTweak(agents bool) func(*Config) {
	return func(c *Config) {
		c.Addr6 = "[::1]:0"
		if agents {
			c.Agents.Addr6 = "[::1]:0"
		}
	}
}

// endpointOf is u's endpoint URI (IPv6 hosts in brackets).
func endpointOf(u *testUA, region string) routing.Endpoint {
	return routing.Endpoint{Region: region, URI: "sip:bot@" + net.JoinHostPort(u.host, fmt.Sprint(u.port))}
}

// callVia calls user through the edge listener at dst and waits for the
// answer (ACKed).
func (u *testUA) callVia(ctx context.Context, t testing.TB, dst netip.AddrPort, user string) *sipgo.DialogClientSession {
	t.Helper()
	host := dst.Addr().String()
	if dst.Addr().Is6() {
		host = "[" + host + "]" // sipgo dials Host:Port as written
	}
	to := sip.Uri{Scheme: "sip", User: user, Host: host, Port: int(dst.Port())}
	ds, err := u.dcc.Invite(ctx, to, []byte(testSDP), sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatalf("INVITE to %s: %v", dst, err)
	}
	if err := ds.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("call through %s: %v", dst, err)
	}
	if err := ds.Ack(ctx); err != nil {
		t.Fatalf("ACK: %v", err)
	}
	return ds
}

// rrHosts lists the Record-Route entries as host:port.
func rrHosts(hs []sip.Header) []string {
	var out []string
	for _, h := range hs {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			out = append(out, net.JoinHostPort(trimBrackets(rr.Address.Host), fmt.Sprint(rr.Address.Port)))
		}
	}
	return out
}

func viaHostPort(v *sip.ViaHeader) string {
	return net.JoinHostPort(trimBrackets(v.Host), fmt.Sprint(v.Port))
}

// TestDualStackCrossFamilies: a carrier on IPv4 calling an agent on IPv6
// and the reverse, with and without the agent listener. The agent sees
// our IPv6 Via and the carrier our IPv4 one (and the other way round);
// the dialog is record-routed once per family, the callee's on top; the
// agent's BYE reaches the carrier over the carrier's family and the call
// ends as bye_agent.
func TestDualStackCrossFamilies(t *testing.T) {
	needV6(t)
	for _, tc := range []struct {
		name                   string
		carrierHost, agentHost string
		agents                 bool
	}{
		{"v4 carrier to v6 agent", "127.0.0.1", "::1", false},
		{"v6 carrier to v4 agent", "::1", "127.0.0.1", false},
		{"v4 carrier to v6 agent, agent listener", "127.0.0.1", "::1", true},
		{"v6 carrier to v4 agent, agent listener", "::1", "127.0.0.1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			agent := newUA(t, tc.agentHost)
			carrier := newUA(t, tc.carrierHost)
			var e *testEdge
			table := buildTable(endpointOf(agent, "eu"))
			if tc.agents {
				e = runAgentEdge(t, table, "", dualTweak(true), nil)
			} else {
				e = runEdge(t, table, dualTweak(false), nil)
			}
			in := e.UDPAddr()
			if tc.carrierHost == "::1" {
				in = e.UDPAddr6()
			}
			// what each party must see of us: the carrier the listener it called,
			// the agent the listener of its family (agent side when it is on)
			out := e.UDPAddr()
			if tc.agents {
				out = e.AgentUDPAddr()
			}
			if tc.agentHost == "::1" {
				out = e.UDPAddr6()
				if tc.agents {
					out = e.AgentUDPAddr6()
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ds := carrier.callVia(ctx, t, in, numPurchased)
			inv := recv(t, agent.invites, "INVITE at the agent")
			if got, want := viaHostPort(inv.Via()), out.String(); got != want {
				t.Errorf("top Via at the agent %s, want %s", got, want)
			}
			want := []string{out.String(), in.String()} // callee side on top
			if got := rrHosts(inv.Headers()); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("Record-Route at the agent %v, want %v", got, want)
			}
			if got := rrHosts(ds.InviteResponse.Headers()); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("Record-Route at the carrier %v, want %v", got, want)
			}
			recv(t, agent.acks, "ACK at the agent")
			sess := agent.session(inv.CallID().Value())
			if sess == nil {
				t.Fatal("no agent dialog")
			}
			if err := sess.Bye(ctx); err != nil {
				t.Fatalf("agent's BYE: %v", err)
			}
			bye := recv(t, carrier.byes, "BYE at the carrier")
			if got := viaHostPort(bye.Via()); got != in.String() {
				t.Errorf("BYE reached the carrier with top Via %s, want %s", got, in)
			}
			if ev := e.events.waitEvent(t, calls.Ended, inv.CallID().Value()); ev.Reason != "bye_agent" || ev.Status != 200 {
				t.Errorf("ended %+v", ev)
			}
		})
	}
}

// TestDualStackSameFamily: an IPv6 carrier calling an IPv6 agent is
// record-routed once, with the IPv6 address; the carrier's BYE reaches
// the agent.
func TestDualStackSameFamily(t *testing.T) {
	needV6(t)
	agent := newUA(t, "::1")
	carrier := newUA(t, "::1")
	e := runEdge(t, buildTable(endpointOf(agent, "eu")), dualTweak(false), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds := carrier.callVia(ctx, t, e.UDPAddr6(), numPurchased)
	inv := recv(t, agent.invites, "INVITE at the agent")
	if got := rrHosts(inv.Headers()); len(got) != 1 || got[0] != e.UDPAddr6().String() {
		t.Errorf("Record-Route at the agent %v, want [%s]", got, e.UDPAddr6())
	}
	recv(t, agent.acks, "ACK at the agent")
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("carrier's BYE: %v", err)
	}
	bye := recv(t, agent.byes, "BYE at the agent")
	if got := viaHostPort(bye.Via()); got != e.UDPAddr6().String() {
		t.Errorf("BYE at the agent with top Via %s, want %s", got, e.UDPAddr6())
	}
	if ev := e.events.waitEvent(t, calls.Ended, inv.CallID().Value()); ev.Reason != "bye_caller" {
		t.Errorf("ended %+v", ev)
	}
}

// TestDualStackProbesIPv6: an agent endpoint on [::1] is probed over
// IPv6 (OPTIONS from our IPv6 listener) and comes up; one on a silent
// IPv6 port goes down.
func TestDualStackProbesIPv6(t *testing.T) {
	needV6(t)
	agent := newUA(t, "::1")
	silent, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	dead := routing.Endpoint{Region: "us", URI: "sip:bot@" + silent.LocalAddr().String()}
	e := runEdge(t, buildTable(endpointOf(agent, "eu"), dead), func(c *Config) {
		dualTweak(false)(c)
		c.Probe = ProbeConfig{Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, DownAfter: 2, UpAfter: 1, Alpha: 0.3}
	}, nil)
	checkFor(t, 10*time.Second, func() error {
		up := map[string]bool{}
		for _, st := range e.Status() {
			if !st.Known {
				return fmt.Errorf("%s not probed yet", st.URI)
			}
			up[st.URI] = st.Up
		}
		if !up[endpointOf(agent, "eu").URI] || up[dead.URI] {
			return fmt.Errorf("up: %v", up)
		}
		return nil
	})
	// the probe came from our IPv6 listener: its answer found its way back
	buf := make([]byte, 4096)
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := silent.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no probe at the silent IPv6 endpoint: %v", err)
	}
	if from.String() != e.UDPAddr6().String() {
		t.Errorf("probe from %s, want our IPv6 listener %s", from, e.UDPAddr6())
	}
	if msg := string(buf[:n]); !strings.HasPrefix(msg, "OPTIONS ") || !strings.Contains(msg, "SIP/2.0/UDP "+e.UDPAddr6().String()) {
		t.Errorf("probe:\n%s", msg)
	}
}

// TestDualStackConfig: the dual-stack keys are checked, each error
// naming its key.
func TestDualStackConfig(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tweak func(*Config)
		want  string // "" = valid
	}{
		{"both families", func(c *Config) { c.Addr, c.Addr6 = "127.0.0.1:5060", "[::1]:5060" }, ""},
		{"addr6 is IPv4", func(c *Config) { c.Addr6 = "127.0.0.1:5062" }, "sip.addr6: "},
		{"addr6 not ip:port", func(c *Config) { c.Addr6 = "::1" }, "sip.addr6: "},
		{"addr IPv6 with addr6", func(c *Config) { c.Addr, c.Addr6 = "[::1]:5060", "[::1]:5062" }, "sip.addr: "},
		{"addr6 unspecified without host", func(c *Config) { c.Addr6 = "[::]:5060" }, "sip.advertise_host6: "},
		{"addr6 unspecified with host", func(c *Config) { c.Addr6, c.AdvertiseHost6 = "[::]:5060", "2001:db8::1" }, ""},
		{"advertise_host6 IPv4", func(c *Config) { c.Addr6, c.AdvertiseHost6 = "[::1]:5060", "192.0.2.1" }, "sip.advertise_host6: "},
		{"advertise_host6 alone", func(c *Config) { c.AdvertiseHost6 = "sip6.example.com" }, "sip.advertise_host6: "},
		{"tls_addr6 without addr6", func(c *Config) { c.TLSAddr6 = "[::1]:5061" }, "sip.tls_addr6: "},
		{"agents.addr6 without agents.addr", func(c *Config) { c.Agents.Addr6 = "[::1]:5070" }, "sip.agents.addr6: "},
		{"agents.addr6", func(c *Config) { c.Agents.Addr, c.Agents.Addr6 = "127.0.0.1:5070", "[::1]:5070" }, ""},
		{"agents.addr6 is IPv4", func(c *Config) { c.Agents.Addr, c.Agents.Addr6 = "127.0.0.1:5070", "127.0.0.1:5071" }, "sip.agents.addr6: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.tweak(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("valid config refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// TestDualStackRelayFailoverAcrossFamilies: a relayed call from an IPv4
// carrier whose first endpoint (IPv4) answers 503 fails over to an IPv6
// endpoint: the first offer names the relay's IPv4 address, the second
// its IPv6 one, and the caller's answer the IPv4 one.
func TestDualStackRelayFailoverAcrossFamilies(t *testing.T) {
	needV6(t)
	busy := newUA(t, "127.0.0.1", reject(503))
	live := newUA(t, "::1")
	mgr := newDualMediaManager(t, 31700, 31799)
	e := runEdge(t, relayTable(endpointOf(busy, "eu"), endpointOf(live, "us")), dualTweak(false), media.Anchor[MediaSession]{M: mgr})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds := carrier.callVia(ctx, t, e.UDPAddr(), numPurchased)
	first := recv(t, busy.invites, "INVITE at the IPv4 endpoint")
	if c := sdpConn(string(first.Body())); c != "IN IP4 127.0.0.1" {
		t.Errorf("offer to the IPv4 endpoint: c=%s", c)
	}
	second := recv(t, live.invites, "INVITE at the IPv6 endpoint")
	if c := sdpConn(string(second.Body())); c != "IN IP6 ::1" {
		t.Errorf("offer to the IPv6 endpoint: c=%s\n%s", c, second.Body())
	}
	if p := sdpPort(string(second.Body())); p < 31700 || p > 31799 {
		t.Errorf("offer to the IPv6 endpoint: m= port %d, not the relay's", p)
	}
	if c := sdpConn(string(ds.InviteResponse.Body())); c != "IN IP4 127.0.0.1" {
		t.Errorf("answer to the IPv4 carrier: c=%s", c)
	}
	if n := mgr.Active(); n != 1 {
		t.Errorf("%d relay sessions open, want 1 (the first one closed)", n)
	}
	_ = ds.Bye(ctx)
	recv(t, live.byes, "BYE at the IPv6 endpoint")
	checkFor(t, 5*time.Second, func() error {
		if n := mgr.Active(); n != 0 {
			return fmt.Errorf("%d relay sessions open after the BYE", n)
		}
		return nil
	})
}

// sdpConn is the first c= line's value.
func sdpConn(sdp string) string {
	for _, l := range strings.Split(sdp, "\r\n") {
		if strings.HasPrefix(l, "c=") {
			return l[2:]
		}
	}
	return ""
}

// TestDualStackInDialogWithoutRecord: once the dialog record is gone
// (another node, a restart), an IPv6 agent's BYE is still forwarded by
// our two Record-Route entries (IPv6 and IPv4, MACs verified) to the IPv4
// carrier, from our IPv4 address.
func TestDualStackInDialogWithoutRecord(t *testing.T) {
	needV6(t)
	agent := newUA(t, "::1")
	carrier := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(endpointOf(agent, "eu")), dualTweak(false), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	carrier.callVia(ctx, t, e.UDPAddr(), numPurchased)
	inv := recv(t, agent.invites, "INVITE at the agent")
	recv(t, agent.acks, "ACK at the agent")
	id := inv.CallID().Value()
	if c, ok := e.dialogs.get(id); ok {
		e.dialogs.delIf(id, c)
	} else {
		t.Fatal("no dialog record")
	}
	sess := agent.session(id)
	if sess == nil {
		t.Fatal("no agent dialog")
	}
	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("agent's BYE: %v", err)
	}
	bye := recv(t, carrier.byes, "BYE at the carrier")
	if got := viaHostPort(bye.Via()); got != e.UDPAddr().String() {
		t.Errorf("BYE at the carrier with top Via %s, want %s", got, e.UDPAddr())
	}
}

// TestDualStackOutboundFromIPv6Agent: an agent on [::1] places an
// outbound call through the agent side's IPv6 listener (digest) to an
// IPv4 PSTN: the PSTN sees our IPv4 carrier-side Via and a Record-Route
// per side and family (carrier IPv4 on top, agent IPv6 below); the agent's
// BYE reaches the PSTN.
func TestDualStackOutboundFromIPv6Agent(t *testing.T) {
	needV6(t)
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "::1")
	e := runAgentEdge(t, outTable{agentEP: endpointOf(agent, "local")}.build(), sandboxURI(pstn), dualTweak(true), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fh := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: numSandboxOut, Host: "[::1]"},
		Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(10)}}}
	to := sip.Uri{Scheme: "sip", User: destUS, Host: "[::1]", Port: int(e.AgentUDPAddr6().Port())}
	ds, err := agent.dcc.Invite(ctx, to, []byte(testSDP), fh, sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.WaitAnswer(ctx, sipgo.AnswerOptions{Username: agentUser, Password: agentPass}); err != nil {
		t.Fatalf("outbound call from the IPv6 agent: %v", err)
	}
	inv := recv(t, pstn.invites, "INVITE at the PSTN")
	if got := viaHostPort(inv.Via()); got != e.UDPAddr().String() {
		t.Errorf("INVITE at the PSTN with top Via %s, want %s", got, e.UDPAddr())
	}
	want := []string{e.UDPAddr().String(), e.AgentUDPAddr6().String()}
	if got := rrHosts(inv.Headers()); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Record-Route at the PSTN %v, want %v", got, want)
	}
	if err := ds.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, pstn.acks, "ACK at the PSTN")
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("agent's BYE: %v", err)
	}
	recv(t, pstn.byes, "BYE at the PSTN")
	if end := e.events.waitEvent(t, calls.Ended, ds.InviteRequest.CallID().Value()); end.Reason != "bye_caller" || end.Direction != calls.Outbound {
		t.Errorf("ended event %+v", end)
	}
}

// TestDualStackTLS: a carrier calling over TLS on [::1] (sip.tls_addr6)
// reaches an IPv4 agent over UDP: the 200 carries our IPv6 TLS
// Record-Route (the caller's family and transport) below the IPv4 UDP one.
func TestDualStackTLS(t *testing.T) {
	needV6(t)
	certFile, keyFile := selfSigned(t, t.TempDir())
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), func(c *Config) {
		c.Addr6 = "[::1]:0"
		c.TLSAddr, c.TLSAddr6, c.TLSCert, c.TLSKey = "127.0.0.1:0", "[::1]:0", certFile, keyFile
	}, nil)
	tls6 := e.tp.TLSAddr6()
	if !tls6.IsValid() || !tls6.Addr().Is6() {
		t.Fatalf("no IPv6 TLS listener: %s", tls6)
	}
	c, err := tls.Dial("tcp6", tls6.String(), &tls.Config{InsecureSkipVerify: true}) // test client only
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lp := c.LocalAddr().(*net.TCPAddr).Port
	inv := "INVITE sips:" + numPurchased + "@[::1]:" + itoa(int(tls6.Port())) + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TLS [::1]:" + itoa(lp) + ";branch=z9hG4bK-tls6\r\nMax-Forwards: 70\r\n" +
		"From: <sips:+15005550006@[::1]>;tag=tls6\r\nTo: <sips:" + numPurchased + "@[::1]>\r\nCall-ID: tls6-1\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sips:caller@[::1]:" + itoa(lp) + ">\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + itoa(len(testSDP)) + "\r\n\r\n" + testSDP
	if _, err := c.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got strings.Builder
	buf := make([]byte, 8192)
	for !strings.Contains(got.String(), "SIP/2.0 200") {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	want := fmt.Sprintf("<sip:[::1]:%d;transport=tls;lr;", tls6.Port())
	if !strings.Contains(got.String(), want) {
		t.Errorf("200 lacks the IPv6 TLS Record-Route %s:\n%s", want, got.String())
	}
	inv2 := recv(t, agent.invites, "INVITE over UDP")
	if got := rrHosts(inv2.Headers()); len(got) != 2 || got[0] != e.UDPAddr().String() || got[1] != tls6.String() {
		t.Errorf("Record-Route at the agent %v, want [%s %s]", got, e.UDPAddr(), tls6)
	}
}
