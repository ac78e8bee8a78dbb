package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/callgate/callgate/devua"
	"github.com/callgate/callgate/phone"
)

// devAgent runs `callgate dev agent`: the demo voice agent (devua).
func devAgent(args []string) error {
	fs := flag.NewFlagSet("dev agent", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:5090", "SIP (UDP) listen address; RTP uses the same IP")
	tone := fs.Float64("tone", 0, "greet with a 1.5 s tone of this frequency (Hz) instead of the recorded voice")
	record := fs.String("record", "", "directory: record what each caller says to <call-id>.wav")
	ring := fs.Duration("ring", 200*time.Millisecond, "how long to ring (180) before answering")
	maxDur := fs.Duration("max-duration", 10*time.Minute, "hang up calls that last longer")
	maxCalls := fs.Int("max-calls", 100, "calls ringing or in progress at once; more get 486 Busy Here")
	callTo := fs.String("call", "", "place one call out to this number through callgate's agent side instead of answering")
	callFrom := fs.String("from", "", "with --call: the calling number (one of the workspace's numbers)")
	via := fs.String("via", "127.0.0.1:5070", "with --call: callgate's agent-side SIP address (sip.agents.addr)")
	username := fs.String("username", "", "with --call: the agent's SIP user name (POST /v1/agents/{id}/sip-credentials); password from env CALLGATE_DEV_PASSWORD")
	duration := fs.Duration("duration", 10*time.Second, "with --call: hang up this long after the answer")
	if err := fs.Parse(args); err != nil {
		return usageErrorf("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErrorf("dev agent takes no arguments (got %q)", fs.Arg(0))
	}
	if *tone < 0 || *tone >= devua.SampleRate/2 {
		return usageErrorf("--tone: %v Hz: must be between 1 and %d", *tone, devua.SampleRate/2-1)
	}
	if *callTo != "" {
		return devAgentCall(*callTo, *callFrom, *via, *username, *tone, *duration)
	}
	a, err := devua.StartAgent(devua.AgentConfig{Listen: *listen, ToneHz: *tone, RecordDir: *record, Ring: *ring, MaxDuration: *maxDur, MaxCalls: *maxCalls, Out: os.Stdout})
	if err != nil {
		return err
	}
	defer a.Close()
	fmt.Printf("Demo agent on %s (Ctrl-C to stop). Give callgate this endpoint:\n  callgate agents create demo --endpoint 'local=%s'\n", a.Addr(), a.URI())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return nil
}

// devCall runs `callgate dev call NUMBER`: one test call as a carrier
// would place it; exit status 1 when it was not answered or no greeting
// was heard.
func devCall(args []string) error {
	fs := flag.NewFlagSet("dev call", flag.ContinueOnError)
	gateway := fs.String("gateway", "127.0.0.1:5060", "callgate's SIP address (UDP)")
	from := fs.String("from", "+15550100000", "calling number")
	duration := fs.Duration("duration", 5*time.Second, "hang up this long after the answer")
	play := fs.String("play", "", "WAV file (8 kHz mono, 16-bit PCM or G.711) to send after the greeting")
	record := fs.String("record", "", "WAV file to record what comes back")
	tone := fs.Float64("tone", 0, "expect a greeting tone of this frequency (Hz; default: any speech-band sound)")
	codec := fs.String("codec", "pcmu", "preferred codec: pcmu or pcma")
	dtmf := fs.String("dtmf", "", "digits to send as RFC 4733 events after the greeting (0-9 * # A-D)")
	username := fs.String("username", "", "digest user name, when the gateway challenges (401/407); password from env CALLGATE_DEV_PASSWORD")
	holdAfter := fs.Duration("hold-after", 0, "put the call on hold (re-INVITE sendonly) this long after the answer, for 1 s")
	// Flags may follow the number.
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return usageErrorf("%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	if len(pos) != 1 {
		return usageErrorf("usage: callgate dev call NUMBER [--gateway 127.0.0.1:5060] [--play FILE] [--record FILE] [--duration 5s]")
	}
	to, ok := phone.Parse(pos[0], "US")
	if !ok {
		return usageErrorf("NUMBER %q: not a phone number (E.164, e.g. +12285340406)", pos[0])
	}
	fromN, ok := phone.Parse(*from, "US")
	if !ok {
		return usageErrorf("--from %q: not a phone number (E.164, e.g. +15550100000)", *from)
	}
	cfg := devua.CallConfig{Gateway: *gateway, To: to, From: fromN, Duration: *duration, Record: *record, ToneHz: *tone, HoldAfter: *holdAfter}
	if strings.Trim(*dtmf, "0123456789*#ABCD") != "" || len(*dtmf) > 32 {
		return usageErrorf("--dtmf %q: up to 32 of 0-9 * # A-D", *dtmf)
	}
	cfg.DTMF = *dtmf
	if *username != "" {
		cfg.Username, cfg.Password = *username, os.Getenv("CALLGATE_DEV_PASSWORD")
	}
	switch strings.ToLower(*codec) {
	case "pcmu":
		cfg.Codecs = []devua.Codec{devua.PCMU, devua.PCMA}
	case "pcma":
		cfg.Codecs = []devua.Codec{devua.PCMA, devua.PCMU}
	default:
		return usageErrorf("--codec %q: want pcmu or pcma", *codec)
	}
	if *play != "" {
		f, err := os.Open(*play)
		if err != nil {
			return usageErrorf("--play: %v", err)
		}
		cfg.Play, err = devua.ReadWAV(f)
		f.Close()
		if err != nil {
			return usageErrorf("--play %s: %v", *play, err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := devua.Call(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("call to=%s from=%s %s\n", to, fromN, res)
	if err := res.Err(); err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "devua: "))
	}
	return nil
}

// devAgentCall is `callgate dev agent --call NUMBER --from NUMBER`: the
// agent places one call out through callgate's agent side (digest
// credentials issued per agent), plays its greeting to the callee and
// prints the call's figures.
func devAgentCall(to, from, via, username string, tone float64, duration time.Duration) error {
	toN, ok := phone.Parse(to, "US")
	if !ok {
		return usageErrorf("--call %q: not a phone number (E.164, e.g. +442071838750)", to)
	}
	fromN, ok := phone.Parse(from, "US")
	if !ok {
		return usageErrorf("--from %q: with --call, one of the workspace's numbers (E.164)", from)
	}
	cfg := devua.CallConfig{Gateway: via, To: toN, From: fromN, Duration: duration, NoGreeting: true,
		Username: username, Password: os.Getenv("CALLGATE_DEV_PASSWORD")}
	if tone > 0 {
		cfg.Play = devua.Tone(tone, 1.5)
	} else {
		g, err := devua.Greeting()
		if err != nil {
			return err
		}
		cfg.Play = g
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := devua.Call(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("call out to=%s from=%s %s\n", toN, fromN, res)
	if res.Status < 200 || res.Status > 299 {
		return fmt.Errorf("call not answered: %d %s", res.Status, res.Reason)
	}
	return nil
}
