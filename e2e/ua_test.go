package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/internal/testwait"
)

func init() {
	// sipgo's own logging in the test UAs stays quiet.
	sip.SetDefaultLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
}

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"

// ua is a sipgo user agent on a loopback UDP port: as an agent it answers
// INVITEs (180, then 200 with SDP) and OPTIONS probes; as a carrier it
// places calls through a gateway.
type ua struct {
	t    testing.TB
	ua   *sipgo.UserAgent
	cli  *sipgo.Client
	port int
	dcc  *sipgo.DialogClientCache
	dsc  *sipgo.DialogServerCache

	mu      sync.Mutex
	invites int
	byes    int
	sdp     string // the answer's SDP; empty: testSDP
}

// answerSDP is the SDP the UA answers with.
func (u *ua) answerSDP() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sdp != "" {
		return []byte(u.sdp)
	}
	return []byte(testSDP)
}

func newUA(t testing.TB) *ua {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &ua{t: t, port: pc.LocalAddr().(*net.UDPAddr).Port}
	u.ua, err = sipgo.NewUA(sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(u.ua)
	if err != nil {
		t.Fatal(err)
	}
	u.cli, err = sipgo.NewClient(u.ua, sipgo.WithClientConnectionAddr(pc.LocalAddr().String()), sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	contact := sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "ua", Host: "127.0.0.1", Port: u.port}}
	u.dcc = sipgo.NewDialogClientCache(u.cli, contact)
	u.dsc = sipgo.NewDialogServerCache(u.cli, contact)
	srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		if tag, _ := req.To().Params.Get("tag"); tag != "" { // re-INVITE
			res := sip.NewResponseFromRequest(req, 200, "OK", u.answerSDP())
			res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			_ = tx.Respond(res)
			return
		}
		u.mu.Lock()
		u.invites++
		u.mu.Unlock()
		ds, err := u.dsc.ReadInvite(req, tx)
		if err != nil {
			return
		}
		_ = ds.Respond(180, "Ringing", nil)
		// Ring briefly, as a phone does: sent back to back, the 180 and
		// the 200 can be reordered by the proxy's parallel UDP workers,
		// and a 180 after the 200 is rightly dropped (no provisional
		// would then be measured).
		time.Sleep(20 * time.Millisecond)
		_ = ds.RespondSDP(u.answerSDP())
	})
	srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = u.dsc.ReadAck(req, tx) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		u.mu.Lock()
		u.byes++
		u.mu.Unlock()
		if err := u.dsc.ReadBye(req, tx); err != nil {
			if err := u.dcc.ReadBye(req, tx); err != nil {
				_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			}
		}
	})
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	go func() { _ = srv.ServeUDP(pc) }()
	testwait.CheckFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		if c, err := u.ua.TransportLayer().GetConnection("udp", pc.LocalAddr().String()); err != nil || c == nil {
			return errors.New("UA listener not ready")
		}
		return nil
	})
	t.Cleanup(func() {
		u.ua.Close()
		pc.Close()
	})
	return u
}

// uri is the agent endpoint URI of this UA.
func (u *ua) uri() string { return fmt.Sprintf("sip:bot@127.0.0.1:%d;transport=udp", u.port) }

func (u *ua) counts() (invites, byes int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.invites, u.byes
}

// dial sends an INVITE for number to the gateway at gw and waits for the
// final answer. On 2xx it ACKs and returns the dialog; otherwise it
// returns the final response (nil on a transport error).
func (u *ua) dial(ctx context.Context, gw netip.AddrPort, number string) (*sipgo.DialogClientSession, *sip.Response, error) {
	target := sip.Uri{Scheme: "sip", User: number, Host: gw.Addr().String(), Port: int(gw.Port())}
	ds, err := u.dcc.Invite(ctx, target, []byte(testSDP), sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		return nil, nil, err
	}
	if err := ds.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		var de *sipgo.ErrDialogResponse
		if errors.As(err, &de) {
			return nil, de.Res, nil
		}
		return nil, nil, err
	}
	if err := ds.Ack(ctx); err != nil {
		return nil, nil, fmt.Errorf("ACK: %w", err)
	}
	return ds, ds.InviteResponse, nil
}

// call places a whole call (INVITE, answer, ACK, BYE) and returns the
// INVITE's final status.
func (u *ua) call(t testing.TB, gw netip.AddrPort, number string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ds, res, err := u.dial(ctx, gw, number)
	if err != nil {
		t.Fatalf("call %s via %s: %v", number, gw, err)
	}
	if ds == nil {
		return res.StatusCode
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	return res.StatusCode
}
