package console_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/provisioning"
)

const callSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// sipUA is a sipgo user agent on a loopback UDP port: as an agent it
// answers INVITEs with answer (200 with SDP after a 180, or a final
// error status) and OPTIONS probes with 200; as a carrier it places calls.
type sipUA struct {
	port int
	dcc  *sipgo.DialogClientCache
}

func newSipUA(t *testing.T, answer int) *sipUA {
	t.Helper()
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &sipUA{port: pc.LocalAddr().(*net.UDPAddr).Port}
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := sipgo.NewClient(ua, sipgo.WithClientConnectionAddr(pc.LocalAddr().String()), sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "ua", Host: "127.0.0.1", Port: u.port}}
	u.dcc = sipgo.NewDialogClientCache(cli, contact)
	dsc := sipgo.NewDialogServerCache(cli, contact)
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if tag, _ := req.To().Params.Get("tag"); tag != "" { // re-INVITE
			res := sip.NewResponseFromRequest(req, 200, "OK", []byte(callSDP))
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			_ = tx.Respond(res)
			return
		}
		if answer != 200 {
			_ = tx.Respond(sip.NewResponseFromRequest(req, answer, "Busy Here", nil))
			return
		}
		ds, err := dsc.ReadInvite(req, tx)
		if err != nil {
			return
		}
		_ = ds.Respond(180, "Ringing", nil)
		time.Sleep(20 * time.Millisecond) // a 180 and 200 sent back to back may be reordered
		_ = ds.RespondSDP([]byte(callSDP))
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = dsc.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := dsc.ReadBye(req, tx); err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
		}
	})
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go func() { _ = srv.ServeUDP(pc) }()
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if c, err := ua.TransportLayer().GetConnection("udp", pc.LocalAddr().String()); err != nil || c == nil {
			return errors.New("UA listener not ready")
		}
		return nil
	})
	t.Cleanup(func() { ua.Close(); pc.Close() })
	return u
}

func (u *sipUA) uri() string { return fmt.Sprintf("sip:bot@127.0.0.1:%d;transport=udp", u.port) }

// call places a call to number through the gateway at gw (INVITE, and on
// 200 ACK and BYE) and returns its Call-ID and final status.
func (u *sipUA) call(t *testing.T, gw netip.AddrPort, number string, hdrs ...sip.Header) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	target := sip.Uri{Scheme: "sip", User: number, Host: gw.Addr().String(), Port: int(gw.Port())}
	ds, err := u.dcc.Invite(ctx, target, []byte(callSDP), append([]sip.Header{sip.NewHeader("Content-Type", "application/sdp")}, hdrs...)...)
	if err != nil {
		t.Fatalf("INVITE %s: %v", number, err)
	}
	id := ds.InviteRequest.CallID().Value()
	if err := ds.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return id, de.Res.StatusCode
		}
		t.Fatalf("call %s: %v", number, err)
	}
	if err := ds.Ack(ctx); err != nil {
		t.Fatalf("ACK: %v", err)
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	return id, 200
}

// callsNode is a node probing agents fast, so that calls are routed soon
// after an agent is created.
func callsNode(t *testing.T) (*node.Node, string) {
	n := nodetest.Start(t, nodetest.Config(func(c *config.Config) {
		c.SIP.Probe.Interval = 200 * time.Millisecond
		c.SIP.Probe.Timeout = 150 * time.Millisecond
		c.SIP.Probe.UpAfter = 1
	}))
	return n, "http://" + n.HTTPAddr()
}

// routedNumber buys a sandbox number for workspace p, creates agent id
// at uri for it and waits until the node routes the number to an
// endpoint the prober found up.
func routedNumber(t *testing.T, n *node.Node, p provisioning.Principal, id, uri string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := n.Service().CreateAgent(ctx, p, provisioning.AgentInput{ID: id, Name: "Agent " + id,
		Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: uri}}}); err != nil {
		t.Fatal(err)
	}
	page, err := n.Service().Search(ctx, p, provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: searchQuery("US", "228")})
	if err != nil || len(page.Numbers) == 0 {
		t.Fatalf("search: %v", err)
	}
	num, err := n.Service().Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: page.Numbers[0].PhoneNumber, Carrier: "sandbox", AgentID: id}, "")
	if err != nil {
		t.Fatal(err)
	}
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		r, ok := n.Table().Load().Lookup(num.PhoneNumber)
		if !ok || r.Agent == nil || r.Agent.ID != id {
			return fmt.Errorf("%s not routed to %s yet", num.PhoneNumber, id)
		}
		for _, st := range n.SIP().Status() {
			if st.URI == uri && st.Known && st.Up {
				return nil
			}
		}
		return fmt.Errorf("endpoint %s not probed up yet", uri)
	})
	return num.PhoneNumber
}

// dial places a call and leaves it up; hang up with the returned func.
func (u *sipUA) dial(t *testing.T, gw netip.AddrPort, number string) (hangup func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	target := sip.Uri{Scheme: "sip", User: number, Host: gw.Addr().String(), Port: int(gw.Port())}
	ds, err := u.dcc.Invite(ctx, target, []byte(callSDP), sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatalf("INVITE %s: %v", number, err)
	}
	if err := ds.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("call %s: %v", number, err)
	}
	if err := ds.Ack(ctx); err != nil {
		t.Fatalf("ACK: %v", err)
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := ds.Bye(ctx); err != nil {
			t.Errorf("BYE: %v", err)
		}
	}
}

// callsFixture is a node with calls in two workspaces: in the bootstrap
// workspace an answered call, a busy one (agent answers 486) and an
// answered call forwarded from business line fwdLine (registered, as is
// untestedLine, which no call came through); in workspace "other" one
// answered call.
type callsFixture struct {
	n                         *node.Node
	base                      string
	carrier                   *sipUA
	numOK, numBusy            string
	answered, busy, forwarded string
	otherCall                 string
}

const (
	fwdLine      = "+14155550100"
	untestedLine = "+14155550111"
)

func newCallsFixture(t *testing.T) *callsFixture {
	t.Helper()
	n, base := callsNode(t)
	ctx := context.Background()
	f := &callsFixture{n: n, base: base, carrier: newSipUA(t, 200)}
	a := provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}
	f.numOK = routedNumber(t, n, a, "bot", newSipUA(t, 200).uri())
	f.numBusy = routedNumber(t, n, a, "busy", newSipUA(t, 486).uri())
	for _, line := range []string{fwdLine, untestedLine} {
		if _, err := n.Service().CreateForwarding(ctx, a, line, f.numOK); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := n.Service().CreateWorkspace(ctx, "other", "Other", 1000); err != nil {
		t.Fatal(err)
	}
	numB := routedNumber(t, n, provisioning.Principal{Workspace: "other"}, "obot", newSipUA(t, 200).uri())
	gw := n.SIP().UDPAddr()
	var code int
	if f.answered, code = f.carrier.call(t, gw, f.numOK); code != 200 {
		t.Fatalf("call to %s: %d", f.numOK, code)
	}
	if f.busy, code = f.carrier.call(t, gw, f.numBusy); code != 486 {
		t.Fatalf("call to the busy agent: %d, want 486", code)
	}
	if f.forwarded, code = f.carrier.call(t, gw, f.numOK, sip.NewHeader("Diversion", "<sip:"+fwdLine+"@carrier.example>;reason=unconditional")); code != 200 {
		t.Fatalf("forwarded call: %d", code)
	}
	if f.otherCall, code = f.carrier.call(t, gw, numB); code != 200 {
		t.Fatalf("call to workspace other: %d", code)
	}
	return f
}
