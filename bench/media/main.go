// Command media is the media relay benchmark: it relays N concurrent
// calls (50 packets/s each way, 160-byte payloads) through a
// gateway/media Manager on loopback, for rising N, and reports loss and
// the latency each packet took from the sender's socket to the receiver's
// socket. With -direct the same traffic goes straight from sender to
// receiver (no relay): the difference is the latency the relay adds.
//
// The generator runs in the same process as the relay (one process on
// the machine's cores, as in production where the relay shares the node
// with SIP). Callers and agents are a few sockets each (-sockets), so the
// generator itself stays cheap; the relay has its own 4 sockets per call.
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/callgate/callgate/gateway/media"
	"github.com/pion/sdp/v3"
)

func main() {
	var (
		callsFlag = flag.String("calls", "250,500,1000,1500,2000", "comma-separated numbers of concurrent calls, tried in order")
		duration  = flag.Duration("duration", 10*time.Second, "how long each step sends")
		pps       = flag.Int("pps", 50, "packets per second per direction per call")
		payload   = flag.Int("payload", 160, "RTP payload bytes")
		sockets   = flag.Int("sockets", 4, "generator sockets per side (callers, agents)")
		portMin   = flag.Int("port-min", 16384, "relay port range start")
		portMax   = flag.Int("port-max", 32767, "relay port range end")
		direct    = flag.Bool("direct", false, "baseline only: send straight to the peer, no relay")
		baseline  = flag.Bool("baseline", true, "before each relay step, run the same traffic without the relay and report the difference")
		all       = flag.Bool("all", false, "keep going after a step fails the loss target")
		maxLoss   = flag.Float64("max-loss", 0.001, "loss ratio a step must stay under")
		cpuprof   = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	)
	flag.Parse()
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var steps []int
	for _, f := range strings.Split(*callsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bad -calls value %q\n", f)
			os.Exit(2)
		}
		steps = append(steps, n)
	}
	if *payload < 12 {
		*payload = 12
	}
	mode := "relay"
	if *direct {
		mode = "direct (no relay, baseline)"
	}
	fmt.Printf("# media relay benchmark: %s, %d pps each way per call, %d-byte payload, %s per step, GOMAXPROCS=%d, NumCPU=%d\n",
		mode, *pps, *payload, *duration, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Printf("# latency = sender socket -> receiver socket, one way, per packet\n")
	fmt.Printf("%-6s %6s %10s %10s %9s %9s %9s %9s %9s %9s %7s  %s\n",
		"mode", "calls", "sent", "recv", "loss%", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "cpu%", "result")
	row := func(label string, n int, r *result, verdict string) {
		fmt.Printf("%-6s %6d %10d %10d %9.4f %9.0f %9.0f %9.0f %9.0f %9.0f %7.0f  %s\n",
			label, n, r.sent, r.recv, 100*r.lossRatio(), r.pct(0.50), r.pct(0.90), r.pct(0.99), r.pct(0.999), r.max(), 100*r.cpu, verdict)
	}
	best := 0
	var bestRes, bestBase *result
	for _, n := range steps {
		var base *result
		if *baseline && !*direct {
			var err error
			base, err = runStep(n, *duration, *pps, *payload, *sockets, *portMin, *portMax, true)
			if err != nil {
				fmt.Fprintf(os.Stderr, "calls=%d (direct): %v\n", n, err)
				break
			}
			row("direct", n, base, "baseline")
		}
		r, err := runStep(n, *duration, *pps, *payload, *sockets, *portMin, *portMax, *direct)
		if err != nil {
			fmt.Fprintf(os.Stderr, "calls=%d: %v\n", n, err)
			break
		}
		ok := r.lossRatio() < *maxLoss
		verdict := "ok"
		if !ok {
			verdict = "FAIL loss"
		}
		label := "relay"
		if *direct {
			label = "direct"
		}
		row(label, n, r, verdict)
		if base != nil {
			fmt.Printf("       added by relay: p50 %+.0f us, p99 %+.0f us; relay CPU %.2f us per relayed packet\n",
				r.pct(0.5)-base.pct(0.5), r.pct(0.99)-base.pct(0.99), relayCPU(r, base))
		}
		if ok && n > best {
			best, bestRes, bestBase = n, r, base
		}
		if !ok && !*all {
			break
		}
	}
	if bestRes != nil {
		fmt.Printf("# most calls with loss < %.2f%%: %d (one-way p50 %.0f us, p99 %.0f us", 100**maxLoss, best, bestRes.pct(0.5), bestRes.pct(0.99))
		if bestBase != nil {
			fmt.Printf("; added by the relay p50 %+.0f us, p99 %+.0f us", bestRes.pct(0.5)-bestBase.pct(0.5), bestRes.pct(0.99)-bestBase.pct(0.99))
		}
		fmt.Printf(")\n")
	} else {
		fmt.Printf("# no step stayed under %.2f%% loss\n", 100**maxLoss)
	}
}

const histMax = 200_000 // µs; later arrivals go to the last bucket

type result struct {
	sent, recv uint64
	hist       []uint64 // µs buckets
	cpu        float64  // process CPU seconds per wall second
	elapsed    time.Duration
}

// relayCPU estimates the relay's CPU time per relayed packet: the
// process's CPU with the relay minus without it (same traffic).
func relayCPU(r, base *result) float64 {
	if r.recv == 0 {
		return 0
	}
	d := r.cpu*r.elapsed.Seconds() - base.cpu*base.elapsed.Seconds()
	return d / float64(r.recv) * 1e6
}

func (r *result) lossRatio() float64 {
	if r.sent == 0 {
		return 0
	}
	lost := float64(r.sent) - float64(r.recv)
	if lost < 0 {
		lost = 0
	}
	return lost / float64(r.sent)
}

func (r *result) pct(q float64) float64 {
	var total uint64
	for _, c := range r.hist {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var acc uint64
	for i, c := range r.hist {
		acc += c
		if acc > want {
			return float64(i)
		}
	}
	return float64(len(r.hist) - 1)
}

func (r *result) max() float64 {
	for i := len(r.hist) - 1; i >= 0; i-- {
		if r.hist[i] > 0 {
			return float64(i)
		}
	}
	return 0
}

type stream struct {
	from *net.UDPConn
	to   netip.AddrPort
	id   uint32
}

func listen() (*net.UDPConn, netip.AddrPort, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, netip.AddrPort{}, err
	}
	c.SetReadBuffer(4 << 20)
	c.SetWriteBuffer(4 << 20)
	return c, c.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}

func sdpFor(a netip.AddrPort) []byte {
	return []byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\n"+
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\na=rtcp:%d\r\n",
		a.Addr(), a.Addr(), a.Port(), a.Port()+1))
}

func audioAddr(body []byte) (netip.AddrPort, error) {
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return netip.AddrPort{}, err
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media == "audio" && md.MediaName.Port.Value != 0 {
			c := md.ConnectionInformation
			if c == nil {
				c = sd.ConnectionInformation
			}
			ip, err := netip.ParseAddr(c.Address.Address)
			if err != nil {
				return netip.AddrPort{}, err
			}
			return netip.AddrPortFrom(ip, uint16(md.MediaName.Port.Value)), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("no audio in SDP")
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func runStep(n int, dur time.Duration, pps, payload, nsock, portMin, portMax int, direct bool) (*result, error) {
	callers := make([]*net.UDPConn, nsock)
	agents := make([]*net.UDPConn, nsock)
	callerAddr := make([]netip.AddrPort, nsock)
	agentAddr := make([]netip.AddrPort, nsock)
	for k := 0; k < nsock; k++ {
		var err error
		if callers[k], callerAddr[k], err = listen(); err != nil {
			return nil, err
		}
		if agents[k], agentAddr[k], err = listen(); err != nil {
			return nil, err
		}
	}
	defer func() {
		for k := range callers {
			callers[k].Close()
			agents[k].Close()
		}
	}()

	var mgr *media.Manager
	if !direct {
		var err error
		mgr, err = media.NewManager(media.Config{BindIP: "127.0.0.1", PortMin: portMin, PortMax: portMax,
			MediaTimeout: time.Minute}, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			return nil, err
		}
		defer mgr.Close()
	}
	// streams per sending socket: index = socket (callers 0..k-1, agents k..2k-1)
	perSock := make([][]stream, 2*nsock)
	for i := 0; i < n; i++ {
		k := i % nsock
		toAgent, toCaller := agentAddr[k], callerAddr[k]
		if !direct {
			s, err := mgr.NewSession(fmt.Sprintf("bench-%d", i), nil)
			if err != nil {
				return nil, fmt.Errorf("session %d: %w", i, err)
			}
			off, err := s.RewriteOffer(sdpFor(callerAddr[k]))
			if err != nil {
				return nil, err
			}
			ans, err := s.RewriteAnswer(sdpFor(agentAddr[k]))
			if err != nil {
				return nil, err
			}
			if toAgent, err = audioAddr(ans); err != nil { // callgate's caller-facing port
				return nil, err
			}
			if toCaller, err = audioAddr(off); err != nil { // callgate's agent-facing port
				return nil, err
			}
		}
		perSock[k] = append(perSock[k], stream{from: callers[k], to: toAgent, id: uint32(2 * i)})
		perSock[nsock+k] = append(perSock[nsock+k], stream{from: agents[k], to: toCaller, id: uint32(2*i + 1)})
	}

	start := time.Now()
	recvCount := make([]uint32, 2*n)
	hists := make([][]uint64, 2*nsock)
	var stop atomic.Bool
	var rwg sync.WaitGroup
	for k, c := range append(slices.Clone(callers), agents...) {
		hists[k] = make([]uint64, histMax+1)
		rwg.Add(1)
		go func(c *net.UDPConn, h []uint64) {
			defer rwg.Done()
			buf := make([]byte, 2048)
			for {
				nb, _, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				now := time.Since(start)
				if nb < 12+12 {
					continue
				}
				sentAt := time.Duration(binary.BigEndian.Uint64(buf[12:]))
				id := binary.BigEndian.Uint32(buf[20:])
				if int(id) < len(recvCount) {
					atomic.AddUint32(&recvCount[id], 1) // each id has one receiver; atomic for the final read
				}
				us := (now - sentAt).Microseconds()
				if us < 0 {
					us = 0
				}
				if us > histMax {
					us = histMax
				}
				h[us]++
			}
		}(c, hists[k])
	}

	period := time.Second / time.Duration(pps)
	var sent atomic.Uint64
	cpu0 := cpuSeconds()
	var swg sync.WaitGroup
	for _, list := range perSock {
		swg.Add(1)
		go func(list []stream) {
			defer swg.Done()
			pkt := make([]byte, 12+payload)
			pkt[0] = 0x80
			// call j of this socket sends at phase j*period/len + a global spread
			var seq uint16
			var count uint64
			m := len(list)
			for round := 0; ; round++ {
				for j := 0; j < m; j++ {
					due := time.Duration(round)*period + time.Duration(j)*period/time.Duration(m)
					if due >= dur {
						sent.Add(count)
						return
					}
					if d := due - time.Since(start); d > 200*time.Microsecond {
						time.Sleep(d)
					}
					st := &list[j]
					seq++
					binary.BigEndian.PutUint16(pkt[2:], uint16(round))
					binary.BigEndian.PutUint32(pkt[4:], uint32(round*160))
					binary.BigEndian.PutUint32(pkt[8:], st.id+1)
					binary.BigEndian.PutUint64(pkt[12:], uint64(time.Since(start)))
					binary.BigEndian.PutUint32(pkt[20:], st.id)
					if _, err := st.from.WriteToUDPAddrPort(pkt, st.to); err == nil {
						count++
					}
				}
			}
		}(list)
	}
	swg.Wait()
	elapsed := time.Since(start)
	cpu := (cpuSeconds() - cpu0) / elapsed.Seconds()
	// drain: wait until nothing more arrives
	var last uint64
	for i := 0; i < 40; i++ {
		time.Sleep(50 * time.Millisecond)
		var tot uint64
		for j := range recvCount {
			tot += uint64(atomic.LoadUint32(&recvCount[j]))
		}
		if tot == sent.Load() || (i > 4 && tot == last) {
			break
		}
		last = tot
	}
	stop.Store(true)
	for k := range callers {
		callers[k].Close()
		agents[k].Close()
	}
	rwg.Wait()
	r := &result{sent: sent.Load(), hist: make([]uint64, histMax+1), cpu: cpu, elapsed: elapsed}
	for j := range recvCount {
		r.recv += uint64(recvCount[j])
	}
	for _, h := range hists {
		for i, c := range h {
			r.hist[i] += c
		}
	}
	return r, nil
}
