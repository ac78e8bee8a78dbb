package sip

import (
	"bytes"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// fastSeeds are messages the fast path takes (or nearly: mutations of them
// probe its edges). Seeds beside them: testdata/fuzz/FuzzFastPath.
var fastSeeds = []string{
	// SIPp's ACK and BYE through one record-route (the bench)
	"ACK sip:sipp@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-2-4\r\nRoute: <sip:127.0.0.9:5060;lr;cg=abcdefghijk>\r\n" +
		"From: sipp <sip:+15005550006@127.0.0.1:5061>;tag=1SIPpTag001\r\nTo: <sip:12285550100@127.0.0.9:5060>;tag=77SIPpTag011\r\n" +
		"Call-ID: 1-2@127.0.0.1\r\nCSeq: 1 ACK\r\nContact: <sip:sipp@127.0.0.1:5061>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
	"BYE sip:sipp@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-2-6;rport\r\n" +
		"Route: <sip:127.0.0.9:5060;lr;cg=abcdefghijk>, <sip:127.0.0.9:5070;lr>, <sip:10.0.0.2;lr>\r\n" +
		"From: sipp <sip:+15005550006@127.0.0.1:5061>;tag=1SIPpTag001\r\nTo: <sip:12285550100@127.0.0.9:5060>;tag=77SIPpTag011\r\n" +
		"Call-ID: 1-2@127.0.0.1\r\nCSeq: 2 BYE\r\nContact: <sip:sipp@127.0.0.1:5061>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
	// compact forms, IPv6, a body, Max-Forwards missing, two Route lines
	"BYE sip:bot@[::1]:5070;transport=udp SIP/2.0\r\nv: SIP/2.0/UDP [::1]:5061;branch=z9hG4bKx;received=::1\r\nRoute: <sip:127.0.0.9;lr>\r\nRoute: <sip:[::2]:5080;lr>\r\n" +
		"f: \"A B\" <sip:a@b>;tag=1\r\nt: <sip:b@c>;tag=2\r\ni: abc\r\nCSeq: 7 BYE\r\nc: text/plain\r\nUser-Agent: x\r\nReason: SIP ;cause=200\r\nl: 5\r\n\r\nhello",
	// the agent's answer to a BYE we forwarded; SIPp's, every Via in one line
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:47687;branch=z9hG4bKcgs0565d6a57bd93388, SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-17480-1-7\r\n" +
		"From: sipp <sip:+15005550006@127.0.0.1:5060>;tag=17480SIPpTag001\r\nTo: <sip:+12282001234@127.0.0.1:47687>;tag=17478SIPpTag011\r\n" +
		"Call-ID: 1-17480@127.0.0.1\r\nCSeq: 2 BYE\r\nContact: <sip:127.0.0.1:49862;transport=UDP>\r\nContent-Length: 0\r\n\r\n",
	"BYE sip:bot@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-a;rport,  SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-b\r\nRoute: <sip:127.0.0.9;lr>\r\n" +
		"From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=2\r\nCall-ID: x\r\nCSeq: 3 BYE\r\nMax-Forwards: 9\r\nContent-Length: 0\r\n\r\n",
	// the agent's answer to a BYE we forwarded
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bKcgs0011223344556677\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-2-6;received=127.0.0.2;rport=5099\r\n" +
		"From: sipp <sip:+15005550006@127.0.0.1:5061>;tag=1SIPpTag001\r\nTo: <sip:12285550100@127.0.0.9:5060>;tag=77SIPpTag011\r\n" +
		"Call-ID: 1-2@127.0.0.1\r\nCSeq: 2 BYE\r\nContact: <sip:127.0.0.1:5070;transport=UDP>\r\nContent-Length: 0\r\n\r\n", // the agent's answers to an INVITE we forwarded (fastInviteResponse):
	// SIPp's 180 and 200 through the agent listener (every Via and every
	// Record-Route entry in one line), a 100, a 200 in compact forms with
	// two Record-Route lines and a display name in the Contact
	"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bKcgx8b1f0c2d3e, SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-2-0;received=127.0.0.1;rport=5061\r\n" +
		"Record-Route: <sip:127.0.0.9:5070;lr;cg=abcdefghijk>, <sip:127.0.0.9:5060;lr;cg=abcdefghijk>\r\n" +
		"From: sipp <sip:+15005550006@127.0.0.1:5061>;tag=1SIPpTag001\r\nTo: <sip:12285550100@127.0.0.9:5060>;tag=77SIPpTag011\r\n" +
		"Call-ID: 1-2@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5070;transport=UDP>\r\nContent-Length: 0\r\n\r\n",
	"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.9:5070;branch=z9hG4bKcgx8b1f0c2d3e, SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-2-0;received=127.0.0.1;rport=5061\r\n" +
		"Record-Route: <sip:127.0.0.9:5070;lr;cg=abcdefghijk>, <sip:127.0.0.9:5060;lr;cg=abcdefghijk>\r\n" +
		"From: sipp <sip:+15005550006@127.0.0.1:5061>;tag=1SIPpTag001\r\nTo: <sip:12285550100@127.0.0.9:5060>;tag=77SIPpTag011\r\n" +
		"Call-ID: 1-2@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5070;transport=UDP>\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\n" +
		"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
	"SIP/2.0 100 Trying\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKcgx00aa\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport\r\n" +
		"From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n",
	"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKcgx00aa\r\nv: SIP/2.0/UDP [::1]:5061;branch=z9hG4bK-1;rport=5061;received=::1\r\n" +
		"Record-Route: <sip:127.0.0.9:5060;lr>\r\nRecord-Route: \"edge\" <sip:10.0.0.1;lr>;x=1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:b@c>;tag=2\r\ni: x\r\nCSeq: 1 INVITE\r\n" +
		"m: Bot <sip:bot@10.0.0.2:5080;transport=udp;ob>;expires=60\r\nServer: agent\r\nAllow: INVITE, ACK, BYE\r\nk: timer\r\nc: application/sdp\r\nl: 3\r\n\r\nv=0",
}

// FuzzFastPath checks the fast path's scanner and edits against sipgo's
// parser and the full path's edits: whatever the scanner takes, sipgo
// parses and the full path accepts (validate), with the same method,
// Call-ID, CSeq, tags, Vias, Route entries, Max-Forwards and body; and
// the bytes the fast path forwards parse to the same message as the full
// path's edit of it (our Via added and Route entries popped, received and
// rport set, Max-Forwards decremented; for an answer, our Via removed);
// for an answer, what the shared state changes read (inviteResp: To tag,
// Contact, body) is what they read of sipgo's parse, and it has no header
// the full path's forwardUp would remove or add to (header policy,
// session timer, 100rel). A message the scanner refuses goes to the full
// path: nothing to check.
func FuzzFastPath(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	s := &Server{viaHost: "127.0.0.9"}
	s.fast.once.Do(func() {})
	s.fast.via = [2]string{"Via: SIP/2.0/UDP 127.0.0.9:5060;branch=", "Via: SIP/2.0/UDP 127.0.0.9:5070;branch="}
	from := peer{Proto: protoUDP, Addr: netip.MustParseAddrPort("127.0.0.2:5099")}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m fastMsg
		if !scanFast(data, &m) {
			return
		}
		msg, err := sip.NewParser().ParseSIP(data)
		if err != nil {
			t.Fatalf("scanner took what sipgo refuses (%v):\n%q", err, data)
		}
		if req, ok := msg.(*sip.Request); ok {
			checkFastRequest(t, s, &m, req, from)
		} else {
			checkFastResponse(t, &m, msg.(*sip.Response))
		}
	})
}

func checkFastRequest(t *testing.T, s *Server, m *fastMsg, req *sip.Request, from peer) {
	t.Helper()
	data := m.data
	if !m.isReq {
		t.Fatalf("scanned as a response, parsed as a request:\n%q", data)
	}
	if why := validate(req); why != "" {
		t.Fatalf("scanner took what validate refuses (%s):\n%q", why, data)
	}
	eq := func(what string, got []byte, want string) {
		t.Helper()
		if string(got) != want {
			t.Fatalf("%s: scanner %q, sipgo %q\n%q", what, got, want, data)
		}
	}
	eq("method", m.str(m.method), string(req.Method))
	eq("Call-ID", m.str(m.callID_()), string(*req.CallID()))
	eq("CSeq method", m.str(m.cseqMethod), string(req.CSeq().MethodName))
	if m.cseqNum != req.CSeq().SeqNo {
		t.Fatalf("CSeq: scanner %d, sipgo %d\n%q", m.cseqNum, req.CSeq().SeqNo, data)
	}
	fromTag, _ := req.From().Params.Get("tag")
	toTag, _ := req.To().Params.Get("tag")
	eq("From tag", m.str(m.fromTag), fromTag)
	eq("To tag", m.str(m.toTag), toTag)
	v := req.Via()
	br, _ := v.Params.Get("branch")
	eq("Via branch", m.str(m.viaBranch), br)
	eq("Via host", trimBracketsB(m.str(m.viaHost)), v.Host)
	if m.viaPort != v.Port {
		t.Fatalf("Via port: scanner %d, sipgo %d\n%q", m.viaPort, v.Port, data)
	}
	eq("Request-URI host", m.str(m.ruri.host), req.Recipient.Host)
	if m.ruri.port != req.Recipient.Port {
		t.Fatalf("Request-URI port: scanner %d, sipgo %d\n%q", m.ruri.port, req.Recipient.Port, data)
	}
	var routes []*sip.RouteHeader
	for _, h := range req.GetHeaders("Route") {
		routes = append(routes, h.(*sip.RouteHeader))
	}
	if len(routes) != m.nroutes {
		t.Fatalf("Route entries: scanner %d, sipgo %d\n%q", m.nroutes, len(routes), data)
	}
	for i, r := range routes {
		eq("Route host", m.str(m.routes[i].uri.host), r.Address.Host)
		if m.routes[i].uri.port != r.Address.Port {
			t.Fatalf("Route port: scanner %d, sipgo %d\n%q", m.routes[i].uri.port, r.Address.Port, data)
		}
	}
	if mf := req.MaxForwards(); (mf == nil) != (m.maxFwd < 0) || mf != nil && int(*mf) != m.maxFwdVal {
		t.Fatalf("Max-Forwards: scanner %d, sipgo %v\n%q", m.maxFwdVal, mf, data)
	}
	if !bytes.Equal(data[m.body:], req.Body()) {
		t.Fatalf("body: scanner %q, sipgo %q", data[m.body:], req.Body())
	}
	if m.ourBranch || m.toTag.len() == 0 || m.maxFwd >= 0 && m.maxFwdVal == 0 {
		return // the fast path leaves these to the full path
	}

	// the edits: our Route entries are those naming 127.0.0.9
	popped := 0
	for popped < m.nroutes && string(m.str(m.routes[popped].uri.host)) == "127.0.0.9" {
		popped++
	}
	if popped == 0 {
		return
	}
	isAck := req.IsAck()
	var buf bytes.Buffer
	s.writeFastRequest(&buf, m, from, sideCarrier, popped, isAck)
	fast, err := sip.NewParser().ParseSIP(buf.Bytes())
	if err != nil {
		t.Fatalf("the fast path's forward does not parse (%v):\n%q\nfrom\n%q", err, buf.Bytes(), data)
	}
	// the full path's edit (forwardInDialog)
	setReceived(req, from)
	for i := 0; i < popped; i++ {
		req.RemoveHeader("Route")
	}
	if mf := req.MaxForwards(); mf != nil {
		*mf = *mf - 1
	} else {
		mf := sip.MaxForwardsHeader(70)
		req.AppendHeader(&mf)
	}
	meth := string(req.Method)
	if isAck {
		meth = "INVITE"
	}
	req.PrependHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.9", Port: 5060,
		Params: sip.HeaderParams{{K: "branch", V: statelessBranch(br+meth, from.Addr.String())}}})
	full, err := sip.NewParser().ParseSIP([]byte(req.String()))
	if err != nil {
		t.Fatalf("the full path's forward does not parse: %v", err)
	}
	if a, b := msgLines(fast), msgLines(full); a != b {
		t.Fatalf("fast and full forwards differ\nfast:\n%s\nfull:\n%s\nfrom\n%q", a, b, data)
	}
}

func checkFastResponse(t *testing.T, m *fastMsg, res *sip.Response) {
	t.Helper()
	data := m.data
	if m.isReq || m.status != res.StatusCode {
		t.Fatalf("status: scanner %d, sipgo %d\n%q", m.status, res.StatusCode, data)
	}
	if string(m.str(m.cseqMethod)) != string(res.CSeq().MethodName) || string(m.str(m.callID_())) != string(*res.CallID()) {
		t.Fatalf("CSeq or Call-ID differ\n%q", data)
	}
	// what fastInviteResponse reads: the top Via (ours? which branch?),
	// and what the state changes read (inviteResp): the To tag, the
	// Contact's address, the body
	top := res.Via()
	br, _ := top.Params.Get("branch")
	if string(m.str(m.viaBranch)) != br || string(trimBracketsB(m.str(m.viaHost))) != top.Host || m.viaPort != top.Port {
		t.Fatalf("top Via: scanner %q %q:%d, sipgo %v\n%q", m.str(m.viaBranch), m.str(m.viaHost), m.viaPort, top, data)
	}
	pr, sr := parsedResp{res}, scannedResp{m}
	ft, fok := pr.toTag()
	st, sok := sr.toTag()
	if ft != st || fok != sok || pr.hasToTag() != sr.hasToTag() {
		t.Fatalf("To tag: scanner %q, sipgo %q\n%q", st, ft, data)
	}
	fu, fok := pr.contactURI()
	su, sok := sr.contactURI()
	if fok != sok || !reflect.DeepEqual(fu, su) {
		t.Fatalf("Contact: scanner %v %+v, sipgo %v %+v\n%q", sok, su, fok, fu, data)
	}
	if !bytes.Equal(pr.body(), sr.body()) {
		t.Fatalf("body: scanner %q, sipgo %q", sr.body(), pr.body())
	}
	// nothing the full path's forwardUp would change: every header
	// standard (the header policy removes none, keeps none for history),
	// no Session-Expires (sessionAnswer), no 100rel (early.go)
	for _, h := range res.Headers() {
		if !isStandardHeader(h.Name()) {
			t.Fatalf("scanner took a custom header %q, which the header policy may remove\n%q", h.Name(), data)
		}
	}
	if _, ok := sessionExpiresOf(res); ok || res.GetHeader("RSeq") != nil || res.GetHeader("Require") != nil {
		t.Fatalf("scanner took a Session-Expires, RSeq or Require\n%q", data)
	}
	var vias []*sip.ViaHeader
	for _, h := range res.GetHeaders("Via") {
		vias = append(vias, h.(*sip.ViaHeader))
	}
	if len(vias) > 1 {
		if m.nextVia < 0 {
			t.Fatalf("second Via: scanner none, sipgo %v\n%q", vias[1], data)
		}
		nv := vias[1]
		rcv, _ := nv.Params.Get("received")
		if string(trimBracketsB(m.str(m.next.host))) != nv.Host || m.next.port != nv.Port || string(m.str(m.next.received)) != rcv ||
			!strings.EqualFold(string(m.str(m.next.proto)), nv.Transport) {
			t.Fatalf("second Via: scanner %q:%d received %q, sipgo %v\n%q", m.str(m.next.host), m.next.port, m.str(m.next.received), nv, data)
		}
		if rp, ok := nv.Params.Get("rport"); ok != (m.next.rport != 0) || ok && rp != "" && strings.TrimLeft(rp, "0") != strings.TrimLeft(strconv.Itoa(m.next.rport), "0") {
			t.Fatalf("second Via rport: scanner %d, sipgo %q\n%q", m.next.rport, rp, data)
		}
	}
	v := m.hdrs[m.topVia]
	out := append([]byte(nil), data[:v.line.a]...)
	if m.viaTopRest >= 0 {
		out = append(append(append(out, "Via: "...), data[m.viaTopRest:v.value.b]...), "\r\n"...)
	}
	out = append(out, data[v.line.b:]...)
	fast, err := sip.NewParser().ParseSIP(out)
	if err != nil {
		t.Fatalf("the fast path's forward does not parse (%v):\n%q", err, out)
	}
	res.RemoveHeader("Via")
	full, err := sip.NewParser().ParseSIP([]byte(res.String()))
	if err != nil {
		t.Fatalf("the full path's forward does not parse: %v", err)
	}
	if a, b := msgLines(fast), msgLines(full); a != b {
		t.Fatalf("fast and full forwards differ\nfast:\n%s\nfull:\n%s", a, b)
	}
}

// msgLines is a parsed message as its start line, its headers as sipgo
// reads them (one a line, in order) and its body.
func msgLines(m sip.Message) string {
	var b strings.Builder
	var hs []sip.Header
	switch x := m.(type) {
	case *sip.Request:
		b.WriteString(x.StartLine())
		hs = x.Headers()
	case *sip.Response:
		b.WriteString(x.StartLine())
		hs = x.Headers()
	}
	b.WriteString("\n")
	for _, h := range hs {
		b.WriteString(h.Name() + ": " + h.Value() + "\n")
	}
	b.WriteString("\n")
	b.Write(m.Body())
	return b.String()
}

// FuzzParseIP: parseIP agrees with netip.ParseAddr (unmapped).
func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", "::1", "::ffff:1.2.3.4", "1..2.3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseIP([]byte(s))
		want, err := netip.ParseAddr(s)
		if ok != (err == nil) || ok && got != want.Unmap() {
			t.Fatalf("parseIP(%q) = %v %v; ParseAddr: %v %v", s, got, ok, want, err)
		}
	})
}
