package media

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestRelayCrossesFamilies: with bind_ip6 a session whose caller is on
// IPv4 and agent on IPv6 binds one leg per family: the offer toward the
// agent says c=IN IP6 ::1, the answer toward the caller c=IN IP4
// 127.0.0.1, and RTP crosses both ways, counted per leg. The reverse
// (IPv6 caller, IPv4 agent) too.
func TestRelayCrossesFamilies(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	} else {
		c.Close()
	}
	m, _ := runTestManager(t, func(c *Config) { c.BindIP6 = "::1" })
	ep := func(host string) *endpoint {
		ip := net.ParseIP(host)
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); rc.Close() })
		return &endpoint{t: t, c: c, rc: rc, addr: unmapAP(c.LocalAddr().(*net.UDPAddr).AddrPort()),
			rtcpAddr: unmapAP(rc.LocalAddr().(*net.UDPAddr).AddrPort()), buf: make([]byte, 2048)}
	}
	sdpOf := func(e *endpoint) []byte {
		fam := "IP4"
		if e.addr.Addr().Is6() {
			fam = "IP6"
		}
		return []byte(fmt.Sprintf("v=0\r\no=- 1 1 IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n"+
			"a=rtpmap:0 PCMU/8000\r\na=rtcp:%d\r\n", fam, e.addr.Addr(), fam, e.addr.Addr(), e.addr.Port(), e.rtcpAddr.Port()))
	}
	for _, tc := range []struct{ caller, agent string }{{"127.0.0.1", "::1"}, {"::1", "127.0.0.1"}} {
		t.Run(tc.caller+" to "+tc.agent, func(t *testing.T) {
			caller, agent := ep(tc.caller), ep(tc.agent)
			s, err := m.NewSessionFamilies("x-"+tc.caller, caller.addr.Addr().Is6(), agent.addr.Addr().Is6(), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			off, err := s.RewriteOffer(sdpOf(caller))
			if err != nil {
				t.Fatal(err)
			}
			ans, err := s.RewriteAnswer(sdpOf(agent))
			if err != nil {
				t.Fatal(err)
			}
			callerSide, agentSide := mediaAddr(t, ans), mediaAddr(t, off)
			if callerSide.Addr() != caller.addr.Addr() || agentSide.Addr() != agent.addr.Addr() {
				t.Fatalf("SDP toward the caller names %s, toward the agent %s", callerSide, agentSide)
			}
			wantC := "c=IN IP6 ::1"
			if agent.addr.Addr().Is4() {
				wantC = "c=IN IP4 127.0.0.1"
			}
			if !strings.Contains(string(off), wantC) {
				t.Errorf("offer toward the agent lacks %q:\n%s", wantC, off)
			}
			for i := uint16(0); i < 5; i++ {
				b := caller.sendRTP(callerSide, rtpPacket(0x66, i, uint32(i)*160, []byte("to agent")))
				got, from, err := agent.recv(2 * time.Second)
				if err != nil || string(got) != string(b) || from != agentSide {
					t.Fatalf("caller->agent packet %d: %v from %s", i, err, from)
				}
				b = agent.sendRTP(agentSide, rtpPacket(0x77, i, uint32(i)*160, []byte("to caller")))
				got, from, err = caller.recv(2 * time.Second)
				if err != nil || string(got) != string(b) || from != callerSide {
					t.Fatalf("agent->caller packet %d: %v from %s", i, err, from)
				}
			}
			if st := s.Stats(); st.Caller.RTPPackets != 5 || st.Agent.RTPPackets != 5 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func unmapAP(a netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()) }

// TestConfigDualStack: bind_ip6 and advertise_ip6 are checked, each error
// naming its key.
func TestConfigDualStack(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    Config
		want string
	}{
		{"both", Config{BindIP: "127.0.0.1", BindIP6: "::1"}, ""},
		{"bind_ip6 IPv4", Config{BindIP: "127.0.0.1", BindIP6: "127.0.0.2"}, "media: bind_ip6:"},
		{"bind_ip IPv6", Config{BindIP: "::1", BindIP6: "::1"}, "media: bind_ip:"},
		{"unspecified without advertise", Config{BindIP: "127.0.0.1", BindIP6: "::"}, "media: advertise_ip6:"},
		{"unspecified with advertise", Config{BindIP: "127.0.0.1", BindIP6: "::", AdvertiseIP6: "2001:db8::1"}, ""},
		{"advertise_ip6 IPv4", Config{BindIP: "127.0.0.1", BindIP6: "::1", AdvertiseIP6: "192.0.2.1"}, "media: advertise_ip6:"},
		{"advertise_ip6 alone", Config{BindIP: "127.0.0.1", AdvertiseIP6: "::1"}, "media: advertise_ip6:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("valid config refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
