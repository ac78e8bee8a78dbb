package devua

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// AgentConfig configures a demo agent.
type AgentConfig struct {
	// Listen is the UDP address for SIP ("127.0.0.1:5090"; port 0 picks one).
	Listen string
	// ToneHz, when set, makes the greeting a 1.5 s tone at this frequency
	// instead of the recorded voice.
	ToneHz float64
	// RecordDir, when set, gets one WAV file per call of what the caller
	// sent (<call-id>.wav).
	RecordDir string
	// Ring is how long the agent rings (180) before answering.
	Ring time.Duration
	// MaxDuration ends (BYE) a call that lasts longer. Default 10 minutes.
	MaxDuration time.Duration
	// MaxCalls caps calls ringing or in progress; more get 486. Default 100.
	MaxCalls int
	// Out gets one line per call. Default os.Stdout.
	Out io.Writer
}

// CallReport is what the agent saw of one call (also printed as a line).
type CallReport struct {
	CallID    string
	From, To  string
	Headers   []string // X-Callgate-* as name=value
	Codec     string
	Duration  time.Duration
	Holds     int    // re-INVITEs that put the call on hold
	PeerMedia string // the RTP address in the offer
	End       string
	Stats
}

func (r CallReport) String() string {
	h := strings.Join(r.Headers, " ")
	if h == "" {
		h = "x-callgate=none"
	}
	return fmt.Sprintf("call from=%s to=%s %s codec=%s duration=%.1fs %s holds=%d dtmf=%q end=%s",
		r.From, r.To, h, r.Codec, r.Duration.Seconds(), r.Stats, r.Holds, r.DTMF, r.End)
}

// Agent is the demo voice agent: it answers OPTIONS and INVITEs, plays a
// greeting, then echoes the caller; it handles re-INVITE (hold/resume),
// BYE and CANCEL.
type Agent struct {
	cfg      AgentConfig
	greeting []int16
	sip      *sipUA
	dsc      *sipgo.DialogServerCache
	contact  sip.ContactHeader

	mu      sync.Mutex
	calls   map[string]*agentCall // by Call-ID
	ringing int                   // INVITEs not yet answered
	reports []CallReport
	wg      sync.WaitGroup
	closed  bool
}

type agentCall struct {
	ds      *sipgo.DialogServerSession
	st      *stream
	rtpAddr *net.UDPAddr
	sessID  uint64
	version uint64
	codec   Codec
	eventPT int
	holds   int
}

// StartAgent starts a demo agent listening on cfg.Listen.
func StartAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.Out == nil {
		cfg.Out = os.Stdout
	}
	if cfg.MaxDuration <= 0 {
		cfg.MaxDuration = 10 * time.Minute
	}
	if cfg.MaxCalls <= 0 {
		cfg.MaxCalls = 100
	}
	a := &Agent{cfg: cfg, calls: map[string]*agentCall{}}
	if cfg.ToneHz > 0 {
		if cfg.ToneHz >= SampleRate/2 {
			return nil, fmt.Errorf("devua: tone %v Hz: must be below %d Hz", cfg.ToneHz, SampleRate/2)
		}
		a.greeting = Tone(cfg.ToneHz, 1.5)
	} else {
		g, err := Greeting()
		if err != nil {
			return nil, err
		}
		a.greeting = g
	}
	if cfg.RecordDir != "" {
		if err := os.MkdirAll(cfg.RecordDir, 0o755); err != nil {
			return nil, fmt.Errorf("devua: record dir: %w", err)
		}
	}
	u, err := newSIPUA(cfg.Listen, "agent")
	if err != nil {
		return nil, err
	}
	a.sip = u
	a.contact = u.contact("agent")
	a.dsc = sipgo.NewDialogServerCache(u.cli, a.contact)
	u.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"))
		res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
		_ = tx.Respond(res)
	})
	u.srv.OnInvite(a.onInvite)
	u.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = a.dsc.ReadAck(req, tx) })
	u.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := a.dsc.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	if err := u.serve(); err != nil {
		u.close()
		return nil, err
	}
	return a, nil
}

// Addr is the agent's SIP address.
func (a *Agent) Addr() *net.UDPAddr { return a.sip.addr }

// URI is the endpoint URI to give callgate for this agent.
func (a *Agent) URI() string {
	c := a.sip.contact("agent")
	return fmt.Sprintf("sip:agent@%s:%d;transport=udp", c.Address.Host, c.Address.Port)
}

// Reports returns the calls that have ended.
func (a *Agent) Reports() []CallReport {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]CallReport(nil), a.reports...)
}

// Close hangs up every call and stops the agent.
func (a *Agent) Close() {
	a.mu.Lock()
	a.closed = true
	calls := make([]*agentCall, 0, len(a.calls))
	for _, c := range a.calls {
		calls = append(calls, c)
	}
	a.mu.Unlock()
	for _, c := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = c.ds.Bye(ctx)
		cancel()
	}
	a.wg.Wait()
	a.sip.close()
}

func (a *Agent) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil))
}

func (a *Agent) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
		a.onReInvite(req, tx)
		return
	}
	rm, err := parseSDP(req.Body())
	if err != nil {
		a.respond(req, tx, 488, "Not Acceptable Here")
		return
	}
	callID := req.CallID().Value()
	a.mu.Lock()
	_, dup := a.calls[callID]
	busy := dup || a.closed || a.ringing+len(a.calls) >= a.cfg.MaxCalls
	if !busy {
		a.ringing++
	}
	a.mu.Unlock()
	if busy {
		a.respond(req, tx, 486, "Busy Here")
		return
	}
	defer func() {
		a.mu.Lock()
		a.ringing--
		a.mu.Unlock()
	}()
	conn, err := listenRTP(a.sip.addr.IP.String())
	if err != nil {
		a.respond(req, tx, 500, "Server Internal Error")
		return
	}
	ds, err := a.dsc.ReadInvite(req, tx)
	if err != nil {
		conn.Close()
		a.respond(req, tx, 400, "Bad Request")
		return
	}
	rep := CallReport{CallID: callID, From: user(&req.From().Address), To: user(&req.To().Address), Headers: callgateHeaders(req), Codec: rm.codecs[0].Name, PeerMedia: rm.addr.String()}
	c := &agentCall{ds: ds, rtpAddr: conn.LocalAddr().(*net.UDPAddr), sessID: rand.Uint64() >> 1, codec: rm.codecs[0], eventPT: rm.eventPT}
	c.st = a.newStream(conn, callID)
	c.st.configure(rm.addr, c.codec, c.eventPT, rm.hold())

	cancelled := make(chan struct{})
	var once sync.Once
	if !tx.OnCancel(func(*sip.Request) { once.Do(func() { close(cancelled) }) }) {
		once.Do(func() { close(cancelled) })
	}
	_ = ds.Respond(180, "Ringing", nil)
	start := time.Now()
	end := ""
	select {
	case <-cancelled: // CANCEL: the transaction layer answers it (200) and the INVITE (487)
		end = "cancelled"
	case <-tx.Done(): // a transport error
		end = "cancelled"
	case <-time.After(max(a.cfg.Ring, 20*time.Millisecond)):
		// At least 20 ms: back to back, a proxy's parallel workers can
		// reorder the 180 and the 200.
	}
	if end == "" {
		answer := buildSDP(c.rtpAddr, c.sessID, c.version, []Codec{c.codec}, c.eventPT, answerDirection(rm.direction))
		if err := ds.RespondSDP(answer); err != nil {
			end = "cancelled"
		}
	}
	if end != "" {
		conn.Close()
		ds.Close()
		rep.End = end
		rep.Duration = time.Since(start)
		a.finish(rep)
		return
	}
	a.mu.Lock()
	a.calls[callID] = c
	a.mu.Unlock()
	c.st.start()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		ctx := ds.Context()
		end := "bye"
		if waitCtx(ctx, a.cfg.MaxDuration) {
			end = "max-duration"
			bctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = ds.Bye(bctx)
			cancel()
		}
		c.st.close()
		ds.Close()
		a.mu.Lock()
		delete(a.calls, callID)
		rep.Holds = c.holds
		a.mu.Unlock()
		rep.Duration = time.Since(start)
		rep.Stats = c.st.stats()
		rep.End = end
		a.finish(rep)
	}()
}

func (a *Agent) finish(rep CallReport) {
	a.mu.Lock()
	a.reports = append(a.reports, rep)
	a.mu.Unlock()
	fmt.Fprintln(a.cfg.Out, rep)
}

// newStream makes the call's RTP stream: the greeting, then the caller's
// own audio back (echo), recorded when RecordDir is set.
func (a *Agent) newStream(conn *net.UDPConn, callID string) *stream {
	echo := make(chan []int16, 50) // 1 s of audio; more is dropped
	g := a.greeting
	var rec *WAVWriter
	if a.cfg.RecordDir != "" {
		name := strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
				return r
			}
			return '_'
		}, callID)
		if len(name) > 100 {
			name = name[:100]
		}
		rec, _ = CreateWAV(filepath.Join(a.cfg.RecordDir, strings.TrimLeft(name, ".")+".wav"))
	}
	silence := make([]int16, FrameSamples)
	st := &stream{conn: conn}
	st.next = func() []int16 {
		if len(g) > 0 {
			f := g[:min(FrameSamples, len(g))]
			g = g[len(f):]
			for len(echo) > 0 { // what was said over the greeting is not echoed
				<-echo
			}
			return f
		}
		select {
		case f := <-echo:
			return f
		default:
			return silence
		}
	}
	st.onAudio = func(pcm []int16) {
		if rec != nil {
			_ = rec.Write(pcm)
		}
		select {
		case echo <- append([]int16(nil), pcm...):
		default:
		}
	}
	if rec != nil {
		st.closeHook = func() { _ = rec.Close() }
	}
	return st
}

// onReInvite answers a re-INVITE of a call in progress: new remote
// address or codec, hold (sendonly/inactive/c=0.0.0.0) or resume.
func (a *Agent) onReInvite(req *sip.Request, tx sip.ServerTransaction) {
	a.mu.Lock()
	c := a.calls[req.CallID().Value()]
	a.mu.Unlock()
	if c == nil {
		a.respond(req, tx, 481, "Call/Transaction Does Not Exist")
		return
	}
	if err := c.ds.ReadRequest(req, tx); err != nil {
		a.respond(req, tx, 500, "Server Internal Error")
		return
	}
	rm, err := parseSDP(req.Body())
	if err != nil {
		a.respond(req, tx, 488, "Not Acceptable Here")
		return
	}
	codec := c.codec
	if !hasCodec(rm.codecs, codec) {
		codec = rm.codecs[0]
	}
	a.mu.Lock()
	if rm.hold() {
		c.holds++
	}
	c.codec = codec
	c.version++
	v := c.version
	a.mu.Unlock()
	c.st.configure(rm.addr, codec, rm.eventPT, rm.hold())
	answer := buildSDP(c.rtpAddr, c.sessID, v, []Codec{codec}, rm.eventPT, answerDirection(rm.direction))
	res := sip.NewSDPResponseFromRequest(req, answer)
	res.AppendHeader(&a.contact)
	_ = tx.Respond(res)
}

func hasCodec(cs []Codec, c Codec) bool {
	for _, x := range cs {
		if x == c {
			return true
		}
	}
	return false
}
