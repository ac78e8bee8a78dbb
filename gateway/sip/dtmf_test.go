package sip

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/nats-io/nats.go"
	"github.com/pion/rtp"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/store/storetest"
)

// rtpSock is a UDP socket on loopback standing for one side's media.
type rtpSock struct {
	c   *net.UDPConn
	buf []byte
}

func newRTPSock(t *testing.T) *rtpSock {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rtpSock{c: c, buf: make([]byte, 2048)}
}

func (r *rtpSock) port() int { return r.c.LocalAddr().(*net.UDPAddr).Port }

// next reads the next RTP packet (5 s at most).
func (r *rtpSock) next(t *testing.T) (rtp.Packet, time.Time) {
	t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := r.c.ReadFromUDP(r.buf)
	if err != nil {
		t.Fatalf("no RTP: %v", err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(append([]byte(nil), r.buf[:n]...)); err != nil {
		t.Fatalf("not RTP: %v", err)
	}
	return p, time.Now()
}

// sdpAt is an SDP offering PCMU at port, with telephone-event as pt (0: none).
func sdpAt(port, pt int) []byte {
	fmts, te := "0", ""
	if pt > 0 {
		fmts = fmt.Sprintf("0 %d", pt)
		te = fmt.Sprintf("a=rtpmap:%d telephone-event/8000\r\na=fmtp:%d 0-16\r\n", pt, pt)
	}
	return []byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP %s\r\na=rtpmap:0 PCMU/8000\r\n%sa=ptime:20\r\n", port, fmts, te))
}

// answerSDP answers INVITEs 200 with body and keeps the dialog.
func answerSDP(body []byte) func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
	return func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
		ds, err := u.dsc.ReadInvite(req, tx)
		if err != nil {
			return
		}
		_ = ds.RespondSDP(body)
		u.sessMu.Lock() // after the answer: the test may use the dialog from then on
		u.sessions[req.CallID().Value()] = ds
		u.sessMu.Unlock()
	}
}

// callWith places a call from u with the SDP offer body and ACKs it.
func (u *testUA) callWith(ctx context.Context, t *testing.T, e *testEdge, body []byte) *sipgo.DialogClientSession {
	t.Helper()
	ds, err := u.dcc.Invite(ctx, e.uri(numPurchased), body, sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ds.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("call not answered: %v", err)
	}
	if err := ds.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	return ds
}

func dtmfInfo(target sip.Uri, ct, body string) *sip.Request {
	r := sip.NewRequest(sip.INFO, target)
	r.AppendHeader(sip.NewHeader("Content-Type", ct))
	r.SetBody([]byte(body))
	return r
}

// checkEvent reads one RFC 4733 digit (n tone packets, then the end
// packets) from s and checks it.
func readDigit(t *testing.T, s *rtpSock, pt uint8) (ev byte, dur uint16, first time.Time) {
	t.Helper()
	var ts uint32
	ends := 0
	for i := 0; ends < 3; i++ {
		p, at := s.next(t)
		if p.PayloadType == 0 && i == 0 {
			i--
			continue // comfort noise (G.711 silence) while the agent is silent
		}
		if p.PayloadType != pt || len(p.Payload) < 4 {
			t.Fatalf("packet %d: PT %d (payload %d bytes), want telephone-event %d", i, p.PayloadType, len(p.Payload), pt)
		}
		if i == 0 {
			ev, ts, first = p.Payload[0], p.Timestamp, at
		} else if p.Timestamp != ts || p.Payload[0] != ev {
			t.Fatalf("packet %d: event %d ts %d within event %d ts %d", i, p.Payload[0], p.Timestamp, ev, ts)
		}
		dur = binary.BigEndian.Uint16(p.Payload[2:])
		if p.Payload[1]&0x80 != 0 {
			ends++
		}
		if i > 20 {
			t.Fatal("no end of event")
		}
	}
	return ev, dur, first
}

// INFO digits from the caller become RFC 4733 toward an agent that
// negotiated telephone-event (answered 200 by callgate, not forwarded);
// INFO digits from the agent toward a caller without telephone-event are
// forwarded as is. Both are dtmf events.
func TestINFODigitsConvertedToRFC4733(t *testing.T) {
	agentRTP, callerRTP := newRTPSock(t), newRTPSock(t)
	agent := newUA(t, "127.0.0.1", answerSDP(sdpAt(agentRTP.port(), 101)))
	mgr := newMediaManager(t, 31600, 31699)
	e := runEdge(t, relayTable(agent.endpoint("eu")), nil, media.Anchor[MediaSession]{M: mgr})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ds := carrier.callWith(ctx, t, e, sdpAt(callerRTP.port(), 0)) // the caller has no telephone-event
	callID := ds.InviteRequest.CallID().Value()

	res, err := ds.Do(ctx, dtmfInfo(ds.InviteResponse.Contact().Address, "application/dtmf-relay", "Signal=5\r\nDuration=240\r\n"))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("INFO: %v %v", res, err)
	}
	ev, dur, _ := readDigit(t, agentRTP, 101)
	if ev != 5 || dur != 240*8 {
		t.Fatalf("agent got event %d duration %d, want 5 and %d (240 ms)", ev, dur, 240*8)
	}
	select {
	case r := <-agent.others:
		t.Fatalf("the converted INFO reached the agent too:\n%s", r)
	default:
	}
	ce := e.events.waitEvent(t, calls.DTMF, callID)
	if ce.Digits != "5" || ce.DTMFFrom != "caller" || ce.DTMFVia != "info" || ce.Workspace != "w" {
		t.Fatalf("dtmf event %+v", ce)
	}

	// the agent's INFO: the caller has no telephone-event → forwarded
	sess := agentDialog(t, agent, callID)
	res, err = sess.Do(ctx, dtmfInfo(ds.InviteRequest.Contact().Address, "application/dtmf", "#"))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("agent INFO: %v %v", res, err)
	}
	got := recv(t, carrier.others, "INFO at the caller")
	if string(got.Body()) != "#" {
		t.Fatalf("INFO body at the caller %q", got.Body())
	}
	checkFor(t, 5*time.Second, func() error {
		for _, x := range e.events.all() {
			if x.Kind == calls.DTMF && x.DTMFFrom == "agent" && x.Digits == "#" && x.DTMFVia == "info" {
				return nil
			}
		}
		return fmt.Errorf("no agent dtmf event: %+v", e.events.all())
	})
	_ = ds.Bye(ctx)
}

// agentDialog waits for the agent's dialog of a call.
func agentDialog(t *testing.T, agent *testUA, callID string) *sipgo.DialogServerSession {
	t.Helper()
	var sess *sipgo.DialogServerSession
	checkFor(t, 5*time.Second, func() error {
		if sess = agent.session(callID); sess == nil {
			return fmt.Errorf("agent has no dialog for %s", callID)
		}
		return nil
	})
	return sess
}

func (r *recorder) all() []calls.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]calls.Event(nil), r.events...)
}

// controlBus starts a NATS server and two buses (the API's node, the
// edge's node) on it.
func controlBus(t *testing.T) (api, edge *calls.ControlBus) {
	t.Helper()
	srv := storetest.RunServer(t)
	mk := func() *calls.ControlBus {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		b := calls.NewControlBus(nc, nil)
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		return b
	}
	return mk(), mk()
}

// API digits reach the caller of a relayed call as RFC 4733 with the
// tone lengths and the 'w' pause; another workspace cannot reach the call.
func TestAPIDigitsToCallerAsRFC4733(t *testing.T) {
	agentRTP, callerRTP := newRTPSock(t), newRTPSock(t)
	agent := newUA(t, "127.0.0.1", answerSDP(sdpAt(agentRTP.port(), 101)))
	mgr := newMediaManager(t, 31700, 31799)
	apiBus, edgeBus := controlBus(t)
	cfg := DefaultConfig()
	cfg.Addr, cfg.Region, cfg.Probe.Disabled = "127.0.0.1:0", "test", true
	e := startEdge(t, cfg, Deps{Table: relayTable(agent.endpoint("eu")), Media: media.Anchor[MediaSession]{M: mgr}, Control: edgeBus})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ds := carrier.callWith(ctx, t, e, sdpAt(callerRTP.port(), 96))
	callID := ds.InviteRequest.CallID().Value()

	octx, ocancel := context.WithTimeout(ctx, time.Second)
	defer ocancel()
	if _, err := apiBus.Send(octx, calls.Command{Op: calls.OpDTMF, CallID: callID, Workspace: "other", Digits: "1"}); err != calls.ErrCallNotHere {
		t.Fatalf("another workspace's command: %v, want ErrCallNotHere", err)
	}
	r, err := apiBus.Send(ctx, calls.Command{Op: calls.OpDTMF, CallID: callID, Workspace: "w", Digits: "1w#"})
	if err != nil || r.Status != 202 || r.Detail["via"] != "rfc4733" {
		t.Fatalf("reply %+v, %v", r, err)
	}
	ev1, dur1, at1 := readDigit(t, callerRTP, 96)
	ev2, dur2, at2 := readDigit(t, callerRTP, 96)
	if ev1 != 1 || ev2 != 11 || dur1 != 1280 || dur2 != 1280 {
		t.Fatalf("caller got events %d (%d) and %d (%d), want 1 and 11 lasting 1280 (160 ms)", ev1, dur1, ev2, dur2)
	}
	if gap := at2.Sub(at1); gap < 160*time.Millisecond+500*time.Millisecond {
		t.Fatalf("second digit %v after the first: the w pause is missing", gap)
	}
	ce := e.events.waitEvent(t, calls.DTMF, callID)
	if ce.Digits != "1#" || ce.DTMFFrom != "agent" || ce.DTMFVia != "rfc4733" {
		t.Fatalf("dtmf event %+v", ce)
	}
	_ = ds.Bye(ctx)
}

// Direct media: API digits go to the caller as SIP INFO, and the agent's
// later requests toward the caller are numbered above callgate's INFO;
// the agent sees its own numbers in the answers.
func TestAPIDigitsAsINFOAndCSeqRenumbering(t *testing.T) {
	agent := newUA(t, "127.0.0.1", answerSDP([]byte(testSDP)))
	apiBus, edgeBus := controlBus(t)
	cfg := DefaultConfig()
	cfg.Addr, cfg.Region, cfg.Probe.Disabled = "127.0.0.1:0", "test", true
	e := startEdge(t, cfg, Deps{Table: buildTable(agent.endpoint("eu")), Control: edgeBus})
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	// not answered yet: 409
	ringing := newUA(t, "127.0.0.1", ringForever)
	e2 := startEdge(t, cfg, Deps{Table: buildTable(ringing.endpoint("eu")), Control: edgeBus})
	rctx, rcancel := context.WithCancel(ctx)
	go func() { _, _, _ = carrier.call(rctx, e2, numPurchased) }()
	inv := recv(t, ringing.invites, "INVITE at the ringing agent")
	r, err := apiBus.Send(ctx, calls.Command{Op: calls.OpDTMF, CallID: inv.CallID().Value(), Workspace: "w", Digits: "1"})
	if err != nil || r.Status != 409 {
		t.Fatalf("unanswered call: %+v %v, want 409", r, err)
	}
	rcancel()

	ds := carrier.answered(ctx, t, e)
	callID := ds.InviteRequest.CallID().Value()
	r, err = apiBus.Send(ctx, calls.Command{Op: calls.OpDTMF, CallID: callID, Workspace: "w", Digits: "7"})
	if err != nil || r.Status != 202 || r.Detail["via"] != "info" {
		t.Fatalf("reply %+v, %v", r, err)
	}
	info := recv(t, carrier.others, "INFO at the caller")
	if ct := info.ContentType(); ct == nil || ct.Value() != "application/dtmf-relay" || !strings.Contains(string(info.Body()), "Signal=7") {
		t.Fatalf("INFO at the caller:\n%s", info)
	}
	want, _ := ds.InviteRequest.From().Params.Get("tag")
	if tag, _ := info.To().Params.Get("tag"); tag != want {
		t.Fatalf("INFO To tag %q, want the caller's From tag %q", tag, want)
	}
	// the agent's own INFO to the caller: renumbered above callgate's
	sess := agentDialog(t, agent, callID)
	ainfo := dtmfInfo(ds.InviteRequest.Contact().Address, "text/plain", "hello")
	res, err := sess.Do(ctx, ainfo)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("agent INFO: %v %v", res, err)
	}
	got := recv(t, carrier.others, "the agent's INFO at the caller")
	if got.CSeq().SeqNo <= info.CSeq().SeqNo {
		t.Fatalf("agent's INFO reached the caller with CSeq %d, not above callgate's %d", got.CSeq().SeqNo, info.CSeq().SeqNo)
	}
	if res.CSeq().SeqNo != ainfo.CSeq().SeqNo {
		t.Fatalf("answer reached the agent with CSeq %d, want its own %d", res.CSeq().SeqNo, ainfo.CSeq().SeqNo)
	}
	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("agent BYE: %v", err)
	}
	bye := recv(t, carrier.byes, "BYE at the caller")
	if bye.CSeq().SeqNo <= got.CSeq().SeqNo {
		t.Fatalf("BYE CSeq %d at the caller, not above %d", bye.CSeq().SeqNo, got.CSeq().SeqNo)
	}
	ce := e.events.waitEvent(t, calls.DTMF, callID)
	if ce.Digits != "7" || ce.DTMFVia != "info" || ce.DTMFFrom != "agent" {
		t.Fatalf("dtmf event %+v", ce)
	}
}

// pcapRTP reads the RTP payloads of a pcap (Ethernet, IPv4, UDP).
func pcapRTP(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for off := 24; off+16 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off+8:]))
		frame := b[off+16 : off+16+n]
		off += 16 + n
		ip := frame[14:]
		out = append(out, ip[int(ip[0]&15)*4+8:])
	}
	return out
}

// A SIPp carrier plays RFC 4733 digits from pcaps into a relayed call
// (Debian's 1 and #, and a 5 without any Marker bit and with its start
// packet lost): every packet reaches the agent untouched, and each key
// press is one dtmf event from the caller.
func TestSIPpRFC4733DigitsThroughRelay(t *testing.T) {
	pcaps := []string{"/usr/share/sip-tester/dtmf_2833_1.pcap", "/usr/share/sip-tester/dtmf_2833_pound.pcap"}
	for _, f := range append([]string{sippBin}, pcaps...) {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (Debian sip-tester)", f)
		}
	}
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(scen, "uac_dtmf.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "uac_dtmf.xml"), []byte(strings.ReplaceAll(string(raw), "PCAPDIR", scen)), 0o644); err != nil {
		t.Fatal(err)
	}
	agentRTP := newRTPSock(t)
	agent := newUA(t, "127.0.0.1", answerSDP(sdpAt(agentRTP.port(), 101)))
	mgr := newMediaManager(t, 31900, 31999)
	e := runEdge(t, relayTable(agent.endpoint("eu")), nil, media.Anchor[MediaSession]{M: mgr})
	uac, out := startSIPp(t, dir, 30, "-sf", filepath.Join(dir, "uac_dtmf.xml"), "-i", "127.0.0.1",
		"-mi", "127.0.0.1", "-mp", itoa(freeUDPPort(t)),
		"-s", numPurchased, "127.0.0.1:"+itoa(int(e.UDPAddr().Port())), "-m", "1", "-nostdin", "-trace_err")
	var want [][]byte
	for _, f := range append(pcaps, filepath.Join(scen, "dtmf_2833_5_nomarker.pcap")) {
		want = append(want, pcapRTP(t, f)...)
	}
	for i, w := range want {
		p, _ := agentRTP.next(t)
		if p.PayloadType != 101 || !bytes.Equal(p.Payload, w[12:]) || p.Marker != (w[1]&0x80 != 0) {
			t.Fatalf("packet %d at the agent: PT %d marker %v payload %x; the capture has %x", i, p.PayloadType, p.Marker, p.Payload, w)
		}
	}
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp: %v\n%s\n%s", err, tail(out.String()), sippErrors(dir))
	}
	var got []string
	for _, x := range e.events.all() {
		if x.Kind == calls.DTMF {
			got = append(got, x.DTMFFrom+":"+x.Digits+":"+x.DTMFVia)
		}
	}
	if fmt.Sprint(got) != "[caller:1:rfc4733 caller:#:rfc4733 caller:5:rfc4733]" {
		t.Fatalf("dtmf events %v, want one per key press: 1, #, 5 from the caller", got)
	}
}
