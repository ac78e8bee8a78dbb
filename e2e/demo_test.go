package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/callgate/callgate/devua"
	"github.com/callgate/callgate/internal/testwait"
)

// demoAgentNumber starts the demo agent, registers it as agent id with
// media mode, assigns it a sandbox number of the demo workspace and
// waits until the node routes the number to it.
func demoAgentNumber(t *testing.T, c apiClient, id, media, area string, cfg devua.AgentConfig) (*devua.Agent, string) {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.Out = os.Stderr
	a, err := devua.StartAgent(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	c.must(201, "POST", "/v1/agents", fmt.Sprintf(`{"id":%q,"name":"demo","endpoints":[{"region":"local","uri":%q}],"media":%q}`, id, a.URI(), media))
	return a, routeNumber(t, c, area, id, "local", a.URI())
}

// TestDemoAgentThroughCallgate: the demo caller (as a carrier) calls a
// number assigned to the demo agent through a real node, with media
// direct and relayed; the caller hears the agent's greeting tone in what
// came back, its own audio is echoed, its RFC 4733 digits arrive, and the
// agent saw callgate's X-Callgate-* headers.
func TestDemoAgentThroughCallgate(t *testing.T) {
	n, _ := startNode(t, testConfig(t))
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	for i, media := range []string{"direct", "relay"} {
		t.Run(media, func(t *testing.T) {
			a, num := demoAgentNumber(t, c, "demo-"+media, media, fmt.Sprint(228+i), devua.AgentConfig{ToneHz: 440})
			waitRouted(t, n, num, "demo-"+media)
			rec := filepath.Join(t.TempDir(), "back.wav")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			res, err := devua.Call(ctx, devua.CallConfig{
				Gateway: n.SIP().UDPAddr().String(), To: num, From: "+15551230000",
				ToneHz: 440, Duration: 5 * time.Second, Record: rec,
				Play: devua.Tone(1000, 0.8), // played after the 1.5 s greeting
				DTMF: "5#",
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("caller: %s", res)
			if err := res.Err(); err != nil {
				t.Fatal(err)
			}
			if res.PacketsIn < 100 || res.PacketsOut < 100 {
				t.Fatalf("want >= 100 RTP packets each way: %s", res)
			}
			back := readWAVFile(t, rec)
			if d := feedDetector(devua.Detector{ToneHz: 440}, back); !d.Heard() {
				t.Errorf("recording: no 440 Hz greeting (%d frames)", d.Frames())
			}
			if d := feedDetector(devua.Detector{ToneHz: 1000}, back); !d.Heard() {
				t.Errorf("recording: the caller's 1 kHz was not echoed (%d frames)", d.Frames())
			}
			var r devua.CallReport
			testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				if reps := a.Reports(); len(reps) > 0 {
					r = reps[0]
					return nil
				}
				return fmt.Errorf("agent has no call report yet")
			})
			t.Logf("agent: %s", r)
			if r.To != num || r.From != "+15551230000" || r.End != "bye" || len(r.Headers) == 0 || r.DTMF != "5#" {
				t.Errorf("agent report %s: want to=%s, from=+15551230000, end=bye, X-Callgate-* headers, dtmf 5#", r, num)
			}
			// Direct: each side sends to the other's own address; relay:
			// both send to the node's relay sockets.
			if direct := r.PeerMedia == res.LocalMedia; direct != (media == "direct") {
				t.Errorf("media %s: agent was offered %s, caller's RTP is at %s", media, r.PeerMedia, res.LocalMedia)
			}
		})
	}
}

// TestDemoCallerDigestTrunk: through a trunk that requires digest
// authentication, the demo caller without credentials is refused (407)
// and with them is answered and hears the greeting.
func TestDemoCallerDigestTrunk(t *testing.T) {
	cfg := testConfig(t)
	cfg.SIP.Trunks[0].Username, cfg.SIP.Trunks[0].Password = "pbx", "s3cret-demo"
	n, _ := startNode(t, cfg)
	c := apiClient{t: t, base: n.HTTPAddr(), key: n.APIKey()}
	_, num := demoAgentNumber(t, c, "demo-digest", "direct", "228", devua.AgentConfig{ToneHz: 440})
	waitRouted(t, n, num, "demo-digest")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := devua.CallConfig{Gateway: n.SIP().UDPAddr().String(), To: num, ToneHz: 440, Duration: 2 * time.Second}
	for _, tc := range []struct {
		user, pass string
		status     int
	}{
		{"", "", 407},
		{"pbx", "wrong", 407},
		{"pbx", "s3cret-demo", 200},
	} {
		cc := base
		cc.Username, cc.Password = tc.user, tc.pass
		res, err := devua.Call(ctx, cc)
		if err != nil {
			t.Fatalf("user %q: %v", tc.user, err)
		}
		if res.Status != tc.status {
			t.Fatalf("user %q password %q: %s, want %d", tc.user, tc.pass, res, tc.status)
		}
		if tc.status == 200 && res.Err() != nil {
			t.Fatalf("authenticated call: %v (%s)", res.Err(), res)
		}
	}
}

func readWAVFile(t *testing.T, path string) []int16 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pcm, err := devua.ReadWAV(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pcm
}

func feedDetector(d devua.Detector, pcm []int16) *devua.Detector {
	d.Write(pcm)
	return &d
}
