package sip

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/callgate/callgate/routing"
)

// fastCallDatagrams are the five datagrams of a SIPp call that reach the
// fast path (testdata/fastcall: the agent's 180 and 200 to the INVITE,
// the carrier's ACK and BYE, the agent's 200 to the BYE), in that order.
func fastCallDatagrams(tb testing.TB) [][]byte {
	tb.Helper()
	names, err := filepath.Glob("testdata/fastcall/*.sip")
	if err != nil || len(names) != 5 {
		tb.Fatalf("testdata/fastcall: %d datagrams (%v), want 5", len(names), err)
	}
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// BenchmarkFastScan is scanFast on the five datagrams of a SIPp call
// that take the fast path (one op: the five).
func BenchmarkFastScan(b *testing.B) {
	dgs := fastCallDatagrams(b)
	var m fastMsg
	for _, d := range dgs {
		if !scanFast(d, &m) {
			b.Fatalf("the scanner refuses %q", d)
		}
	}
	b.ReportAllocs()
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		for _, d := range dgs {
			if !scanFast(d, &m) {
				b.Fatal("refused")
			}
		}
	}
	cpu.report(b)
}

// cpuClock reports a benchmark's process CPU time per op (cpu-ns/op):
// on a shared machine ns/op counts the time others held the cores too.
type cpuClock struct{ ru syscall.Rusage }

func startCPU(b *testing.B) *cpuClock {
	c := &cpuClock{}
	b.ResetTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &c.ru)
	return c
}

func (c *cpuClock) report(b *testing.B) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	b.StopTimer()
	ns := ru.Utime.Nano() + ru.Stime.Nano() - c.ru.Utime.Nano() - c.ru.Stime.Nano()
	b.ReportMetric(float64(ns)/float64(b.N), "cpu-ns/op")
}

// BenchmarkFastPathDecision is Server.fastPath on the five datagrams of
// a SIPp call (addresses rewritten to a running edge's, with its agent
// listener as in bench/sip/run.sh): the scan and every check and table
// lookup up to the last one before the fast path would act. The call's
// records are in the edge's tables (beside 4,096 other calls) in a state
// that the last check refuses (a dialog with CSeq renumbering and no
// INVITE kept, a transaction with none of its branches), so that nothing
// is sent and nothing changes: each datagram goes back to the caller,
// which would give it to the full path. One op: the five datagrams.
func BenchmarkFastPathDecision(b *testing.B) {
	const agentPort = 38623 // the SIPp agent's, in the datagrams
	e := runAgentEdge(b, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(agentPort)}}.build(),
		"", nil, nil)
	carrierSide := []byte("127.0.0.1:" + strconv.Itoa(int(e.UDPAddr().Port())))
	agentSide := []byte("127.0.0.1:" + strconv.Itoa(int(e.AgentUDPAddr().Port())))
	dgs := fastCallDatagrams(b)
	for i, d := range dgs {
		d = bytes.ReplaceAll(d, []byte("127.0.0.1:54362"), carrierSide)
		dgs[i] = bytes.ReplaceAll(d, []byte("127.0.0.1:38168"), agentSide)
	}
	var m fastMsg
	for _, d := range dgs {
		if !scanFast(d, &m) {
			b.Fatalf("the scanner refuses %q", d)
		}
	}
	if !scanFast(dgs[0], &m) {
		b.Fatal("no 180")
	}
	branch := string(m.str(m.viaBranch))
	callID := string(m.str(m.callID_()))
	c := &call{s: e.Server, id: callID, fromTag: "32046SIPpTag001", cseqDelta: 1}
	var ids []string
	for i := 0; i < 4096; i++ {
		id := strconv.Itoa(i) + "-32046@127.0.0.1"
		ids = append(ids, id)
		x := &call{s: e.Server, id: id, cseqDelta: 1}
		e.dialogs.put(id, x)
		e.clientTx.put(newBranch(branchStateful), x)
	}
	e.dialogs.put(callID, c)
	e.clientTx.put(branch, c)
	b.Cleanup(func() {
		e.dialogs.delIf(callID, c)
		e.clientTx.delIf(branch, c)
		for _, id := range ids {
			if x, ok := e.dialogs.get(id); ok {
				e.dialogs.delIf(id, x)
			}
		}
		e.clientTx.rangeAll(func(k string, x *call) { e.clientTx.delIf(k, x) })
	})
	carrier := peer{Proto: protoUDP, Addr: netip.MustParseAddrPort("127.0.0.1:5060"), Side: sideCarrier}
	agent := peer{Proto: protoUDP, Addr: netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(agentPort)), Side: sideAgent}
	from := []peer{agent, agent, carrier, carrier, agent}
	for k, d := range dgs { // each datagram passes every check up to the call's record
		reachesCall(b, c, func() bool { return e.fastPath(d, from[k]) })
	}
	fwd := e.fast.forwarded.Load()
	b.ReportAllocs()
	cpu := startCPU(b)
	for i := 0; i < b.N; i++ {
		for k, d := range dgs {
			if e.fastPath(d, from[k]) {
				b.Fatalf("the fast path took datagram %d", k)
			}
		}
	}
	cpu.report(b)
	if n := e.fast.forwarded.Load() - fwd; n != 0 {
		b.Fatalf("%d datagrams forwarded", n)
	}
}

// reachesCall fails tb unless fast, run while c.mu is held, blocks on
// c.mu (every check before the call's record passed) and then returns
// false.
func reachesCall(tb testing.TB, c *call, fast func() bool) {
	tb.Helper()
	c.mu.Lock()
	done := make(chan bool, 1)
	go func() { done <- fast() }()
	buf := make([]byte, 1<<20)
	checkFor(tb, 10*time.Second, func() error {
		select {
		case took := <-done:
			c.mu.Unlock()
			tb.Fatalf("the fast path returned %v before locking the call", took)
		default:
		}
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "(*Server).fastPath(") && strings.Contains(g, "lockSlow") {
				return nil
			}
		}
		return errors.New("not blocked on the call's lock yet")
	})
	c.mu.Unlock()
	if <-done {
		tb.Fatal("the fast path took the datagram")
	}
}
