package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/devua"
	"github.com/callgate/callgate/internal/testwait"
)

// baresipConfig is a headless baresip 1.0 (Debian): a 48 kHz stereo sine
// as the microphone (ausine accepts nothing else), no sound card (the
// aubridge player), and what it hears dumped to WAV files in snd (sndfile).
const baresipConfig = `poll_method		epoll
sip_listen		127.0.0.1:0
net_interface		127.0.0.1
audio_player		aubridge,demo
audio_source		ausine,1000
audio_alert		aubridge,demo
ausrc_srate		48000
auplay_srate		48000
ausrc_channels		2
auplay_channels		2
module_path		/usr/lib/baresip/modules
module			stdio.so
module			g711.so
module			ausine.so
module			aubridge.so
module			sndfile.so
module_app		account.so
module_app		menu.so
snd_path		%s
`

// TestBaresipCallsDemoAgentThroughCallgate: baresip (a real softphone)
// calls a number assigned to the demo agent through callgate; the agent
// answers, both sides send RTP, and what baresip heard holds the
// agent's greeting tone.
func TestBaresipCallsDemoAgentThroughCallgate(t *testing.T) {
	needBinary(t, baresipBin, "baresip-core")
	n, _ := startNode(t, testConfig(t))
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	a, num := demoAgentNumber(t, c, "demo-bs", "relay", "228", devua.AgentConfig{ToneHz: 440})
	waitRouted(t, n, num, "demo-bs")

	dir := t.TempDir()
	snd := filepath.Join(dir, "snd")
	if err := os.MkdirAll(snd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(fmt.Sprintf(baresipConfig, snd)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte("<sip:+15551230000@127.0.0.1>;regint=0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	gw := n.SIP().UDPAddr()
	// -t 5: baresip hangs up and quits after 5 s.
	cmd := exec.CommandContext(ctx, baresipBin, "-f", dir, "-e", fmt.Sprintf("/dial sip:%s@%s", num, gw), "-t", "5")
	cmd.Stdin = nil
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill() // by its PID
			_ = cmd.Wait()
		}
	})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("baresip: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Call established") {
		t.Fatalf("baresip did not establish the call:\n%s", out.String())
	}
	var r devua.CallReport
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if reps := a.Reports(); len(reps) > 0 {
			r = reps[0]
			return nil
		}
		return fmt.Errorf("no call report from the demo agent yet")
	})
	t.Logf("agent: %s", r)
	if r.From != "+15551230000" || r.To != num || r.PacketsIn < 100 || r.PacketsOut < 100 || r.End != "bye" {
		t.Fatalf("agent report %s: want from baresip's number, >= 100 packets each way, ended by baresip's BYE", r)
	}
	// What baresip decoded (sndfile's -dec.wav, 8 kHz after G.711).
	files, _ := filepath.Glob(filepath.Join(snd, "*-dec.wav"))
	if len(files) != 1 {
		t.Fatalf("baresip's dumps: %v", files)
	}
	heard := readWAVFile(t, files[0])
	if d := feedDetector(devua.Detector{ToneHz: 440}, heard); !d.Heard() {
		t.Fatalf("baresip did not hear the 440 Hz greeting (%d frames of %d samples)", d.Frames(), len(heard))
	}
}
