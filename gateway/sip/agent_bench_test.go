package sip

import (
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/callgate/callgate/routing"
)

// BenchmarkOutboundCall is one full outbound call from an agent through
// the agent listener to a "PSTN" behind the sandbox termination (INVITE
// with digest credentials, 100, 180, 200, ACK, BYE, 200), 64 calls in
// flight, between in-process UDP peers. The agent answers no challenge:
// its Proxy-Authorization is computed once for a nonce of ours (valid for
// agentNonceTTL), so each call costs the proxy one digest verification.
func BenchmarkOutboundCall(b *testing.B) {
	pstn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer pstn.Close()
	go benchAgent(pstn)
	pstnPort := pstn.LocalAddr().(*net.UDPAddr).Port
	e := runAgentEdge(b, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:9"}}.build(),
		"sip:pstn@127.0.0.1:"+strconv.Itoa(pstnPort), nil, nil)
	ag, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ag.Close()
	_ = ag.SetReadBuffer(4 << 20)
	aport := strconv.Itoa(ag.LocalAddr().(*net.UDPAddr).Port)
	proxy := net.UDPAddrFromAddrPort(e.AgentUDPAddr())
	pport := strconv.Itoa(int(e.AgentUDPAddr().Port()))
	ruri := "sip:" + destUS + "@127.0.0.1:" + pport
	cr, err := digest.Digest(&digest.Challenge{Realm: "callgate", Nonce: e.ag.nonce(time.Now()), Algorithm: "SHA-256",
		QOP: []string{"auth"}}, digest.Options{Method: "INVITE", URI: ruri, Username: agentUser, Password: agentPass, Count: 1})
	if err != nil {
		b.Fatal(err)
	}
	authz := "Proxy-Authorization: " + cr.String() + "\r\n"

	invite := func(i int) []byte {
		id := strconv.Itoa(i)
		return []byte("INVITE " + ruri + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + aport + ";branch=z9hG4bK-b" + id + "\r\nMax-Forwards: 70\r\n" +
			"From: <sip:" + numSandboxOut + "@127.0.0.1>;tag=c" + id + "\r\nTo: <sip:" + destUS + "@127.0.0.1>\r\n" +
			"Call-ID: obench-" + id + "\r\nCSeq: 1 INVITE\r\nContact: <sip:agent@127.0.0.1:" + aport + ">\r\n" + authz +
			"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(testSDP)) + "\r\n\r\n" + testSDP)
	}
	inDialog := func(method, id, cseq, route string) []byte {
		return []byte(method + " sip:bot@127.0.0.1:" + strconv.Itoa(pstnPort) + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:" + aport + ";branch=z9hG4bK-" + strings.ToLower(method) + id + "\r\n" +
			route + "Max-Forwards: 70\r\n" +
			"From: <sip:" + numSandboxOut + "@127.0.0.1>;tag=c" + id + "\r\nTo: <sip:" + destUS + "@127.0.0.1>;tag=agent\r\n" +
			"Call-ID: obench-" + id + "\r\nCSeq: " + cseq + " " + method + "\r\nContent-Length: 0\r\n\r\n")
	}

	const window = 64
	var done, next atomic.Int64
	sem := make(chan struct{}, window)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the agent: responses drive the calls
		defer wg.Done()
		buf := make([]byte, 65535)
		for done.Load() < int64(b.N) {
			_ = ag.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := ag.ReadFromUDP(buf)
			if err != nil {
				b.Errorf("agent read: %v after %d calls", err, done.Load())
				return
			}
			msg := string(buf[:n])
			cid := strings.TrimPrefix(first(msg, "Call-ID"), "Call-ID: obench-")
			cseq := first(msg, "CSeq")
			switch {
			case strings.HasPrefix(msg, "SIP/2.0 200") && strings.HasSuffix(cseq, "INVITE"):
				// the route set, reversed: the agent listener first
				rrs := lines(msg, "Record-Route")
				route := ""
				for i := len(rrs) - 1; i >= 0; i-- {
					route += "Route: " + strings.TrimSpace(strings.TrimPrefix(rrs[i], "Record-Route:")) + "\r\n"
				}
				_, _ = ag.WriteToUDP(inDialog("ACK", cid, "1", route), proxy)
				_, _ = ag.WriteToUDP(inDialog("BYE", cid, "2", route), proxy)
			case strings.HasPrefix(msg, "SIP/2.0 200") && strings.HasSuffix(cseq, "BYE"):
				done.Add(1)
				<-sem
			case strings.HasPrefix(msg, "SIP/2.0 1"):
			default:
				b.Errorf("agent got %q", statusLine(msg))
				return
			}
		}
	}()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		sem <- struct{}{}
		_, _ = ag.WriteToUDP(invite(int(next.Add(1))), proxy)
	}
	wg.Wait()
	b.StopTimer()
	el := time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	b.ReportMetric(float64(b.N)/el.Seconds(), "calls/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/call")
}
