package devua

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// lockedBuffer collects the agent's call lines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startAgent(t *testing.T, cfg AgentConfig) (*Agent, *lockedBuffer) {
	t.Helper()
	out := &lockedBuffer{}
	cfg.Listen = "127.0.0.1:0"
	cfg.Out = out
	a, err := StartAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a, out
}

func call(t *testing.T, cfg CallConfig) CallResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Call(ctx, cfg)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	t.Logf("caller: %s", res)
	return res
}

// The caller hears the agent's tone greeting, the agent gets the caller's
// RFC 4733 digits, records what the caller played and echoes it, and
// both print their figures.
func TestAgentAnswersWithToneGreeting(t *testing.T) {
	dir := t.TempDir()
	a, out := startAgent(t, AgentConfig{ToneHz: 440, RecordDir: dir})
	rec := filepath.Join(t.TempDir(), "caller.wav")
	res := call(t, CallConfig{Gateway: a.Addr().String(), To: "+12285340406", From: "+15551230000",
		ToneHz: 440, Duration: 5 * time.Second, Record: rec,
		Play:   Tone(1000, 0.8), // after the 1.5 s greeting, 0.8 s of quiet and the digits (0.7 s)
		DTMF:   "12#",
		Codecs: []Codec{PCMA, PCMU}})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Status != 200 || res.Codec != "PCMA" || res.PacketsIn < 100 || res.PacketsOut < 100 || res.Lost != 0 {
		t.Fatalf("caller result %s: want 200, PCMA, >= 100 packets each way, no loss", res)
	}
	// The report is kept, then its line printed: wait for both.
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if len(a.Reports()) == 0 || !strings.Contains(out.String(), "rtp_in=") {
			return os.ErrNotExist
		}
		return nil
	})
	r := a.Reports()[0]
	if r.From != "+15551230000" || r.To != "+12285340406" || r.End != "bye" || r.Codec != "PCMA" || r.PacketsIn < 100 || r.PacketsOut < 100 || r.DTMF != "12#" || r.Lost != 0 {
		t.Fatalf("agent report %s", r)
	}
	if line := out.String(); !strings.Contains(line, "from=+15551230000 to=+12285340406") || !strings.Contains(line, "rtp_in=") {
		t.Fatalf("agent line %q", line)
	}
	// What came back: the greeting tone, then the caller's 1 kHz echoed.
	back := readWAV(t, rec)
	if d := feed(&Detector{ToneHz: 440}, back); !d.Heard() {
		t.Errorf("caller's recording: no 440 Hz greeting (%d frames)", d.Frames())
	}
	if d := feed(&Detector{ToneHz: 1000}, back); !d.Heard() {
		t.Errorf("caller's recording: its own 1 kHz not echoed (%d frames)", d.Frames())
	}
	// The agent's recording holds the caller's 1 kHz.
	files, _ := filepath.Glob(filepath.Join(dir, "*.wav"))
	if len(files) != 1 {
		t.Fatalf("agent recordings: %v", files)
	}
	if d := feed(&Detector{ToneHz: 1000}, readWAV(t, files[0])); !d.Heard() {
		t.Errorf("agent's recording: no 1 kHz from the caller (%d frames)", d.Frames())
	}
}

func readWAV(t *testing.T, path string) []int16 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcm, err := ReadWAV(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pcm
}

// The recorded voice greeting is found by the speech-band check.
func TestAgentVoiceGreetingHeard(t *testing.T) {
	a, _ := startAgent(t, AgentConfig{})
	res := call(t, CallConfig{Gateway: a.Addr().String(), To: "+12285340406", Duration: 2 * time.Second})
	if err := res.Err(); err != nil || res.Codec != "PCMU" {
		t.Fatalf("%v (%s)", err, res)
	}
}

// A greeting at another frequency is not taken for the expected one.
func TestCallerWrongToneNotHeard(t *testing.T) {
	a, _ := startAgent(t, AgentConfig{ToneHz: 1000})
	res := call(t, CallConfig{Gateway: a.Addr().String(), To: "+12285340406", ToneHz: 440, Duration: 2 * time.Second})
	if res.Status != 200 || res.PacketsIn == 0 {
		t.Fatalf("want an answered call with audio: %s", res)
	}
	if res.GreetingHeard || res.Err() == nil {
		t.Fatalf("a 1 kHz greeting passed for 440 Hz: %s", res)
	}
}

// With NoGreeting (an agent calling out) the caller plays at once: the
// callee's recording holds the audio from its first second, and the call
// counts as good without a greeting.
func TestCallerNoGreetingPlaysAtOnce(t *testing.T) {
	dir := t.TempDir()
	a, _ := startAgent(t, AgentConfig{ToneHz: 440, RecordDir: dir})
	res := call(t, CallConfig{Gateway: a.Addr().String(), To: "+442071838750", From: "+12285340406",
		NoGreeting: true, Play: Tone(1000, 1), Duration: 1500 * time.Millisecond})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	waitReport(t, a)
	files, _ := filepath.Glob(filepath.Join(dir, "*.wav"))
	if len(files) != 1 {
		t.Fatalf("agent recordings: %v", files)
	}
	got := readWAV(t, files[0])
	if len(got) > SampleRate {
		got = got[:SampleRate]
	}
	if d := feed(&Detector{ToneHz: 1000}, got); !d.Heard() {
		t.Fatalf("the callee's first second holds no 1 kHz (%d frames)", d.Frames())
	}
}
