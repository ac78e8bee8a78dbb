package devua

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// CallConfig configures one test call (the carrier's role).
type CallConfig struct {
	Gateway string // host:port of callgate's SIP listener (UDP)
	To      string // called number, E.164 ("+12285340406")
	From    string // caller number; default "+15550100000"
	// Duration is how long the call stays up after the answer before the
	// caller hangs up (default 5 s).
	Duration time.Duration
	// AnswerTimeout bounds the wait for a final answer (default 15 s).
	AnswerTimeout time.Duration
	// Listen is the local IP for SIP and RTP (default 127.0.0.1).
	Listen string
	// Play is sent once the greeting was heard and has ended (0.8 s of
	// quiet), or after GreetingWait: before that the caller sends
	// silence, so that its own audio echoed back cannot pass for the
	// greeting (and an agent that echoes hears it after its greeting).
	Play []int16
	// NoGreeting plays at once, waiting for no greeting, and Err does
	// not ask for one (an agent calling out: the callee speaks first,
	// or not at all).
	NoGreeting bool
	// GreetingWait is how long the caller listens for the greeting
	// before playing anyway (default 10 s).
	GreetingWait time.Duration
	// ToneHz is the expected greeting tone; 0 looks for speech-band
	// sound instead.
	ToneHz float64
	// Record, when set, is a WAV file that gets everything received.
	Record string
	// DTMF digits (0-9 * # A-D) are sent as RFC 4733 events once the
	// greeting has ended, before Play.
	DTMF string
	// Username and Password answer a 401/407 digest challenge (a trunk
	// with credentials, or callgate's agent side).
	Username, Password string
	// Codecs offered, first preferred (default PCMU, PCMA).
	Codecs []Codec
	// HoldAfter, when set, puts the call on hold (re-INVITE a=sendonly)
	// this long after the answer, and HoldFor later resumes it
	// (re-INVITE a=sendrecv; default 1 s).
	HoldAfter, HoldFor time.Duration
}

// greetingEndFrames is the quiet (20 ms frames) that ends a greeting.
const greetingEndFrames = 40

// CallResult is what the caller measured.
type CallResult struct {
	Status        int
	Reason        string
	Setup         time.Duration // INVITE to final answer
	Talk          time.Duration // answer to hang-up
	Codec         string
	GreetingHeard bool
	GreetingMs    int // greeting audio found, in ms
	HungUpBy      string
	LocalMedia    string // our RTP address (in the offer)
	PeerMedia     string // the RTP address in the answer
	// HeldPacketsIn is how many RTP packets arrived while the call was
	// on hold (from 300 ms after the hold was answered to the resume);
	// -1 when there was no hold.
	HeldPacketsIn int
	// ResumedPacketsIn is how many arrived after the resume was answered.
	ResumedPacketsIn int

	noGreeting bool
	Stats
}

func (r CallResult) String() string {
	heard := "no"
	if r.GreetingHeard {
		heard = "yes"
	}
	return fmt.Sprintf("status=%d %q setup=%dms codec=%s talk=%.1fs %s greeting_heard=%s (%d ms) hung_up_by=%s",
		r.Status, r.Reason, r.Setup.Milliseconds(), r.Codec, r.Talk.Seconds(), r.Stats, heard, r.GreetingMs, r.HungUpBy)
}

// Err says why the call failed: not answered, or no greeting heard.
func (r CallResult) Err() error {
	switch {
	case r.Status < 200 || r.Status > 299:
		return fmt.Errorf("devua: call not answered: %d %s", r.Status, r.Reason)
	case r.PacketsIn == 0:
		return errors.New("devua: no audio came back")
	case !r.GreetingHeard && !r.noGreeting:
		return errors.New("devua: no greeting heard")
	}
	return nil
}

// Call places one call through the gateway and measures it. The error is
// for calls that could not be placed at all; a placed call's outcome is
// in the result (see CallResult.Err).
func Call(ctx context.Context, cfg CallConfig) (CallResult, error) {
	res := CallResult{noGreeting: cfg.NoGreeting}
	if cfg.From == "" {
		cfg.From = "+15550100000"
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	if cfg.AnswerTimeout <= 0 {
		cfg.AnswerTimeout = 15 * time.Second
	}
	if cfg.GreetingWait <= 0 {
		cfg.GreetingWait = 10 * time.Second
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1"
	}
	if len(cfg.Codecs) == 0 {
		cfg.Codecs = []Codec{PCMU, PCMA}
	}
	gw, err := netip.ParseAddrPort(cfg.Gateway)
	if err != nil {
		return res, fmt.Errorf("devua: gateway %q: want IP:port: %w", cfg.Gateway, err)
	}
	u, err := newSIPUA(net.JoinHostPort(cfg.Listen, "0"), "caller")
	if err != nil {
		return res, err
	}
	defer u.close()
	dcc := sipgo.NewDialogClientCache(u.cli, u.contact("caller"))
	u.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := dcc.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	u.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	if err := u.serve(); err != nil {
		return res, err
	}
	conn, err := listenRTP(cfg.Listen)
	if err != nil {
		return res, err
	}
	defer conn.Close()

	var rec *WAVWriter
	if cfg.Record != "" {
		if rec, err = CreateWAV(cfg.Record); err != nil {
			return res, err
		}
	}
	det := &Detector{ToneHz: cfg.ToneHz}
	var mu sync.Mutex
	listening := !cfg.NoGreeting
	play := cfg.Play
	silence := make([]int16, FrameSamples)
	st := &stream{conn: conn, digits: make(chan byte, len(cfg.DTMF))}
	if cfg.NoGreeting {
		for i := 0; i < len(cfg.DTMF); i++ {
			st.digits <- cfg.DTMF[i]
		}
	}
	st.onAudio = func(pcm []int16) {
		if rec != nil {
			_ = rec.Write(pcm)
		}
		mu.Lock()
		if listening {
			det.Write(pcm)
		}
		mu.Unlock()
	}
	var answered time.Time
	st.next = func() []int16 {
		mu.Lock()
		defer mu.Unlock()
		if listening && (det.Heard() && det.Quiet() >= greetingEndFrames || time.Since(answered) > cfg.GreetingWait) {
			listening = false
			for i := 0; i < len(cfg.DTMF); i++ {
				st.digits <- cfg.DTMF[i]
			}
		}
		if listening || len(play) == 0 {
			return silence
		}
		f := play[:min(FrameSamples, len(play))]
		play = play[len(f):]
		return f
	}
	if rec != nil {
		defer rec.Close() // after the stream's loops ended (st.close)
	}

	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: cfg.From, Host: u.contact("").Address.Host}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	sessID := rand.Uint64() >> 1
	offer := buildSDP(conn.LocalAddr().(*net.UDPAddr), sessID, 0, cfg.Codecs, telephoneEvent, "sendrecv")
	target := sip.Uri{Scheme: "sip", User: cfg.To, Host: gw.Addr().String(), Port: int(gw.Port())}
	actx, cancel := context.WithTimeout(ctx, cfg.AnswerTimeout)
	defer cancel()
	start := time.Now()
	ds, err := dcc.Invite(actx, target, offer, sip.NewHeader("Content-Type", "application/sdp"), from)
	if err != nil {
		return res, fmt.Errorf("devua: INVITE to %s: %w", cfg.Gateway, err)
	}
	defer ds.Close()
	err = ds.WaitAnswer(actx, sipgo.AnswerOptions{Username: cfg.Username, Password: cfg.Password})
	res.Setup = time.Since(start)
	if err != nil {
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			res.Status, res.Reason = de.Res.StatusCode, de.Res.Reason
			return res, nil
		}
		return res, fmt.Errorf("devua: waiting for the answer: %w", err)
	}
	res.Status, res.Reason = ds.InviteResponse.StatusCode, ds.InviteResponse.Reason
	if err := ds.Ack(ctx); err != nil {
		return res, fmt.Errorf("devua: ACK: %w", err)
	}
	rm, err := parseSDP(ds.InviteResponse.Body())
	if err != nil {
		bctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		_ = ds.Bye(bctx)
		c()
		return res, fmt.Errorf("devua: answer: %w", err)
	}
	res.Codec = rm.codecs[0].Name
	res.LocalMedia, res.PeerMedia = conn.LocalAddr().String(), rm.addr.String()
	answered = time.Now()
	st.configure(rm.addr, rm.codecs[0], rm.eventPT, rm.hold())
	st.start()
	res.HungUpBy = "caller"
	res.HeldPacketsIn = -1
	hangup := time.NewTimer(cfg.Duration)
	defer hangup.Stop()
	var holdC <-chan time.Time
	resumedAt := -1
	if cfg.HoldAfter > 0 {
		holdC = time.After(cfg.HoldAfter)
	}
wait:
	for {
		select {
		case <-ds.Context().Done():
			res.HungUpBy = "agent"
			break wait
		case <-ctx.Done():
			break wait
		case <-hangup.C:
			break wait
		case <-holdC:
			holdC = nil
			held, err := hold(ctx, ds, st, conn, sessID, cfg)
			if err != nil {
				res.HungUpBy = "caller (" + err.Error() + ")"
				break wait
			}
			res.HeldPacketsIn = held
			resumedAt = st.stats().PacketsIn
		}
	}
	res.Talk = time.Since(answered)
	st.close()
	if res.HungUpBy == "caller" {
		bctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		if err := ds.Bye(bctx); err != nil {
			res.HungUpBy = "caller (BYE failed: " + err.Error() + ")"
		}
		c()
	}
	res.Stats = st.stats()
	if resumedAt >= 0 {
		res.ResumedPacketsIn = res.PacketsIn - resumedAt
	}
	res.GreetingHeard = det.Heard()
	res.GreetingMs = det.Frames() * 20
	return res, nil
}

// hold sends re-INVITE a=sendonly, waits cfg.HoldFor, and resumes with
// re-INVITE a=sendrecv; it returns the packets received while held.
func hold(ctx context.Context, ds *sipgo.DialogClientSession, st *stream, conn *net.UDPConn, sessID uint64, cfg CallConfig) (int, error) {
	holdFor := cfg.HoldFor
	if holdFor <= 0 {
		holdFor = time.Second
	}
	local := conn.LocalAddr().(*net.UDPAddr)
	if err := reInvite(ctx, ds, buildSDP(local, sessID, 1, cfg.Codecs[:1], telephoneEvent, "sendonly")); err != nil {
		return 0, fmt.Errorf("hold: %w", err)
	}
	if !waitCtx(ctx, 300*time.Millisecond) { // packets already in flight, on a loaded machine
		return 0, ctx.Err()
	}
	before := st.stats().PacketsIn
	if !waitCtx(ctx, holdFor) {
		return 0, ctx.Err()
	}
	held := st.stats().PacketsIn - before
	if err := reInvite(ctx, ds, buildSDP(local, sessID, 2, cfg.Codecs[:1], telephoneEvent, "sendrecv")); err != nil {
		return held, fmt.Errorf("resume: %w", err)
	}
	return held, nil
}

// reInvite sends an in-dialog INVITE with sdp and ACKs its 2xx.
func reInvite(ctx context.Context, ds *sipgo.DialogClientSession, sdp []byte) error {
	target := ds.InviteRequest.Recipient
	if c := ds.InviteResponse.Contact(); c != nil {
		target = c.Address
	}
	req := sip.NewRequest(sip.INVITE, *target.Clone())
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(sdp)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := ds.Do(rctx, req)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return fmt.Errorf("re-INVITE answered %d %s", res.StatusCode, res.Reason)
	}
	ack := sip.NewRequest(sip.ACK, *target.Clone())
	return ds.WriteRequest(ack)
}
