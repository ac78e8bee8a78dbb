package devua

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/internal/testwait"
)

// A re-INVITE with a=sendonly holds the call: the agent stops sending
// until the resume (a=sendrecv), then sends again.
func TestAgentHoldResume(t *testing.T) {
	a, _ := startAgent(t, AgentConfig{ToneHz: 440})
	res := call(t, CallConfig{Gateway: a.Addr().String(), To: "+12285340406", ToneHz: 440,
		Duration: 4 * time.Second, HoldAfter: time.Second, HoldFor: time.Second})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.HeldPacketsIn != 0 {
		t.Fatalf("%d packets arrived while on hold: %s", res.HeldPacketsIn, res)
	}
	// About 1.7 s of the call is left after the resume.
	if res.ResumedPacketsIn < 25 || res.HungUpBy != "caller" {
		t.Fatalf("%d packets after the resume: want the agent sending again, and the caller's hang-up: %s", res.ResumedPacketsIn, res)
	}
	r := waitReport(t, a)
	if r.Holds != 1 || r.End != "bye" {
		t.Fatalf("agent report %s: want holds=1 end=bye", r)
	}
}

// The caller's check fails when no audio comes back.
func TestCallerNoAudioFails(t *testing.T) {
	u, err := newSIPUA("127.0.0.1:0", "silent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.close)
	dsc := sipgo.NewDialogServerCache(u.cli, u.contact("silent"))
	conn, err := listenRTP("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	u.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		ds, err := dsc.ReadInvite(req, tx)
		if err != nil {
			return
		}
		_ = ds.RespondSDP(buildSDP(conn.LocalAddr().(*net.UDPAddr), 1, 1, []Codec{PCMU}, -1, "sendrecv"))
	})
	u.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) { _ = dsc.ReadAck(req, tx) })
	u.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) { _ = dsc.ReadBye(req, tx) })
	if err := u.serve(); err != nil {
		t.Fatal(err)
	}
	res := call(t, CallConfig{Gateway: u.addr.String(), To: "+12285340406", Duration: time.Second})
	if res.Status != 200 {
		t.Fatalf("want the silent UA's 200: %s", res)
	}
	if err := res.Err(); err == nil || !strings.Contains(err.Error(), "no audio") || res.GreetingHeard {
		t.Fatalf("silent answer: Err() = %v, result %s", err, res)
	}
}

// A caller that gives up while the agent rings sends CANCEL; the agent
// reports the call cancelled. The agent answers OPTIONS, and refuses an
// INVITE without a usable SDP with 488.
func TestAgentCancelOptionsBadSDP(t *testing.T) {
	a, out := startAgent(t, AgentConfig{Ring: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Call(ctx, CallConfig{Gateway: a.Addr().String(), To: "+12285340406", AnswerTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("call to a ringing agent answered within 500 ms")
	}
	if r := waitReport(t, a); r.End != "cancelled" {
		t.Fatalf("agent report %s: want end=cancelled", r)
	}
	// The report is kept, then its line printed.
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if !strings.Contains(out.String(), "end=cancelled") {
			return errors.New("no end=cancelled line yet")
		}
		return nil
	})

	u, err := newSIPUA("127.0.0.1:0", "probe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.close)
	if err := u.serve(); err != nil {
		t.Fatal(err)
	}
	target := sip.Uri{Scheme: "sip", User: "agent", Host: "127.0.0.1", Port: a.Addr().Port}
	opt := sip.NewRequest(sip.OPTIONS, target)
	res, err := u.cli.Do(ctx, opt)
	if err != nil || res.StatusCode != 200 || !strings.Contains(res.GetHeader("Allow").Value(), "INVITE") {
		t.Fatalf("OPTIONS: %v %v", res, err)
	}
	for _, body := range []string{"", "v=0\r\nbogus", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\n"} {
		inv := sip.NewRequest(sip.INVITE, target)
		inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		inv.SetBody([]byte(body))
		res, err := u.cli.Do(ctx, inv)
		if err != nil || res.StatusCode != 488 {
			t.Fatalf("INVITE with SDP %q: %v %v, want 488", body, res, err)
		}
	}
}

func waitReport(t *testing.T, a *Agent) CallReport {
	t.Helper()
	var r CallReport
	testwait.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if reps := a.Reports(); len(reps) > 0 {
			r = reps[0]
			return nil
		}
		return context.DeadlineExceeded
	})
	return r
}

func mustUDP(s string) *net.UDPAddr {
	a, err := net.ResolveUDPAddr("udp", s)
	if err != nil {
		panic(err)
	}
	return a
}

// Calls over MaxCalls (ringing or answered) get 486 Busy Here.
func TestAgentMaxCalls(t *testing.T) {
	a, _ := startAgent(t, AgentConfig{Ring: 10 * time.Second, MaxCalls: 1})
	done := make(chan error, 1)
	go func() {
		_, err := Call(context.Background(), CallConfig{Gateway: a.Addr().String(), To: "+12285340406", AnswerTimeout: 5 * time.Second})
		done <- err
	}()
	testwait.CheckFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.ringing != 1 {
			return context.DeadlineExceeded
		}
		return nil
	})
	res := call(t, CallConfig{Gateway: a.Addr().String(), To: "+12285340407"})
	if res.Status != 486 || res.Err() == nil {
		t.Fatalf("second call: %s, want 486", res)
	}
	if err := <-done; err == nil {
		t.Fatal("the first call was answered while the agent rings for 10 s")
	}
}
