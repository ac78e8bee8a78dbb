package media

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// Many calls at once, each with its own endpoints, all sending both ways
// at the same time through a few workers: every packet reaches its own
// call's other side, unchanged, and nobody else. A mix-up between sockets
// (engine table, epoll data, a reused descriptor) shows up here as a
// packet at the wrong endpoint or a missing one.
func TestManyCallsEachGetsOwnPackets(t *testing.T) {
	const calls, packets = 16, 40
	m, _ := runTestManager(t, func(c *Config) { c.PortMax = c.PortMin + 4*calls - 1; c.Workers = 3 })
	cs := make([]*call, calls)
	for i := range cs {
		cs[i] = setupCall(t, m, nil)
	}
	var wg sync.WaitGroup
	for i, c := range cs {
		for dir, e := range []*endpoint{c.caller, c.agent} {
			to := c.toCaller // callgate's caller-facing port
			if dir == 1 {
				to = c.toAgent
			}
			wg.Add(1)
			go func(e *endpoint, to netip.AddrPort, ssrc uint32) {
				defer wg.Done()
				for seq := 0; seq < packets; seq++ {
					p := rtpPacket(ssrc, uint16(seq), uint32(seq)*160, make([]byte, 160))
					binary.BigEndian.PutUint32(p.Payload, ssrc)
					b, _ := p.Marshal()
					e.c.WriteToUDPAddrPort(b, to)
					if seq%8 == 7 {
						time.Sleep(time.Millisecond) // stay inside the socket buffers
					}
				}
			}(e, to, uint32(2*i+dir+1))
		}
	}
	wg.Wait()
	// Each receiver reads what it is owed however long the relay takes to
	// work through the backlog on a loaded machine (not within a fixed
	// read window), then whatever else arrives.
	deadline := time.Now().Add(20 * time.Second)
	for i, c := range cs {
		for dir, e := range []*endpoint{c.agent, c.caller} { // receivers
			want := uint32(2*i + dir + 1)
			var got [][]byte
			for len(got) < packets {
				b, _, err := e.recv(max(time.Until(deadline), 50*time.Millisecond))
				if err != nil {
					break
				}
				got = append(got, b)
			}
			got = append(got, e.drain(50*time.Millisecond)...)
			if len(got) != packets {
				t.Errorf("call %d %s: %d packets, want %d", i, []string{"agent", "caller"}[dir], len(got), packets)
			}
			for _, b := range got {
				if len(b) != 172 || binary.BigEndian.Uint32(b[8:]) != want || binary.BigEndian.Uint32(b[12:]) != want {
					t.Fatalf("call %d: a packet of SSRC %#x arrived, want only %#x", i, binary.BigEndian.Uint32(b[8:]), want)
				}
			}
		}
	}
}

// Calls end and new ones take their ports while other calls keep
// sending: a packet still in flight to a closed call's port is never
// forwarded by the new call to the old call's peers, and the new call
// relays between its own endpoints.
func TestPortReuseAfterCloseUnderTraffic(t *testing.T) {
	m, _ := runTestManager(t, func(c *Config) { c.PortMax = c.PortMin + 7; c.Workers = 1 }) // 2 calls
	steady := setupCall(t, m, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the steady call keeps sending
		defer wg.Done()
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				return
			default:
			}
			b, _ := rtpPacket(0x5151, seq, uint32(seq)*160, make([]byte, 20)).Marshal()
			steady.caller.c.WriteToUDPAddrPort(b, steady.toCaller)
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for round := 0; round < 20; round++ {
		old := setupCall(t, m, nil)
		b := old.caller.sendRTP(old.toCaller, rtpPacket(0x0a0a, 1, 160, []byte("old")))
		if got, _, err := old.agent.recv(2 * time.Second); err != nil || string(got) != string(b) {
			t.Fatalf("round %d: old call did not relay: %v", round, err)
		}
		oldPorts := [2]netip.AddrPort{old.toAgent, old.toCaller}
		old.s.Close()
		// A late packet to the closed call's port: nobody relays it.
		old.caller.send(oldPorts[1], []byte("late"))
		fresh := setupCall(t, m, nil)
		if fresh.toAgent != oldPorts[0] && fresh.toAgent != oldPorts[1] && fresh.toCaller != oldPorts[0] && fresh.toCaller != oldPorts[1] {
			t.Fatalf("round %d: the freed ports were not reused (pool of 2 calls)", round)
		}
		// The old caller again, now at the new call's port: a stranger
		// there, not relayed.
		old.caller.send(oldPorts[1], []byte("late"))
		b = fresh.caller.sendRTP(fresh.toCaller, rtpPacket(0x0b0b, 1, 160, []byte("new")))
		if got, _, err := fresh.agent.recv(2 * time.Second); err != nil || string(got) != string(b) {
			t.Fatalf("round %d: new call did not relay its own packet first: %q %v", round, got, err)
		}
		if got := fresh.agent.drain(5 * time.Millisecond); len(got) != 0 {
			t.Fatalf("round %d: the new call's agent also got %q", round, got)
		}
		if got := old.agent.drain(20 * time.Millisecond); len(got) != 0 {
			t.Fatalf("round %d: the closed call's agent got %q", round, got)
		}
		if got := old.caller.drain(5 * time.Millisecond); len(got) != 0 {
			t.Fatalf("round %d: the closed call's caller got %q", round, got)
		}
		fresh.s.Close()
	}
	close(stop)
	wg.Wait()
	if n := len(steady.agent.drain(100 * time.Millisecond)); n == 0 {
		t.Fatal("the steady call stopped relaying")
	}
	if st := steady.s.Stats().Caller; st.Lost != 0 {
		t.Fatalf("steady call lost %d packets while others came and went", st.Lost)
	}
}

// Closing the manager stops its workers and closes its descriptors.
func TestManagerCloseStopsWorkers(t *testing.T) {
	before := runtime.NumGoroutine()
	m, err := NewManager(Config{BindIP: "127.0.0.1", PortMin: testPortNext, PortMax: testPortNext + 39, Workers: 4}, nil, nil)
	testPortNext += 40
	if err != nil {
		t.Fatal(err)
	}
	c := setupCall(t, m, nil)
	b := c.caller.sendRTP(c.toCaller, rtpPacket(1, 1, 160, []byte("x")))
	if got, _, err := c.agent.recv(2 * time.Second); err != nil || string(got) != string(b) {
		t.Fatalf("relay: %v", err)
	}
	m.Close()
	testwait.CheckFor(t, 2*time.Second, 10*time.Millisecond, func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines after Close, %d before NewManager", n, before)
		}
		return nil
	})
	// The relay's port is free again.
	l, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(c.toAgent))
	if err != nil {
		t.Fatalf("port still held after Close: %v", err)
	}
	l.Close()
}

// The relay on IPv6 loopback: sockets bound to ::1, SDP with IP6.
func TestRelayIPv6(t *testing.T) {
	probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	probe.Close()
	m, _ := runTestManager(t, func(c *Config) { c.BindIP = "::1" })
	ep := func() *endpoint {
		c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); rc.Close() })
		return &endpoint{t: t, c: c, rc: rc, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(),
			rtcpAddr: rc.LocalAddr().(*net.UDPAddr).AddrPort(), buf: make([]byte, 2048)}
	}
	caller, agent := ep(), ep()
	sdp6 := func(e *endpoint) []byte {
		return []byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n"+
			"a=rtpmap:0 PCMU/8000\r\na=rtcp:%d\r\n", e.addr.Port(), e.rtcpAddr.Port()))
	}
	s, err := m.NewSession("v6", nil)
	if err != nil {
		t.Fatal(err)
	}
	off, err := s.RewriteOffer(sdp6(caller))
	if err != nil {
		t.Fatal(err)
	}
	ans, err := s.RewriteAnswer(sdp6(agent))
	if err != nil {
		t.Fatal(err)
	}
	callerSide, agentSide := mediaAddr(t, ans), mediaAddr(t, off) // callgate's ports facing each
	if callerSide.Addr() != netip.IPv6Loopback() || agentSide.Addr() != netip.IPv6Loopback() {
		t.Fatalf("rewritten SDP points at %s and %s", callerSide, agentSide)
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
}
