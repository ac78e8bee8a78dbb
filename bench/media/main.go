//go:build linux

// Command media is the media relay benchmark: it relays N concurrent
// calls (50 packets/s each way, 160-byte payloads) through a
// gateway/media Manager on loopback, for rising N, and reports loss and
// the one-way latency of each packet: from the sender's send call to the
// moment the datagram is queued at the receiving socket (the kernel's
// SO_TIMESTAMPNS receive stamp), which is what a caller's or an agent's
// host would see, without the generator's own delay in reading it.
// Before each relayed step the same traffic goes
// straight from sender to receiver: the difference is what the relay adds.
//
// The relay runs in a process of its own (this binary, started with
// -serve-relay, driven over its stdin and stdout), as on a gateway whose
// callers and agents are other machines: the two processes share the
// machine's cores but not a Go scheduler (the generator's paced sender
// threads block in nanosleep tens of thousands of times a second, which
// a Go scheduler shared with the relay pays for). Callers and agents are a few sockets
// each (-sockets); the relay has its own 4 sockets per call. The senders
// (-senders threads) pace every packet to its own due time within -pace,
// as 1,000 independent phones would, rather than in bursts.
//
// Linux only (receive timestamps, nanosleep pacing).
package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/callgate/callgate/gateway/media"
	"github.com/pion/sdp/v3"
	"golang.org/x/sys/unix"
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
		ladder    = flag.Bool("ladder", false, "stop at the first step whose added p99 exceeds -max-p99 (or that fails the loss target) and print the largest call count within it")
		maxLoss   = flag.Float64("max-loss", 0.001, "loss ratio a step must stay under")
		maxP99    = flag.Duration("max-p99", time.Millisecond, "p99 latency the relay may add in a step that meets the target")
		cpuprof   = flag.String("cpuprofile", "", "write a CPU profile of the generator's process to this file (in the relay process: of the relay)")
		serve     = flag.Bool("serve-relay", false, "internal: be the relay process (commands on stdin)")
	)
	flag.IntVar(&senders, "senders", senders, "generator threads sending packets")
	flag.DurationVar(&pace, "pace", pace, "a packet due sooner than this is sent at once instead of sleeping until it is due")
	flag.IntVar(&relayProcs, "relay-procs", 0, "GOMAXPROCS of the relay process (0: Go's default, the CPUs it may use)")
	flag.StringVar(&relayProfile, "relay-cpuprofile", "", "write a CPU profile of the relay process of each step to this file, suffixed .CALLS")
	flag.StringVar(&relayCPUs, "relay-cpus", "", "pin the relay process to these CPUs (taskset list, e.g. 1)")
	flag.BoolVar(&srtpMode, "srtp", false, "every call SRTP on both legs (SDES AES_CM_128_HMAC_SHA1_80): the relay decrypts and re-encrypts each packet (srtp.go)")
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
	if *serve {
		if relayProcs > 0 {
			runtime.GOMAXPROCS(relayProcs)
		}
		if err := serveRelay(*portMin, *portMax); err != nil {
			pprof.StopCPUProfile()
			fmt.Fprintln(os.Stderr, "relay:", err)
			os.Exit(1)
		}
		return
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
	mode := "relay in its own process"
	if srtpMode {
		mode += ", SRTP on both legs"
	}
	if *direct {
		mode = "direct (no relay, baseline)"
	}
	fmt.Printf("# media relay benchmark: %s, %d pps each way per call, %d-byte payload, %s per step, GOMAXPROCS=%d, NumCPU=%d\n",
		mode, *pps, *payload, *duration, runtime.GOMAXPROCS(0), runtime.NumCPU())
	fmt.Printf("# latency = sender's send call -> the datagram queued at the receiving socket (kernel receive timestamp), one way, per packet; cpu%% = generator + relay process\n")
	fmt.Printf("%-6s %6s %10s %10s %9s %9s %9s %9s %9s %9s %7s  %s\n",
		"mode", "calls", "sent", "recv", "loss%", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "cpu%", "result")
	row := func(label string, n int, r *result, verdict string) {
		fmt.Printf("%-6s %6d %10d %10d %9.4f %9.0f %9.0f %9.0f %9.0f %9.0f %7.0f  %s\n",
			label, n, r.sent, r.recv, 100*r.lossRatio(), r.pct(0.50), r.pct(0.90), r.pct(0.99), r.pct(0.999), r.max(), 100*r.cpu, verdict)
	}
	type pick struct {
		n       int
		r, base *result
	}
	var bestLoss, bestLat pick
	stoppedAt := 0 // -ladder: the first step over the target
	added := func(r, base *result, q float64) float64 { return r.pct(q) - base.pct(q) }
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
		lossOK := r.lossRatio() < *maxLoss
		latOK := base != nil && lossOK && added(r, base, 0.99) < float64(maxP99.Microseconds())
		verdict := "ok"
		switch {
		case !lossOK:
			verdict = "FAIL loss"
		case base != nil && !latOK:
			verdict = "over p99 target"
		}
		label := "relay"
		if *direct {
			label = "direct"
		}
		row(label, n, r, verdict)
		if base != nil {
			fmt.Printf("       added by relay: p50 %+.0f us, p99 %+.0f us; relay CPU %.2f us per relayed packet",
				added(r, base, 0.5), added(r, base, 0.99), relayCPU(r, base))
			if r.relaySec > 0 && r.recv > 0 {
				fmt.Printf(" (the relay process alone: %.2f us)", r.relaySec/float64(r.recv)*1e6)
			}
			fmt.Println()
		}
		if lossOK && n > bestLoss.n {
			bestLoss = pick{n, r, base}
		}
		if latOK && n > bestLat.n {
			bestLat = pick{n, r, base}
		}
		if *ladder && base != nil && !latOK {
			stoppedAt = n
			break
		}
		if !lossOK && !*all {
			break
		}
	}
	summary := func(what string, p pick) {
		if p.r == nil {
			fmt.Printf("# no step had %s\n", what)
			return
		}
		fmt.Printf("# most calls with %s: %d (one-way p50 %.0f us, p99 %.0f us", what, p.n, p.r.pct(0.5), p.r.pct(0.99))
		if p.base != nil {
			fmt.Printf("; added by the relay p50 %+.0f us, p99 %+.0f us", added(p.r, p.base, 0.5), added(p.r, p.base, 0.99))
		}
		fmt.Printf(")\n")
	}
	summary(fmt.Sprintf("loss < %.2f%%", 100**maxLoss), bestLoss)
	if *baseline && !*direct {
		summary(fmt.Sprintf("loss < %.2f%% and added p99 < %s", 100**maxLoss, *maxP99), bestLat)
	}
	if *ladder && *baseline && !*direct {
		switch {
		case stoppedAt > 0:
			fmt.Printf("# LADDER: largest call count within %s added p99: %d (stopped at %d calls, the first over)\n", *maxP99, bestLat.n, stoppedAt)
		default:
			fmt.Printf("# LADDER: largest call count within %s added p99: %d (every step tried was within; raise CALLS to find the limit)\n", *maxP99, bestLat.n)
		}
	}
}

const histMax = 200_000 // µs; later arrivals go to the last bucket

type result struct {
	sent, recv uint64
	hist       []uint64 // µs buckets: sender's send call -> receiving socket's queue (kernel timestamp)
	cpu        float64  // process CPU seconds per wall second
	relaySec   float64  // CPU seconds of the relay process (0: in this process)
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

func (r *result) pct(q float64) float64 { return pct(r.hist, q) }

func pct(hist []uint64, q float64) float64 {
	var total uint64
	for _, c := range hist {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var acc uint64
	for i, c := range hist {
		acc += c
		if acc > want {
			return float64(i)
		}
	}
	return float64(len(hist) - 1)
}

// bucket is the histogram index of a latency in ns.
func bucket(ns int64) int {
	us := ns / 1000
	if us < 0 {
		us = 0
	}
	if us > histMax {
		us = histMax
	}
	return int(us)
}

// kernelTimestamps asks the kernel to stamp each datagram with the time it
// reached the socket (SO_TIMESTAMPNS): latency is then measured to the
// receiving host's socket, as a caller's or agent's kernel would see the
// packet, without the generator's own scheduling delay in reading it.
func kernelTimestamps(c *net.UDPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return err
	}
	return serr
}

// rxTimestamp finds the SCM_TIMESTAMPNS control message (a timespec of
// two 64-bit fields) in oob without allocating.
func rxTimestamp(oob []byte) (int64, bool) {
	const hdr = syscall.SizeofCmsghdr
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			return 0, false
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr:]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8:]))
			return sec*1e9 + nsec, true
		}
		oob = oob[(l+7)&^7:]
	}
	return 0, false
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

// relayer is the relay under test: it opens a relayed call between a
// caller and an agent address and returns where each side must send
// (the relay's caller-facing and agent-facing RTP ports), and reports
// the CPU seconds the relay's process has used.
type relayer interface {
	open(caller, agent netip.AddrPort) (toAgent, toCaller netip.AddrPort, err error)
	cpu() (float64, error)
	close() error
}

func newManager(portMin, portMax int) (*media.Manager, error) {
	return media.NewManager(media.Config{BindIP: "127.0.0.1", PortMin: portMin, PortMax: portMax,
		MediaTimeout: time.Minute}, slog.New(slog.DiscardHandler), nil)
}

// openSession opens one session and runs an offer and an answer through
// it, as the SIP side does.
func openSession(m *media.Manager, id string, caller, agent netip.AddrPort) (toAgent, toCaller netip.AddrPort, err error) {
	if srtpMode {
		return openSecureSession(m, id, caller, agent) // srtp.go
	}
	s, err := m.NewSession(id, nil)
	if err != nil {
		return toAgent, toCaller, err
	}
	off, err := s.RewriteOffer(sdpFor(caller))
	if err != nil {
		return toAgent, toCaller, err
	}
	ans, err := s.RewriteAnswer(sdpFor(agent))
	if err != nil {
		return toAgent, toCaller, err
	}
	if toAgent, err = audioAddr(ans); err != nil { // callgate's caller-facing port
		return toAgent, toCaller, err
	}
	toCaller, err = audioAddr(off) // callgate's agent-facing port
	return toAgent, toCaller, err
}

// childRelay is this binary started with -serve-relay. Protocol, a line
// each way: "open CALLER AGENT" -> "ok TO_AGENT TO_CALLER" | "err TEXT";
// "cpu" -> "ok SECONDS". End of stdin closes the manager and exits.
type childRelay struct {
	cmd *exec.Cmd
	in  *bufio.Writer
	out *bufio.Scanner
	w   interface{ Close() error }
}

// relayProcs is the relay process's GOMAXPROCS (0: Go's default).
var relayProcs int

// relayProfile is the path prefix of the relay processes' CPU profiles.
var relayProfile string

// relayCPUs pins the relay process (taskset -c), when set.
var relayCPUs string

func newChildRelay(portMin, portMax, calls int) (*childRelay, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{self, "-serve-relay", "-port-min", strconv.Itoa(portMin), "-port-max", strconv.Itoa(portMax)}
	if relayProcs > 0 {
		args = append(args, "-relay-procs", strconv.Itoa(relayProcs))
	}
	if relayProfile != "" {
		args = append(args, "-cpuprofile", relayProfile+"."+strconv.Itoa(calls))
	}
	if srtpMode {
		args = append(args, "-srtp")
	}
	if relayCPUs != "" {
		args = append([]string{"taskset", "-c", relayCPUs}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = os.Stderr
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	rd, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &childRelay{cmd: cmd, in: bufio.NewWriter(w), out: bufio.NewScanner(rd), w: w}, nil
}

func (c *childRelay) call(line string) ([]string, error) {
	c.in.WriteString(line + "\n")
	if err := c.in.Flush(); err != nil {
		return nil, err
	}
	if !c.out.Scan() {
		return nil, fmt.Errorf("relay process ended: %v", c.out.Err())
	}
	f := strings.Fields(c.out.Text())
	if len(f) == 0 || f[0] != "ok" {
		return nil, errors.New(c.out.Text())
	}
	return f[1:], nil
}

func (c *childRelay) open(caller, agent netip.AddrPort) (toAgent, toCaller netip.AddrPort, err error) {
	f, err := c.call("open " + caller.String() + " " + agent.String())
	if err != nil {
		return toAgent, toCaller, err
	}
	if len(f) != 2 {
		return toAgent, toCaller, fmt.Errorf("relay process answered %q", f)
	}
	if toAgent, err = netip.ParseAddrPort(f[0]); err != nil {
		return toAgent, toCaller, err
	}
	toCaller, err = netip.ParseAddrPort(f[1])
	return toAgent, toCaller, err
}

func (c *childRelay) cpu() (float64, error) {
	f, err := c.call("cpu")
	if err != nil || len(f) != 1 {
		return 0, fmt.Errorf("relay cpu: %v %q", err, f)
	}
	return strconv.ParseFloat(f[0], 64)
}

// close ends the child (end of its stdin) and waits for it; one that
// does not exit within 10 s is killed by its PID.
func (c *childRelay) close() error {
	c.w.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		return <-done
	}
}

// serveRelay is the -serve-relay process: a media.Manager driven by the
// commands of childRelay on stdin.
func serveRelay(portMin, portMax int) error {
	m, err := newManager(portMin, portMax)
	if err != nil {
		return err
	}
	defer m.Close()
	out := bufio.NewWriter(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for i := 0; in.Scan(); i++ {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 3 && f[0] == "open":
			caller, err1 := netip.ParseAddrPort(f[1])
			agent, err2 := netip.ParseAddrPort(f[2])
			if err := errors.Join(err1, err2); err != nil {
				fmt.Fprintf(out, "err %v\n", err)
				break
			}
			toAgent, toCaller, err := openSession(m, fmt.Sprintf("bench-%d", i), caller, agent)
			if err != nil {
				fmt.Fprintf(out, "err %v\n", err)
				break
			}
			fmt.Fprintf(out, "ok %s %s\n", toAgent, toCaller)
		case len(f) == 1 && f[0] == "cpu":
			fmt.Fprintf(out, "ok %f\n", cpuSeconds())
		default:
			fmt.Fprintf(out, "err unknown command %q\n", in.Text())
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return in.Err()
}

// senders is how many threads send the generator's packets; pace is how
// early a packet may leave rather than sleep until it is due.
var (
	senders = 2
	pace    = 50 * time.Microsecond
)

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

	var rel relayer
	if !direct {
		var err error
		if rel, err = newChildRelay(portMin, portMax, n); err != nil {
			return nil, err
		}
		defer rel.close()
	}
	// streams per sender thread; each sender spreads its streams evenly
	// over the packet period
	perSender := make([][]stream, senders)
	for i := 0; i < n; i++ {
		k := i % nsock
		toAgent, toCaller := agentAddr[k], callerAddr[k]
		if !direct {
			var err error
			if toAgent, toCaller, err = rel.open(callerAddr[k], agentAddr[k]); err != nil {
				return nil, fmt.Errorf("session %d: %w", i, err)
			}
		}
		for _, st := range []stream{{from: callers[k], to: toAgent, id: uint32(2 * i)}, {from: agents[k], to: toCaller, id: uint32(2*i + 1)}} {
			perSender[int(st.id)%senders] = append(perSender[int(st.id)%senders], st)
		}
	}

	if srtpMode {
		if err := setupSRTP(n); err != nil { // srtp.go
			return nil, err
		}
	}
	start := time.Now()
	recvCount := make([]uint32, 2*n)
	hists := make([][]uint64, 2*nsock)
	var rwg sync.WaitGroup
	for k, c := range append(slices.Clone(callers), agents...) {
		hists[k] = make([]uint64, histMax+1)
		if err := kernelTimestamps(c); err != nil {
			return nil, err
		}
		rwg.Add(1)
		go func(c *net.UDPConn, h []uint64) {
			defer rwg.Done()
			buf := make([]byte, 2048)
			oob := make([]byte, 128)
			for {
				nb, oobn, _, _, err := c.ReadMsgUDPAddrPort(buf, oob)
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				if nb < 12+12 {
					continue
				}
				sentAt := int64(binary.BigEndian.Uint64(buf[12:]))
				id := binary.BigEndian.Uint32(buf[20:])
				if srtpMode { // the payload is encrypted: stamps in the header (srtp.go)
					sentAt, id = headerStamp(buf, now)
				}
				if int(id) < len(recvCount) {
					atomic.AddUint32(&recvCount[id], 1) // each id has one receiver; atomic for the final read
				}
				arrived, ok := rxTimestamp(oob[:oobn])
				if !ok {
					arrived = now
				}
				h[bucket(arrived-sentAt)]++
			}
		}(c, hists[k])
	}

	period := time.Second / time.Duration(pps)
	var sent atomic.Uint64
	relCPU := func() float64 {
		if rel == nil {
			return 0
		}
		c, err := rel.cpu()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
		return c
	}
	rel0 := relCPU()
	cpu0 := cpuSeconds() + rel0
	var swg sync.WaitGroup
	for _, list := range perSender {
		swg.Add(1)
		go func(list []stream) {
			defer swg.Done()
			// Each packet leaves on its own schedule (within -pace), as
			// from 1,000 independent phones, not in bursts: time.Sleep
			// wakes on the runtime poller's millisecond ticks (about
			// 0.8 ms late for a 0.3 ms sleep here, every sender at the
			// same tick), so the sender owns a thread and sleeps in
			// nanosleep with a 1 µs timer slack.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
			pkt := make([]byte, 12+payload)
			pkt[0] = 0x80
			enc := make([]byte, len(pkt)+64) // SRTP packets (srtp.go)
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
					if d := due - time.Since(start); d > pace {
						ts := unix.NsecToTimespec(int64(d))
						unix.Nanosleep(&ts, nil)
					}
					st := &list[j]
					seq++
					binary.BigEndian.PutUint16(pkt[2:], uint16(round))
					binary.BigEndian.PutUint32(pkt[4:], uint32(round*160))
					binary.BigEndian.PutUint32(pkt[8:], st.id+1)
					binary.BigEndian.PutUint64(pkt[12:], uint64(time.Now().UnixNano()))
					binary.BigEndian.PutUint32(pkt[20:], st.id)
					out := pkt
					if srtpMode {
						out = sealBench(st.id, pkt, enc)
					}
					if _, err := st.from.WriteToUDPAddrPort(out, st.to); err == nil {
						count++
					}
				}
			}
		}(list)
	}
	swg.Wait()
	elapsed := time.Since(start)
	rel1 := relCPU()
	cpu := (cpuSeconds() + rel1 - cpu0) / elapsed.Seconds()
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
	for k := range callers {
		callers[k].Close()
		agents[k].Close()
	}
	rwg.Wait()
	r := &result{sent: sent.Load(), hist: make([]uint64, histMax+1), cpu: cpu, elapsed: elapsed, relaySec: rel1 - rel0}
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
