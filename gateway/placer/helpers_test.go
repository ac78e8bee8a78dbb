package placer

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

const ws = "acme"

// events records published call events.
type events struct {
	mu sync.Mutex
	ev []calls.Event
	// slowStarted is how long publishing a started event takes (a
	// loaded node): an event of the call published meanwhile would be
	// recorded before it.
	slowStarted time.Duration
}

func (e *events) Publish(ev calls.Event) {
	if ev.Kind == calls.Started {
		time.Sleep(e.slowStarted)
	}
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
}

func (e *events) kinds(callID string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, x := range e.ev {
		if x.CallID == callID {
			out = append(out, x.Kind)
		}
	}
	return out
}

func (e *events) last(callID string) calls.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out calls.Event
	for _, x := range e.ev {
		if x.CallID == callID {
			out = x
		}
	}
	return out
}

// meter records the UsageMeter calls at the interface boundary (the real
// meter is h-limits'); refuse makes Authorize fail.
type meter struct {
	mu       sync.Mutex
	refuse   bool
	answered map[string]string // call id → workspace
	ended    map[string]int
}

func (m *meter) Authorize(w, dest string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refuse {
		return fmt.Errorf("balance 0 credits")
	}
	return nil
}

func (m *meter) Answered(id, w, dest string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.answered == nil {
		m.answered = map[string]string{}
	}
	m.answered[id] = w
}

func (m *meter) Ended(id string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended == nil {
		m.ended = map[string]int{}
	}
	m.ended[id]++
}

func (m *meter) state(id string) (answered bool, ended int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, answered = m.answered[id]
	return answered, m.ended[id]
}

// limiter counts admitted outbound calls; max 0: no cap.
type limiter struct {
	mu     sync.Mutex
	max    int
	active int
	caps   calls.LimitCaps
}

func (l *limiter) Admit(w, dir string, c calls.LimitCaps) (string, time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.caps = c
	if l.max > 0 && l.active >= l.max {
		return "outbound.max_concurrent_calls", 2 * time.Second, false
	}
	l.active++
	return "", 0, true
}

func (l *limiter) Release(w, dir string) {
	l.mu.Lock()
	l.active--
	l.mu.Unlock()
}

func (l *limiter) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

// table builds a routing table: acme owns +12125550100 (carrier given) and
// a suspended +12125550101; globex owns +12125550199; agent "bot" of acme
// answers at ep.
func table(carrier, integrationID, ep string, its ...routing.Integration) *routing.Table {
	b := routing.NewBuilder()
	b.AddNumber(routing.Number{E164: "+12125550100", Workspace: ws, Carrier: carrier, Status: routing.StatusActive, AgentID: "bot", IntegrationID: integrationID})
	b.AddNumber(routing.Number{E164: "+12125550101", Workspace: ws, Carrier: carrier, Status: routing.StatusSuspended, IntegrationID: integrationID})
	b.AddNumber(routing.Number{E164: "+12125550199", Workspace: "globex", Carrier: carrier, Status: routing.StatusActive, AgentID: "bot"})
	b.AddForward(routing.Forward{Workspace: ws, BusinessNumber: "+13125550123", GatewayNumber: "+12125550100"})
	b.AddAgent(routing.Agent{ID: "bot", Workspace: ws, Endpoints: []routing.Endpoint{{Region: "local", URI: ep}}})
	b.AddAgent(routing.Agent{ID: "mute", Workspace: ws})
	b.AddAgent(routing.Agent{ID: "bot", Workspace: "globex", Endpoints: []routing.Endpoint{{Region: "local", URI: ep}}})
	b.AddWorkspace(routing.Workspace{ID: ws, Outbound: routing.Outbound{AllowedCountries: []string{"US", "GB"}, MaxConcurrentCalls: 3}})
	for _, it := range its {
		b.AddIntegration(it)
	}
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

// --- SIP peers ---

const sippBin = "/usr/bin/sipp"

func needSIPp(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(sippBin); err != nil {
		t.Skip("sipp not installed (Debian sip-tester)")
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// sipp runs one SIPp UAS call of scenario on port, bounded by timeout(1);
// done receives its exit error and output.
func sipp(t *testing.T, scenario string, port int) <-chan string {
	t.Helper()
	cmd := exec.Command("timeout", "30", sippBin, "-sf", "testdata/sipp/"+scenario, "-i", "127.0.0.1",
		"-p", strconv.Itoa(port), "-m", "1", "-nostdin", "-aa", "-trace_err", "-error_file", t.TempDir()+"/err.log")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(exited)
		if err != nil {
			done <- fmt.Sprintf("sipp %s: %v\n%s", scenario, err, tail(out.String()))
			return
		}
		done <- ""
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // timeout(1) and SIPp
			<-exited
		}
	})
	return done
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

// agent is a sipgo UAS playing the voice agent: it answers an INVITE with
// an SDP answer ("s=agent-answer") and records what it got.
type agent struct {
	uri   string
	mu    sync.Mutex
	offer string
	hdrs  map[string]string
	acked bool
	byes  int
	dlg   *sipgo.DialogServerSession
	cache *sipgo.DialogServerCache
	code  int // answer with this status instead of 200 (180: ring until CANCELled)
	// cancelled is set when a ringing INVITE's transaction ended.
	cancelled bool
}

func startAgent(t *testing.T, code int) *agent {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ua, _ := sipgo.NewUA(sipgo.WithUserAgent("agent"), sipgo.WithUserAgentHostname("127.0.0.1"))
	srv, _ := sipgo.NewServer(ua)
	cli, _ := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	a := &agent{uri: "sip:bot@127.0.0.1:" + strconv.Itoa(port), code: code, hdrs: map[string]string{}}
	a.cache = sipgo.NewDialogServerCache(cli, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "bot", Host: "127.0.0.1", Port: port}})
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		d, err := a.cache.ReadInvite(req, tx)
		if err != nil {
			return
		}
		a.mu.Lock()
		a.offer = string(req.Body())
		for _, h := range req.Headers() {
			if strings.HasPrefix(strings.ToLower(h.Name()), "x-callgate") {
				a.hdrs[strings.ToLower(h.Name())] = h.Value()
			}
		}
		a.dlg = d
		a.mu.Unlock()
		if a.code == 180 { // ring until CANCELled
			tx.OnCancel(func(*sip.Request) {
				a.mu.Lock()
				a.cancelled = true
				a.mu.Unlock()
			})
			_ = d.Respond(180, "Ringing", nil)
			<-tx.Done()
			return
		}
		if a.code != 0 {
			_ = d.Respond(a.code, "Nope", nil)
			return
		}
		answer := "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=agent-answer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
		_ = d.RespondSDP([]byte(answer))
		<-tx.Done()
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = a.cache.ReadAck(req, tx)
		a.mu.Lock()
		a.acked = true
		a.mu.Unlock()
	})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = a.cache.ReadBye(req, tx)
		a.mu.Lock()
		a.byes++
		a.mu.Unlock()
	})
	go func() { _ = srv.ServeUDP(pc) }()
	t.Cleanup(func() { _ = ua.Close(); pc.Close() })
	return a
}

func (a *agent) snapshot() (offer string, acked bool, byes int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.offer, a.acked, a.byes
}

func (a *agent) hangup(ctx context.Context) error {
	a.mu.Lock()
	d := a.dlg
	a.mu.Unlock()
	if d == nil {
		return fmt.Errorf("no dialog")
	}
	return d.Bye(ctx)
}
