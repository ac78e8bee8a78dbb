package sip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/routing"
)

func init() {
	// sipgo's UAs in tests log through its default logger: keep it quiet
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// Numbers in the test table.
const (
	numPurchased  = "+12282001234"
	numImported   = "+12282001235"
	numUnassigned = "+12282001236"
	numSuspended  = "+12282001237"
	numBusiness   = "+14155550100" // registered business line forwarding to numPurchased
)

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"

// buildTable returns a routing table whose agent a1 has the given endpoints.
func buildTable(eps ...routing.Endpoint) *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Name: "bot", Endpoints: eps})
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	b.AddNumber(routing.Number{E164: numImported, Workspace: "w", Carrier: "telnyx", Origin: routing.OriginImported,
		Status: routing.StatusActive, AgentID: "a1"})
	b.AddNumber(routing.Number{E164: numUnassigned, Workspace: "w", Carrier: "sandbox", Origin: routing.OriginPurchased,
		Status: routing.StatusActive})
	b.AddNumber(routing.Number{E164: numSuspended, Workspace: "w", Carrier: "sandbox", Origin: routing.OriginPurchased,
		Status: routing.StatusSuspended, AgentID: "a1"})
	b.AddForward(routing.Forward{Workspace: "w", BusinessNumber: numBusiness, GatewayNumber: numPurchased})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

// recorder is a calls.Publisher that keeps events for assertions.
type recorder struct {
	mu     sync.Mutex
	events []calls.Event
}

func (r *recorder) Publish(e calls.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) find(kind, callID string) (calls.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == kind && (callID == "" || e.CallID == callID) {
			return e, true
		}
	}
	return calls.Event{}, false
}

// waitEvent polls for an event.
func (r *recorder) waitEvent(t testing.TB, kind, callID string) calls.Event {
	t.Helper()
	var e calls.Event
	checkFor(t, 5*time.Second, func() error {
		var ok bool
		if e, ok = r.find(kind, callID); !ok {
			return fmt.Errorf("no %s event for %q", kind, callID)
		}
		return nil
	})
	return e
}

// checkFor is testwait.CheckFor polling every 5 ms.
func checkFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	testwait.CheckFor(t, timeout, 5*time.Millisecond, f)
}

type testEdge struct {
	*Server
	events *recorder
	reg    *prometheus.Registry
	table  *routing.Table
}

// runEdge starts a SIP edge on 127.0.0.1:0 with the given config tweaks.
func runEdge(t testing.TB, table *routing.Table, tweak func(*Config), media MediaAnchor) *testEdge {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Region = "test"
	cfg.InviteTimeout = 400 * time.Millisecond
	cfg.Probe.Disabled = true // tests that probe turn it on
	if tweak != nil {
		tweak(&cfg)
	}
	var mediaDep MediaAnchor
	if media != nil {
		mediaDep = media
	}
	return serveEdge(t, cfg, table, slog.New(slog.NewTextHandler(io.Discard, nil)), mediaDep)
}

// serveEdge starts an edge with cfg, serves it until the test ends and
// waits until it is ready.
func serveEdge(t testing.TB, cfg Config, table *routing.Table, log *slog.Logger, media MediaAnchor) *testEdge {
	t.Helper()
	return startEdge(t, cfg, Deps{Table: table, Log: log, Media: media})
}

// startEdge starts an edge with cfg and d (d.Events and d.Registerer are
// the test's: a recorder and a fresh registry; a nil d.Log discards),
// serves it until the test ends and waits until it is ready.
func startEdge(t testing.TB, cfg Config, d Deps) *testEdge {
	t.Helper()
	rec := &recorder{}
	reg := prometheus.NewRegistry()
	d.Events, d.Registerer = rec, reg
	if d.Log == nil {
		d.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	table := d.Table
	s, err := New(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	checkFor(t, 5*time.Second, func() error {
		if !s.Ready() {
			return errors.New("not ready")
		}
		return nil
	})
	return &testEdge{Server: s, events: rec, reg: reg, table: table}
}

// uri of a number at the edge.
func (e *testEdge) uri(user string) sip.Uri {
	return sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1", Port: int(e.UDPAddr().Port())}
}

// testUA is an in-process sipgo user agent (carrier or agent) that
// listens and sends on one UDP socket.
type testUA struct {
	t     testing.TB
	ua    *sipgo.UserAgent
	srv   *sipgo.Server
	cli   *sipgo.Client
	host  string
	port  int
	dcc   *sipgo.DialogClientCache
	dsc   *sipgo.DialogServerCache
	mu    sync.Mutex
	calls []*sip.Request // INVITEs received (clones)

	invites chan *sip.Request
	acks    chan *sip.Request
	byes    chan *sip.Request
	cancels chan *sip.Request
	others  chan *sip.Request

	acceptRefer  atomic.Bool   // REFER: 200 and into others; else 405
	reinvite     atomic.Int32  // status for re-INVITEs; 0: 200 with reinviteSDP (else testSDP)
	reinviteSDP  []byte        // under mu
	reinviteHold chan struct{} // under mu; non-nil: re-INVITEs are answered once it is closed

	// onInvite answers an initial INVITE; nil answers 180 then 200 with SDP.
	onInvite func(u *testUA, req *sip.Request, tx sip.ServerTransaction)
	sessMu   sync.Mutex
	sessions map[string]*sipgo.DialogServerSession
}

func newUA(t testing.TB, host string, onInvite ...func(u *testUA, req *sip.Request, tx sip.ServerTransaction)) *testUA {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0")) // host may be ::1 (dualstack_test.go)
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(host))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(pc.LocalAddr().String()), sipgo.WithClientHostname(host))
	if err != nil {
		t.Fatal(err)
	}
	u := &testUA{t: t, ua: ua, srv: srv, cli: cli, host: host, port: port,
		invites: make(chan *sip.Request, 16), acks: make(chan *sip.Request, 16), byes: make(chan *sip.Request, 16),
		cancels: make(chan *sip.Request, 16), others: make(chan *sip.Request, 16),
		sessions: map[string]*sipgo.DialogServerSession{}}
	if len(onInvite) > 0 {
		u.onInvite = onInvite[0]
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "ua", Host: host, Port: port}}
	u.dcc = sipgo.NewDialogClientCache(cli, contact)
	u.dsc = sipgo.NewDialogServerCache(cli, contact)
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		u.invites <- req.Clone()
		if tag, _ := req.To().Params.Get("tag"); tag != "" { // re-INVITE
			u.mu.Lock()
			hold, body := u.reinviteHold, u.reinviteSDP
			u.mu.Unlock()
			if hold != nil {
				<-hold
			}
			if code := int(u.reinvite.Load()); code != 0 {
				_ = tx.Respond(sip.NewResponseFromRequest(req, code, "Refused", nil))
				return
			}
			if body == nil {
				body = []byte(testSDP)
			}
			res := sip.NewResponseFromRequest(req, 200, "OK", body)
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			_ = tx.Respond(res)
			return
		}
		tx.OnCancel(func(r *sip.Request) { u.cancels <- r.Clone() })
		if u.onInvite != nil {
			u.onInvite(u, req, tx)
			return
		}
		answer(u, req, tx)
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
		u.acks <- req.Clone()
		_ = u.dsc.ReadAck(req, tx)
	})
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		u.byes <- req.Clone()
		if err := u.dsc.ReadBye(req, tx); err != nil {
			if err := u.dcc.ReadBye(req, tx); err != nil {
				_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			}
		}
	})
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	for _, m := range []sip.RequestMethod{sip.UPDATE, sip.INFO} {
		srv.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			u.others <- req.Clone()
			_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
		})
	}
	srv.OnRequest(sip.REFER, func(req *sip.Request, tx sip.ServerTransaction) {
		if !u.acceptRefer.Load() { // as sipgo answers a method without a handler
			_ = tx.Respond(sip.NewResponseFromRequest(req, 405, "Method Not Allowed", nil))
			return
		}
		u.others <- req.Clone()
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go func() { _ = srv.ServeUDP(pc) }()
	checkFor(t, 2*time.Second, func() error {
		c, err := ua.TransportLayer().GetConnection("udp", pc.LocalAddr().String())
		if err != nil || c == nil {
			return errors.New("UA listener not ready")
		}
		return nil
	})
	t.Cleanup(func() {
		ua.Close()
		pc.Close()
	})
	return u
}

// answer is the default agent: 180, then 200 with SDP.
func answer(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
	ds, err := u.dsc.ReadInvite(req, tx)
	if err != nil {
		return
	}
	u.sessMu.Lock()
	u.sessions[req.CallID().Value()] = ds
	u.sessMu.Unlock()
	_ = ds.Respond(180, "Ringing", nil)
	_ = ds.RespondSDP([]byte(testSDP))
}

// ringForever answers 180 and waits for CANCEL.
func ringForever(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
	_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
	select {
	case <-tx.Done():
	case <-time.After(10 * time.Second):
	}
}

// reject answers with a fixed final status.
func reject(code int) func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
	return func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, "Rejected", nil))
	}
}

func (u *testUA) endpoint(region string) routing.Endpoint {
	return routing.Endpoint{Region: region, URI: fmt.Sprintf("sip:bot@%s:%d", u.host, u.port)}
}

func (u *testUA) session(callID string) *sipgo.DialogServerSession {
	u.sessMu.Lock()
	defer u.sessMu.Unlock()
	return u.sessions[callID]
}

func recv(t testing.TB, ch chan *sip.Request, what string) *sip.Request {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s received", what)
		return nil
	}
}

// call places a call from carrier c to user at the edge and waits for the answer.
func (u *testUA) call(ctx context.Context, e *testEdge, user string, hdrs ...sip.Header) (*sipgo.DialogClientSession, []int, error) {
	hdrs = append(hdrs, sip.NewHeader("Content-Type", "application/sdp"))
	ds, err := u.dcc.Invite(ctx, e.uri(user), []byte(testSDP), hdrs...)
	if err != nil {
		return nil, nil, err
	}
	var mu sync.Mutex
	var codes []int
	err = ds.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		mu.Lock()
		codes = append(codes, res.StatusCode)
		mu.Unlock()
		return nil
	}})
	mu.Lock()
	defer mu.Unlock()
	return ds, append([]int(nil), codes...), err
}

// answered calls the purchased number through e, ACKs the answer and
// returns the dialog; the test fails if the call is not answered.
func (u *testUA) answered(ctx context.Context, t testing.TB, e *testEdge) *sipgo.DialogClientSession {
	t.Helper()
	ds, _, err := u.call(ctx, e, numPurchased)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	_ = ds.Ack(ctx)
	return ds
}

// waitBound waits until another process (SIPp) has bound port on
// 127.0.0.1 for network ("udp" or "tcp").
func waitBound(t testing.TB, network string, port int) {
	t.Helper()
	waitBoundProc(t, network, port)
}

// waitBoundProc waits until a socket of network ("udp", "udp6", "tcp")
// is bound to port (tcp: listening), as /proc/net lists it. It never
// binds the port itself: a probe that binds can make a SIPp starting at
// that moment fail its own bind.
func waitBoundProc(t testing.TB, network string, port int) {
	t.Helper()
	checkFor(t, 30*time.Second, func() error { // SIPp starts slowly on a loaded machine
		if portBound(network, port) {
			return nil
		}
		return errorf("nothing bound to port %d/%s yet", port, network)
	})
}

// portBound reports whether /proc/net/<network> has a socket whose local
// port is port (for tcp and tcp6, in the LISTEN state).
func portBound(network string, port int) bool {
	b, err := os.ReadFile("/proc/net/" + network)
	if err != nil {
		return false
	}
	suffix := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasSuffix(f[1], suffix) {
			continue
		}
		if strings.HasPrefix(network, "tcp") && f[3] != "0A" {
			continue
		}
		return true
	}
	return false
}

func statusOf(err error) int {
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		return de.Res.StatusCode
	}
	var de2 sipgo.ErrDialogResponse
	if errors.As(err, &de2) {
		return de2.Res.StatusCode
	}
	return 0
}

func header(req *sip.Request, name string) string {
	if h := req.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// rawUA sends hand-written messages over UDP from a chosen address.
type rawUA struct {
	t    testing.TB
	conn *net.UDPConn
	to   *net.UDPAddr
	// contact replaces the Contact URI of replyTo's answers ("": the
	// UA's own address).
	contact string
}

func newRaw(t testing.TB, host string, to net.Addr) *rawUA {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(host)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawUA{t: t, conn: c, to: to.(*net.UDPAddr)}
}

func (r *rawUA) port() int { return r.conn.LocalAddr().(*net.UDPAddr).Port }

func (r *rawUA) send(msg string) {
	r.t.Helper()
	if _, err := r.conn.WriteToUDP([]byte(msg), r.to); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the next message, or "" after d.
func (r *rawUA) read(d time.Duration) string {
	buf := make([]byte, 65535)
	_ = r.conn.SetReadDeadline(time.Now().Add(d))
	n, _, err := r.conn.ReadFromUDP(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// readFinal skips provisional responses.
func (r *rawUA) readFinal(d time.Duration) string {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m := r.read(time.Until(deadline))
		if m == "" {
			return ""
		}
		if strings.HasPrefix(m, "SIP/2.0 1") {
			continue
		}
		return m
	}
	return ""
}

// invite builds a raw INVITE from r to user at the edge.
func (r *rawUA) invite(e *testEdge, user, callID string, extra string) string {
	body := testSDP
	return fmt.Sprintf("INVITE sip:%s@127.0.0.1:%d SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:+15005550006@127.0.0.1>;tag=caller-%s\r\n"+
		"To: <sip:%s@127.0.0.1>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:caller@127.0.0.1:%d>\r\n"+
		"%s"+
		"Content-Type: application/sdp\r\n"+
		"Content-Length: %d\r\n\r\n%s",
		user, e.UDPAddr().Port(), r.port(), callID, callID, user, callID, r.port(), extra, len(body), body)
}

func statusLine(m string) string {
	if i := strings.Index(m, "\r\n"); i > 0 {
		return m[:i]
	}
	return m
}

func sprintf(f string, a ...any) string { return fmt.Sprintf(f, a...) }

func itoa(i int) string { return fmt.Sprint(i) }

// net_ is the edge's UDP address as a net.Addr.
func net_(e *testEdge) net.Addr { return net.UDPAddrFromAddrPort(e.UDPAddr()) }

var netUDPAddrLoop = net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}

// cancelFor builds the CANCEL for a raw INVITE (same Via, Call-ID, From,
// To, CSeq number).
func cancelFor(inv string) string {
	head := strings.SplitN(inv, "\r\n\r\n", 2)[0]
	var out []string
	for i, l := range strings.Split(head, "\r\n") {
		switch {
		case i == 0:
			l = strings.Replace(l, "INVITE ", "CANCEL ", 1)
		case strings.HasPrefix(l, "CSeq:"):
			l = "CSeq: 1 CANCEL"
		case strings.HasPrefix(l, "Content-Type:"), strings.HasPrefix(l, "Contact:"):
			continue
		case strings.HasPrefix(l, "Content-Length:"):
			l = "Content-Length: 0"
		}
		out = append(out, l)
	}
	return strings.Join(out, "\r\n") + "\r\n\r\n"
}
