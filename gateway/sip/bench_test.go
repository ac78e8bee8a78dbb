package sip

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// Minimal text-level SIP peers for the full-call benchmark: they cost far
// less than the proxy, so the figures are mostly the proxy's.

func lines(msg, name string) []string {
	var out []string
	for _, l := range strings.Split(msg, "\r\n") {
		if len(l) > len(name) && l[len(name)] == ':' && strings.EqualFold(l[:len(name)], name) {
			out = append(out, l)
		}
		if l == "" {
			break
		}
	}
	return out
}

func first(msg, name string) string {
	if ls := lines(msg, name); len(ls) > 0 {
		return ls[0]
	}
	return ""
}

// benchAgent answers INVITE with 180 and 200 (echoing Record-Route) and BYE with 200.
func benchAgent(c *net.UDPConn) {
	buf := make([]byte, 65535)
	port := strconv.Itoa(c.LocalAddr().(*net.UDPAddr).Port)
	for {
		n, from, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		switch {
		case strings.HasPrefix(msg, "INVITE "):
			head := strings.Join(lines(msg, "Via"), "\r\n") + "\r\n" + strings.Join(lines(msg, "Record-Route"), "\r\n") + "\r\n" +
				first(msg, "From") + "\r\n" + first(msg, "To") + ";tag=agent\r\n" + first(msg, "Call-ID") + "\r\n" +
				first(msg, "CSeq") + "\r\nContact: <sip:bot@127.0.0.1:" + port + ">\r\n"
			_, _ = c.WriteToUDP([]byte("SIP/2.0 180 Ringing\r\n"+head+"Content-Length: 0\r\n\r\n"), from)
			_, _ = c.WriteToUDP([]byte("SIP/2.0 200 OK\r\n"+head+"Content-Type: application/sdp\r\nContent-Length: "+
				strconv.Itoa(len(testSDP))+"\r\n\r\n"+testSDP), from)
		case strings.HasPrefix(msg, "BYE "):
			head := strings.Join(lines(msg, "Via"), "\r\n") + "\r\n" + first(msg, "From") + "\r\n" + first(msg, "To") + "\r\n" +
				first(msg, "Call-ID") + "\r\n" + first(msg, "CSeq") + "\r\n"
			_, _ = c.WriteToUDP([]byte("SIP/2.0 200 OK\r\n"+head+"Content-Length: 0\r\n\r\n"), from)
		}
	}
}

// BenchmarkFullCall is one full call through the proxy (INVITE, 100, 180,
// 200, ACK, BYE, 200) between in-process UDP peers, 64 calls in flight.
// cpu-us/call is the whole process's CPU time (proxy and both peers) per call.
func BenchmarkFullCall(b *testing.B) { benchFullCall(b, "") }

// BenchmarkFullCallWithHook is BenchmarkFullCall with a routing hook on
// the number that answers {"action":"route"} after 1 ms (issue 13: it
// must not cut the rate by more than 25%). The hook runs in another
// process (this test binary as TestHookHelperProcess), as a customer's
// hook would: cpu-us/call is the gateway's and the peers' alone.
func BenchmarkFullCallWithHook(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHookHelperProcess$")
	cmd.Env = append(os.Environ(), "CALLGATE_HOOK_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill() // by PID
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("hook helper: %v", err)
	}
	benchFullCall(b, "http://"+strings.TrimSpace(line)+"/hook")
}

// TestHookHelperProcess is the routing hook of BenchmarkFullCallWithHook
// when run with CALLGATE_HOOK_HELPER=1: it prints its address and answers
// {"action":"route"} 1 ms after each request until killed.
func TestHookHelperProcess(t *testing.T) {
	if os.Getenv("CALLGATE_HOOK_HELPER") != "1" {
		t.Skip("helper process of BenchmarkFullCallWithHook")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString(ln.Addr().String() + "\n")
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(time.Millisecond)
		_, _ = io.WriteString(w, `{"action":"route"}`)
	}))
}

// benchFullCall runs the full-call benchmark; with hookURL the number's
// workspace has that routing hook.
func benchFullCall(b *testing.B, hookURL string) {
	ag, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ag.Close()
	_ = ag.SetReadBuffer(4 << 20) // as the edge's: nobody retransmits here, a datagram dropped stalls the run
	go benchAgent(ag)
	agentPort := ag.LocalAddr().(*net.UDPAddr).Port
	ep := routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(agentPort)}
	var e *testEdge
	if hookURL == "" {
		e = runEdge(b, buildTable(ep), nil, nil)
	} else {
		e = serveControlEdge(b, controlTable([]routing.Endpoint{ep}, nil, nil, nil, &routing.Hook{URL: hookURL}), 0, nil)
	}
	car, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer car.Close()
	_ = car.SetReadBuffer(4 << 20)
	cport := strconv.Itoa(car.LocalAddr().(*net.UDPAddr).Port)
	proxy := net.UDPAddrFromAddrPort(e.UDPAddr())
	pport := strconv.Itoa(int(e.UDPAddr().Port()))

	invite := func(i int) []byte {
		id := strconv.Itoa(i)
		return []byte("INVITE sip:" + numPurchased + "@127.0.0.1:" + pport + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + cport + ";branch=z9hG4bK-b" + id + "\r\nMax-Forwards: 70\r\n" +
			"From: <sip:+15005550006@127.0.0.1>;tag=c" + id + "\r\nTo: <sip:" + numPurchased + "@127.0.0.1>\r\n" +
			"Call-ID: bench-" + id + "\r\nCSeq: 1 INVITE\r\nContact: <sip:c@127.0.0.1:" + cport + ">\r\n" +
			"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(testSDP)) + "\r\n\r\n" + testSDP)
	}
	inDialog := func(method, id, cseq, toTag string) []byte {
		return []byte(method + " sip:bot@127.0.0.1:" + strconv.Itoa(agentPort) + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + cport + ";branch=z9hG4bK-" + strings.ToLower(method) + id + "\r\n" +
			"Route: <sip:127.0.0.1:" + pport + ";lr>\r\nMax-Forwards: 70\r\n" +
			"From: <sip:+15005550006@127.0.0.1>;tag=c" + id + "\r\nTo: <sip:" + numPurchased + "@127.0.0.1>;tag=" + toTag + "\r\n" +
			"Call-ID: bench-" + id + "\r\nCSeq: " + cseq + " " + method + "\r\nContent-Length: 0\r\n\r\n")
	}

	drops0 := udpRcvbufErrors()
	const window = 64
	var done atomic.Int64
	var next atomic.Int64
	sem := make(chan struct{}, window)
	var wg sync.WaitGroup
	wg.Add(1)
	// the carrier drives the calls by their responses; stopped: it gave up
	stopped := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(stopped)
		buf := make([]byte, 65535)
		for done.Load() < int64(b.N) {
			_ = car.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := car.ReadFromUDP(buf)
			if err != nil {
				b.Errorf("carrier read: %v after %d calls (datagrams the kernel dropped for a full receive buffer meanwhile: %d)",
					err, done.Load(), udpRcvbufErrors()-drops0)
				return
			}
			msg := string(buf[:n])
			cid := strings.TrimPrefix(first(msg, "Call-ID"), "Call-ID: bench-")
			cseq := first(msg, "CSeq")
			switch {
			case strings.HasPrefix(msg, "SIP/2.0 200") && strings.HasSuffix(cseq, "INVITE"):
				_, _ = car.WriteToUDP(inDialog("ACK", cid, "1", "agent"), proxy)
				_, _ = car.WriteToUDP(inDialog("BYE", cid, "2", "agent"), proxy)
			case strings.HasPrefix(msg, "SIP/2.0 200") && strings.HasSuffix(cseq, "BYE"):
				done.Add(1)
				<-sem
			case strings.HasPrefix(msg, "SIP/2.0 1"):
			default:
				b.Errorf("carrier got %q", statusLine(msg))
				return
			}
		}
	}()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
send:
	for i := 0; i < b.N; i++ {
		select {
		case sem <- struct{}{}:
		case <-stopped:
			break send
		}
		_, _ = car.WriteToUDP(invite(int(next.Add(1))), proxy)
	}
	wg.Wait()
	b.StopTimer()
	el := time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(b.N)/el.Seconds(), "calls/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/call")
}

// BenchmarkInvitePath is the proxy's work on one new INVITE (SIPp's
// carrier INVITE of bench/sip/uac_rr.xml), from the datagram to the
// forwarded INVITE sent: parse, checks, routing, 100 Trying, the forwarded
// INVITE, the call's state, tables and timers. Each call is then ended
// (finish, release) with the timer stopped, so allocs/op and B/op are the
// INVITE path's alone.
func BenchmarkInvitePath(b *testing.B) {
	drain := func(c *net.UDPConn, n *atomic.Int64) {
		buf := make([]byte, 65535)
		for {
			m, err := c.Read(buf)
			if err != nil {
				return
			}
			if m > 7 && string(buf[:7]) == "INVITE " {
				n.Add(1)
			}
		}
	}
	var forwarded, trying atomic.Int64
	ag, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ag.Close()
	_ = ag.SetReadBuffer(4 << 20) // as in BenchmarkFullCall: a datagram dropped by a lagging reader failed the count below
	go drain(ag, &forwarded)
	car, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer car.Close()
	_ = car.SetReadBuffer(4 << 20)
	go func() {
		buf := make([]byte, 65535)
		for {
			m, err := car.Read(buf)
			if err != nil {
				return
			}
			if m > 11 && string(buf[:11]) == "SIP/2.0 100" {
				trying.Add(1)
			}
		}
	}()
	agentPort := ag.LocalAddr().(*net.UDPAddr).Port
	ep := routing.Endpoint{Region: "eu", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(agentPort)}
	e := runEdge(b, buildTable(ep), nil, nil)
	e.Server.events = calls.Discard{} // the test recorder's growing slice is not the proxy's (set before any call)
	caddr := car.LocalAddr().(*net.UDPAddr).AddrPort()
	cport := strconv.Itoa(int(caddr.Port()))
	pport := strconv.Itoa(int(e.UDPAddr().Port()))
	sdp := "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
	invite := func(i int) []byte {
		id := strconv.Itoa(i)
		return []byte("INVITE sip:" + numPurchased + "@127.0.0.1:" + pport + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + cport + ";branch=z9hG4bK-4242-" + id + "-0\r\n" +
			"From: sipp <sip:+15005550006@127.0.0.1:" + cport + ">;tag=4242SIPpTag00" + id + "\r\n" +
			"To: <sip:" + numPurchased + "@127.0.0.1:" + pport + ">\r\n" +
			"Call-ID: " + id + "-4242@127.0.0.1\r\nCSeq: 1 INVITE\r\n" +
			"Contact: <sip:sipp@127.0.0.1:" + cport + ">\r\nMax-Forwards: 70\r\nSubject: callgate bench\r\n" +
			"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp)
	}
	msgs := make([][]byte, b.N)
	for i := range msgs {
		msgs[i] = invite(i)
	}
	from := peer{Proto: protoUDP, Addr: caddr}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.handleDatagram(msgs[i], from)
		b.StopTimer()
		c, ok := e.serverTx.get("z9hG4bK-4242-" + strconv.Itoa(i) + "-0|127.0.0.1:" + cport)
		if !ok {
			b.Fatalf("INVITE %d: no call", i)
		}
		c.mu.Lock()
		c.finish(0, "bench")
		c.mu.Unlock()
		c.releaseTx() // the queued release finds nothing to do
		b.StartTimer()
	}
	b.StopTimer()
	checkFor(b, 10*time.Second, func() error {
		if n, t := forwarded.Load(), trying.Load(); n < int64(b.N) || t < int64(b.N) {
			return fmt.Errorf("%d INVITEs forwarded, %d 100 Trying of %d", n, t, b.N)
		}
		return nil
	})
}

// udpRcvbufErrors is the machine's count of UDP datagrams dropped for a
// full receive buffer (RcvbufErrors in /proc/net/snmp); -1 if unknown.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseInt(f[i], 10, 64)
				return v
			}
		}
	}
	return -1
}
