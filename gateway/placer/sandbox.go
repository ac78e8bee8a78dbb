package placer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// UACConfig configures the sandbox third-party call controller.
type UACConfig struct {
	// Addr is the UDP address its SIP user agent binds (default
	// 127.0.0.1:0); it is not one of the proxy's listeners.
	Addr string
	// TerminationURI is where calls to the "PSTN" go
	// (carriers.sandbox.termination_uri); empty: sandbox numbers cannot
	// place calls.
	TerminationURI string
	// RingTimeout bounds each leg's ringing (default 60s).
	RingTimeout time.Duration
	Log         *slog.Logger
}

// UAC places sandbox calls as a third-party call controller (RFC 3725
// flow I): INVITE without SDP to the callee through the sandbox
// termination; the callee's 200 carries its offer; INVITE the agent with
// that offer; the agent's 200 carries the answer; ACK the agent, and ACK
// the callee with the answer. Media flows directly between the two. A BYE
// from either side is answered and relayed to the other (B2BUA).
type UAC struct {
	cfg     UACConfig
	term    sip.Uri
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	dua     *sipgo.DialogUA
	pc      net.PacketConn
	log     *slog.Logger
	p       *Placer // set by New
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closeMu sync.Once

	mu    sync.Mutex
	legs  map[string]*b2b // by the SIP Call-ID of either leg
	calls map[string]*b2b // by callgate call id
}

// b2b is one placed sandbox call: the callee's leg (a) and the agent's (b).
type b2b struct {
	pl       *plan
	a, b     *sipgo.DialogClientSession
	aID, bID string // SIP Call-IDs
	done     chan struct{}
	once     sync.Once
	reason   string
	answered bool
	media    MediaSession // nil: media flows directly between the legs
	// ctx ends when the call ends: a leg still ringing is CANCELled.
	ctx    context.Context
	cancel context.CancelFunc
}

// NewUAC binds the UAC's SIP user agent and starts serving in-dialog
// requests (BYE) on it.
func NewUAC(cfg UACConfig) (*UAC, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.RingTimeout <= 0 {
		cfg.RingTimeout = 60 * time.Second
	}
	u := &UAC{cfg: cfg, log: cfg.Log, legs: map[string]*b2b{}, calls: map[string]*b2b{}}
	if u.log == nil {
		u.log = slog.Default()
	}
	if cfg.TerminationURI != "" {
		if err := sip.ParseUri(cfg.TerminationURI, &u.term); err != nil || u.term.Host == "" {
			return nil, fmt.Errorf("placer: sandbox termination_uri %q is not a SIP URI (sip:host:port)", cfg.TerminationURI)
		}
	}
	pc, err := net.ListenPacket("udp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("placer: sandbox UAC: listen %s: %w", cfg.Addr, err)
	}
	u.pc = pc
	host, portS, _ := net.SplitHostPort(pc.LocalAddr().String())
	port, _ := strconv.Atoi(portS)
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("callgate"), sipgo.WithUserAgentHostname(host))
	if err != nil {
		pc.Close()
		return nil, err
	}
	u.ua = ua
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		u.Close()
		return nil, err
	}
	u.srv = srv
	srv.OnBye(u.onBye)
	srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	srv.OnOptions(func(r *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(r, 200, "OK", nil))
	})
	srv.OnInvite(func(r *sip.Request, tx sip.ServerTransaction) {
		// Re-INVITEs are not relayed (media stays as negotiated).
		_ = tx.Respond(sip.NewResponseFromRequest(r, 488, "Not Acceptable Here", nil))
	})
	u.ctx, u.cancel = context.WithCancel(context.Background())
	go func() { _ = srv.ServeUDP(pc) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, _ := ua.TransportLayer().GetConnection("udp", pc.LocalAddr().String()); c != nil {
			break
		}
		if time.Now().After(deadline) {
			u.Close()
			return nil, errors.New("placer: sandbox UAC: listener did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(pc.LocalAddr().String()))
	if err != nil {
		u.Close()
		return nil, err
	}
	u.dua = &sipgo.DialogUA{Client: cli, ContactHDR: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "callgate", Host: host, Port: port}}}
	return u, nil
}

// Addr is the UAC's bound SIP address.
func (u *UAC) Addr() net.Addr { return u.pc.LocalAddr() }

// Close ends every call in progress (CANCEL or BYE) and stops the UAC.
func (u *UAC) Close() {
	u.closeMu.Do(func() {
		if u.cancel != nil {
			u.cancel() // ringing legs are CANCELled, answered ones get BYE
		}
		done := make(chan struct{})
		go func() { u.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			// A leg that never answered anything waits for Timer B:
			// closing the transport ends its transaction.
		}
		if u.ua != nil {
			_ = u.ua.Close()
		}
		<-done
		_ = u.pc.Close()
	})
}

// Active is the number of sandbox calls in progress.
func (u *UAC) Active() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.calls)
}

// placeSandbox starts the RFC 3725 flow; the API answers at once with
// "queued" while the legs ring.
func (p *Placer) placeSandbox(pl *plan) error {
	u := p.d.Sandbox
	if u == nil || u.term.Host == "" {
		return fieldErr(400, "from", "Invalid request", "sandbox numbers cannot place calls on this gateway: carriers.sandbox.termination_uri (CALLGATE_SANDBOX_TERMINATION_URI) is not set")
	}
	var agent sip.Uri
	if err := sip.ParseUri(pl.endpoint.URI, &agent); err != nil {
		return fieldErr(400, "agent_id", "Invalid request", "the agent's endpoint %q is not a SIP URI", pl.endpoint.URI)
	}
	b := &b2b{pl: pl, done: make(chan struct{})}
	b.ctx, b.cancel = context.WithCancel(u.ctx)
	mode := pl.agent.Media
	if mode == "" {
		mode = p.d.MediaMode
	}
	if mode == "relay" && p.d.Media != nil {
		ms, err := p.d.Media.NewSession(pl.call.ID, func() { u.hangup(b, nil, "media_timeout") })
		if err != nil {
			return &Error{Status: 503, Title: "Media relay full", Detail: "no relay ports free for this call; retry later", RetryAfter: 5 * time.Second}
		}
		b.media = ms
	}
	u.mu.Lock()
	u.calls[pl.call.ID] = b
	u.mu.Unlock()
	u.wg.Add(1)
	pl.start = func() { // after the started event (place)
		go func() {
			defer u.wg.Done()
			u.run(b, agent)
		}()
	}
	return nil
}

// endSandbox ends a sandbox call in progress (BYE both legs) with reason
// (EndCall, cut.go).
func (p *Placer) endSandbox(callID, reason string) bool {
	if p.d.Sandbox == nil {
		return false
	}
	u := p.d.Sandbox
	u.mu.Lock()
	b := u.calls[callID]
	u.mu.Unlock()
	if b == nil {
		return false
	}
	u.hangup(b, nil, reason)
	return true
}

func (u *UAC) track(b *b2b, id string) {
	u.mu.Lock()
	u.legs[id] = b
	u.mu.Unlock()
}

func (u *UAC) newInvite(target sip.Uri, from, to string, body []byte, hs [][2]string) *sip.Request {
	req := sip.NewRequest(sip.INVITE, target)
	fh := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: from, Host: u.dua.ContactHDR.Address.Host}, Params: sip.NewParams()}
	fh.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(fh)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: to, Host: target.Host, Port: target.Port}})
	for _, h := range hs {
		req.AppendHeader(sip.NewHeader(h[0], h[1]))
	}
	if body != nil {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		req.SetBody(body)
	}
	if t, ok := target.UriParams.Get("transport"); ok && t != "" {
		req.SetTransport(strings.ToUpper(t))
	}
	return req
}

func (u *UAC) run(b *b2b, agent sip.Uri) {
	pl := b.pl
	st := pl.state()
	c := pl.call
	p := u.p
	// Leg A: the callee, through the sandbox termination, without SDP.
	target := u.term
	target.User = c.To
	target.Headers = nil
	ctxA, cancelA := context.WithTimeout(b.ctx, u.cfg.RingTimeout)
	defer cancelA()
	reqA := u.newInvite(target, c.From, c.To, nil, nil)
	legA, err := u.dua.WriteInvite(ctxA, reqA)
	if err != nil {
		u.finish(b, "pstn_unreachable")
		return
	}
	b.a, b.aID = legA, reqA.CallID().Value()
	u.track(b, b.aID)
	if err := legA.WaitAnswer(ctxA, sipgo.AnswerOptions{}); err != nil {
		u.finish(b, failReason("pstn", err, ctxA))
		return
	}
	offer := legA.InviteResponse.Body()
	if u.ended(b) { // ended meanwhile (shutdown, EndCall): the 200 still needs ACK, then BYE
		_ = u.ack(legA, nil)
		u.hangup(b, nil, b.reason)
		return
	}
	if b.media != nil {
		if offer, err = b.media.RewriteOffer(offer); err != nil {
			_ = u.ack(legA, nil)
			u.hangup(b, nil, "pstn_bad_sdp")
			return
		}
	}
	// Leg B: the agent, with the callee's offer.
	ctxB, cancelB := context.WithTimeout(b.ctx, u.cfg.RingTimeout)
	defer cancelB()
	reqB := u.newInvite(agent, c.From, agent.User, offer, agentHeaders(pl))
	legB, err := u.dua.WriteInvite(ctxB, reqB)
	if err == nil {
		b.b, b.bID = legB, reqB.CallID().Value()
		u.track(b, b.bID)
		err = legB.WaitAnswer(ctxB, sipgo.AnswerOptions{})
	}
	if err != nil && u.ended(b) {
		return // the callee hung up while the agent rang: the agent was CANCELled
	}
	if err != nil {
		// The callee's 200 must still be ACKed before it is hung up.
		_ = u.ack(legA, nil)
		b.b = nil
		u.hangup(b, nil, failReason("agent", err, ctxB))
		return
	}
	if u.ended(b) { // the callee hung up as the agent answered
		_ = legB.Ack(u.ctx)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = legB.Bye(ctx)
		cancel()
		return
	}
	answer := legB.InviteResponse.Body()
	if b.media != nil {
		if answer, err = b.media.RewriteAnswer(answer); err != nil {
			_ = legB.Ack(u.ctx)
			_ = u.ack(legA, nil)
			u.hangup(b, nil, "agent_bad_sdp")
			return
		}
	}
	if err := legB.Ack(u.ctx); err != nil {
		u.log.Warn("placer: sandbox: ACK to the agent failed", "call_id", c.ID, "err", err)
	}
	if err := u.ack(legA, answer); err != nil {
		u.log.Warn("placer: sandbox: ACK to the callee failed", "call_id", c.ID, "err", err)
	}
	b.answered = true
	p.answered(c, st)
	select {
	case <-b.done:
	case <-u.ctx.Done():
		u.hangup(b, nil, "shutdown")
	}
}

// ack sends the ACK for a leg's 2xx, carrying body (the SDP answer when
// the 200 held the offer).
func (u *UAC) ack(leg *sipgo.DialogClientSession, body []byte) error {
	res := leg.InviteResponse
	target := leg.InviteRequest.Recipient
	if ct := res.Contact(); ct != nil {
		target = ct.Address
	}
	ack := sip.NewRequest(sip.ACK, *target.Clone())
	if body != nil {
		ack.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		ack.SetBody(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return leg.WriteAck(ctx, ack)
}

// failReason names why a leg was not answered.
func failReason(leg string, err error, ctx context.Context) string {
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		switch de.Res.StatusCode {
		case 486, 600:
			return leg + "_busy"
		case 480, 408:
			return leg + "_no_answer"
		case 603:
			return leg + "_declined"
		}
		return leg + "_" + strconv.Itoa(de.Res.StatusCode)
	}
	if ctx.Err() != nil {
		return leg + "_no_answer"
	}
	return leg + "_failed"
}

// onBye answers a BYE from either leg and relays it to the other.
func (u *UAC) onBye(req *sip.Request, tx sip.ServerTransaction) {
	id := ""
	if h := req.CallID(); h != nil {
		id = h.Value()
	}
	u.mu.Lock()
	b := u.legs[id]
	u.mu.Unlock()
	if b == nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	from := b.a
	reason := "bye_callee"
	if id == b.bID {
		from, reason = b.b, "bye_agent"
	}
	u.hangup(b, from, reason)
}

// hangup sends BYE to every established leg but skip, and finishes b.
func (u *UAC) hangup(b *b2b, skip *sipgo.DialogClientSession, reason string) {
	for _, leg := range []*sipgo.DialogClientSession{b.a, b.b} {
		if leg == nil || leg == skip || leg.InviteResponse == nil || !leg.InviteResponse.IsSuccess() {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := leg.Bye(ctx); err != nil {
			u.log.Debug("placer: sandbox: BYE not answered", "call_id", b.pl.call.ID, "err", err)
		}
		cancel()
	}
	u.finish(b, reason)
}

// ended reports whether b has finished.
func (u *UAC) ended(b *b2b) bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// finish ends b once: events, metering, limits; a leg still ringing is
// CANCELled.
func (u *UAC) finish(b *b2b, reason string) {
	b.once.Do(func() {
		if b.cancel != nil {
			defer b.cancel()
		}
		b.reason = reason
		u.mu.Lock()
		delete(u.calls, b.pl.call.ID)
		delete(u.legs, b.aID)
		delete(u.legs, b.bID)
		u.mu.Unlock()
		for _, leg := range []*sipgo.DialogClientSession{b.a, b.b} {
			if leg != nil {
				_ = leg.Close()
			}
		}
		close(b.done)
		var stats any
		if b.media != nil {
			stats = b.media.Close()
		}
		u.p.endedWith(b.pl.call, b.pl.state(), reason, stats)
	})
}
