// Package gateway_test runs the same calls through every edge (SIP, the
// Twilio voice webhook, Telnyx Call Control) and asserts that they make the
// same decision: routing.Decide is the only place a call is decided.
package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/hook"
	"github.com/callgate/callgate/gateway/sip"
	"github.com/callgate/callgate/gateway/webhook"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/routing"
)

func init() {
	gosip.SetDefaultLogger(slog.New(slog.DiscardHandler))
}

// Numbers of the shared table.
const (
	numPurchased  = "+12282001234" // w, agent a1
	numImported   = "+12282001235" // w, agent a1, imported
	numUnassigned = "+12282001236" // w, no agent
	numSuspended  = "+12282001237" // w, agent a1, suspended
	numReleasing  = "+12282001238" // w, agent a1, releasing
	numNoEndpoint = "+12282001239" // w, agent a0 without endpoints
	numUnknown    = "+19995550100"
	numBusiness   = "+14155550100" // w's business line forwarding to numPurchased
	numForeign    = "+14155550101" // w2's forwarding entry naming numPurchased (w's number)
	numCaller     = "+15005550006"
	numHookRoute  = "+12282001240" // w, agent a1, a routing hook that routes to agent a2
	numHookReject = "+12282001241" // w, agent a1, a routing hook that rejects (480)

	twilioToken = "12345"
)

// view is what an edge's answer says about the decision, in terms every
// edge can express. With media relayed through the SIP edge, the webhook
// edges leave agent, region and forwarding headers to the SIP edge, so
// those are compared only for direct media.
type view struct {
	Outcome        string // route, not_ours (404), unavailable (480), no_endpoint (503)
	Number         string
	Agent          string
	Region         string
	ForwardedFrom  string
	OriginalCalled string
	Origin         string // from the started event
	Workspace      string // from the started event
	Media          string
}

type testCase struct {
	name      string
	called    string
	diversion string // a business line the call was forwarded from ("" none)
	relay     bool   // on the node whose media.mode is relay
	want      view
}

func TestSameDecisionOnEveryEdge(t *testing.T) {
	agent := newAgent(t)
	table := buildTable(agent)
	addHookNumbers(t, table)
	nodes := map[bool]*node{false: startNode(t, table, ""), true: startNode(t, table, routing.MediaRelay)}
	carrier := newCarrier(t)

	routed := func(number, origin, fwd, orig string) view {
		return view{Outcome: "route", Number: number, Agent: "a1", Region: "eu", ForwardedFrom: fwd, OriginalCalled: orig,
			Origin: origin, Workspace: "w", Media: routing.MediaDirect}
	}
	for _, tc := range []testCase{
		{name: "purchased number assigned", called: numPurchased,
			want: routed(numPurchased, routing.OriginPurchased, "", "")},
		{name: "imported number", called: numImported,
			want: routed(numImported, routing.OriginImported, "", "")},
		{name: "forwarded via Diversion from a registered business line", called: numPurchased, diversion: numBusiness,
			want: routed(numPurchased, routing.OriginForwarded, numBusiness, numBusiness)},
		// A forwarding entry of another workspace naming our number is
		// ignored: the call is the number's own (not attributed to the
		// line), as the webhook edge did; SIP used to attribute it.
		{name: "forwarding entry in another workspace", called: numPurchased, diversion: numForeign,
			want: routed(numPurchased, routing.OriginPurchased, "", numForeign)},
		// ... and it does not make an unknown number ours (SIP used to
		// route it, the webhook edge routed it without attribution).
		{name: "unknown number forwarded by another workspace's line", called: numUnknown, diversion: numForeign,
			want: view{Outcome: "not_ours"}},
		{name: "unknown number forwarded by a registered line", called: numUnknown, diversion: numBusiness,
			want: routed(numPurchased, routing.OriginForwarded, numBusiness, numBusiness)},
		{name: "unassigned", called: numUnassigned, want: view{Outcome: "unavailable"}},
		{name: "suspended", called: numSuspended, want: view{Outcome: "unavailable"}},
		{name: "releasing", called: numReleasing, want: view{Outcome: "unavailable"}},
		{name: "unknown", called: numUnknown, want: view{Outcome: "not_ours"}},
		{name: "no healthy endpoint", called: numNoEndpoint, want: view{Outcome: "no_endpoint"}},
		{name: "media mode default relay", called: numPurchased, relay: true,
			want: view{Outcome: "route", Number: numPurchased, Origin: routing.OriginPurchased, Workspace: "w", Media: routing.MediaRelay}},
		{name: "media mode default direct", called: numPurchased,
			want: routed(numPurchased, routing.OriginPurchased, "", "")},
		{name: "routing hook routes to another agent", called: numHookRoute,
			want: view{Outcome: "route", Number: numHookRoute, Agent: "a2", Region: "us", Origin: routing.OriginPurchased,
				Workspace: "w", Media: routing.MediaDirect}},
		{name: "routing hook rejects", called: numHookReject, want: view{Outcome: "unavailable"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := nodes[tc.relay]
			for _, edge := range []struct {
				name string
				run  func(*testing.T, *node, testCase) view
			}{
				{"sip", func(t *testing.T, n *node, tc testCase) view { return carrier.call(t, n, agent, tc) }},
				{"twilio", twilioCall},
				{"telnyx", telnyxCall},
			} {
				got := edge.run(t, n, tc)
				if got.Media == routing.MediaRelay {
					got.Agent, got.Region, got.ForwardedFrom, got.OriginalCalled = "", "", "", ""
				}
				if got != tc.want {
					t.Errorf("%s edge decided\n  %+v\nwant\n  %+v", edge.name, got, tc.want)
				}
			}
		})
	}
}

func buildTable(agent *agentUA) *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Endpoints: []routing.Endpoint{
		{Region: "eu", URI: fmt.Sprintf("sip:bot@%s;transport=udp", agent.addr)}}})
	b.AddAgent(routing.Agent{ID: "a0", Workspace: "w"})
	b.AddAgent(routing.Agent{ID: "a2", Workspace: "w", Endpoints: []routing.Endpoint{
		{Region: "us", URI: fmt.Sprintf("sip:bot2@%s;transport=udp", agent.addr)}}})
	b.AddAgent(routing.Agent{ID: "b1", Workspace: "w2", Endpoints: []routing.Endpoint{
		{Region: "us", URI: fmt.Sprintf("sip:other@%s;transport=udp", agent.addr)}}})
	num := func(e164, origin, status, agentID string) {
		b.AddNumber(routing.Number{E164: e164, Workspace: "w", Carrier: "twilio", Origin: origin, Status: status, AgentID: agentID})
	}
	num(numPurchased, routing.OriginPurchased, routing.StatusActive, "a1")
	num(numImported, routing.OriginImported, routing.StatusActive, "a1")
	num(numUnassigned, routing.OriginPurchased, routing.StatusActive, "")
	num(numSuspended, routing.OriginPurchased, routing.StatusSuspended, "a1")
	num(numReleasing, routing.OriginPurchased, "releasing", "a1")
	num(numNoEndpoint, routing.OriginPurchased, routing.StatusActive, "a0")
	b.AddForward(routing.Forward{Workspace: "w", BusinessNumber: numBusiness, GatewayNumber: numPurchased})
	b.AddForward(routing.Forward{Workspace: "w2", BusinessNumber: numForeign, GatewayNumber: numPurchased})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

// node is one gateway: a SIP edge and a webhook edge sharing a table and
// the node's media.mode.
type node struct {
	sip     *sip.Server
	anchor  *anchor
	wh      *webhook.Handler
	whReg   *prometheus.Registry
	events  *recorder
	cc      *fakeCC
	telnyx  ed25519.PrivateKey
	sipEdge string
}

func startNode(t *testing.T, table *routing.Table, mediaMode string) *node {
	t.Helper()
	n := &node{anchor: &anchor{ids: map[string]bool{}}, events: &recorder{}, cc: &fakeCC{}, whReg: prometheus.NewRegistry()}
	cfg := sip.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Region = "test"
	cfg.Probe.Disabled = true
	hc, err := hook.New(hook.Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := sip.New(cfg, sip.Deps{Table: table, Events: n.events, Log: slog.New(slog.DiscardHandler),
		Registerer: prometheus.NewRegistry(), Media: n.anchor, MediaMode: mediaMode, Hook: hc})
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
			return errors.New("SIP edge not ready")
		}
		return nil
	})
	n.sip = s
	n.sipEdge = s.UDPAddr().String()

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	n.telnyx = priv
	wcfg := webhook.Config{PublicURL: "https://gw.example.com", Region: "test", SIPEdge: n.sipEdge}
	wcfg.Twilio.AuthToken = twilioToken
	wcfg.Telnyx.PublicKey = base64.StdEncoding.EncodeToString(pub)
	wh, err := webhook.New(wcfg, webhook.Deps{Table: table, Events: n.events, CallControl: n.cc,
		Registerer: n.whReg, MediaMode: mediaMode, Hook: hc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wh.Close() })
	n.wh = wh
	return n
}

// outcomeOf maps a webhook result label to the decision's outcome.
func outcomeOf(result string) string {
	switch result {
	case webhook.ResultOK:
		return "route"
	case webhook.ResultUnknownNumber:
		return "not_ours"
	case webhook.ResultUnassigned, webhook.ResultSuspended, webhook.ResultHookReject:
		return "unavailable"
	case webhook.ResultNoEndpoint:
		return "no_endpoint"
	}
	return "result " + result
}

// serve runs one webhook request through the handler and returns the
// response and the result it counted.
func (n *node) serve(t *testing.T, req *http.Request) (*httptest.ResponseRecorder, string) {
	t.Helper()
	before := n.results(t)
	rec := httptest.NewRecorder()
	n.wh.ServeHTTP(rec, req)
	after := n.results(t)
	for k, v := range after {
		if v > before[k] {
			return rec, k
		}
	}
	t.Fatalf("no result counted (status %d: %s)", rec.Code, rec.Body.String())
	return nil, ""
}

func (n *node) results(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := n.whReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "callgate_webhook_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

// started returns the started event of a call.
func (n *node) started(t *testing.T, callID string) calls.Event {
	t.Helper()
	var ev calls.Event
	checkFor(t, 5*time.Second, func() error {
		var ok bool
		if ev, ok = n.events.find(calls.Started, callID); !ok {
			return fmt.Errorf("no started event for %s", callID)
		}
		return nil
	})
	return ev
}

// routedView fills a routed view from the X-Callgate headers and the
// target.
func (n *node) routedView(t *testing.T, callID, target string, get func(string) string) view {
	v := view{Outcome: "route", Number: get(webhook.HeaderNumber), Agent: get(webhook.HeaderAgent),
		Region: get(webhook.HeaderRegion), ForwardedFrom: get(webhook.HeaderForwardedFrom),
		OriginalCalled: get(webhook.HeaderOriginalCalled), Media: routing.MediaDirect}
	if u, ok := strings.CutPrefix(target, "sip:"); ok {
		if user, host, ok := strings.Cut(u, "@"); ok && strings.HasPrefix(host, n.sipEdge) {
			v.Media, v.Number = routing.MediaRelay, user
		}
	}
	ev := n.started(t, callID)
	v.Origin, v.Workspace = ev.Origin, ev.Workspace
	return v
}

var callSeq struct {
	sync.Mutex
	n int
}

func newID(prefix string) string {
	callSeq.Lock()
	defer callSeq.Unlock()
	callSeq.n++
	return prefix + strconv.Itoa(callSeq.n)
}

// twilioCall posts a signed voice webhook and reads the TwiML.
func twilioCall(t *testing.T, n *node, tc testCase) view {
	t.Helper()
	sid := newID("CA")
	params := url.Values{"CallSid": {sid}, "AccountSid": {"AC1"}, "From": {numCaller}, "To": {tc.called},
		"Direction": {"inbound"}, "CallStatus": {"ringing"}}
	if tc.diversion != "" {
		params.Set("ForwardedFrom", tc.diversion)
	}
	body := params.Encode()
	req := httptest.NewRequest(http.MethodPost, webhook.PathTwilioVoice, strings.NewReader(body))
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Twilio-Signature", twilioSign(twilioToken, "https://gw.example.com"+webhook.PathTwilioVoice, params))
	rec, result := n.serve(t, req)
	var doc struct {
		Dial *struct {
			Sip string `xml:"Sip"`
		} `xml:"Dial"`
		Reject *struct {
			Reason string `xml:"reason,attr"`
		} `xml:"Reject"`
	}
	if err := xml.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("twilio: TwiML %q: %v", rec.Body.String(), err)
	}
	out := outcomeOf(result)
	switch {
	case out == "route" && doc.Dial != nil:
		target, hq, _ := strings.Cut(strings.TrimSpace(doc.Dial.Sip), "?")
		hs, err := url.ParseQuery(hq)
		if err != nil {
			t.Fatalf("twilio: <Sip> headers %q: %v", hq, err)
		}
		return n.routedView(t, sid, target, hs.Get)
	case out == "no_endpoint" && doc.Reject != nil && doc.Reject.Reason == "busy",
		out != "route" && out != "no_endpoint" && doc.Reject != nil && doc.Reject.Reason == "rejected":
		return view{Outcome: out}
	}
	t.Fatalf("twilio: result %s with TwiML %s", result, rec.Body.String())
	return view{}
}

func twilioSign(token, u string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(u)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteString(params.Get(k))
	}
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// telnyxCall posts a signed call.initiated and reads what Call Control
// was asked to do.
func telnyxCall(t *testing.T, n *node, tc testCase) view {
	t.Helper()
	ccID := newID("v3:cc")
	type nv struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	payload := map[string]any{"call_control_id": ccID, "call_session_id": ccID, "connection_id": "conn1",
		"from": numCaller, "to": tc.called, "direction": "incoming", "state": "parked"}
	if tc.diversion != "" {
		payload["sip_headers"] = []nv{{"Diversion", "<sip:" + tc.diversion + "@carrier.example>;reason=unconditional"}}
	}
	body, err := json.Marshal(map[string]any{"data": map[string]any{"event_type": "call.initiated", "id": newID("ev"),
		"payload": payload}})
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req := httptest.NewRequest(http.MethodPost, webhook.PathTelnyxCallControl, strings.NewReader(string(body)))
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Telnyx-Timestamp", ts)
	req.Header.Set("Telnyx-Signature-Ed25519",
		base64.StdEncoding.EncodeToString(ed25519.Sign(n.telnyx, append([]byte(ts+"|"), body...))))
	_, result := n.serve(t, req)
	out := outcomeOf(result)
	switch out {
	case "not_ours":
		return view{Outcome: out}
	case "route":
		// Call Control asks a routing hook after answering the webhook:
		// its reject comes as a Call Control reject
		if rj, ok := n.cc.waitTransferOrReject(t, ccID); ok {
			if rj.Cause != "CALL_REJECTED" {
				t.Fatalf("telnyx: hook reject cause %s", rj.Cause)
			}
			return view{Outcome: "unavailable"}
		}
		tr := n.cc.waitTransfer(t, ccID)
		hs := map[string]string{}
		for _, h := range tr.Headers {
			hs[h.Name] = h.Value
		}
		return n.routedView(t, ccID, tr.To, func(k string) string { return hs[k] })
	}
	rj := n.cc.waitReject(t, ccID)
	switch {
	case out == "no_endpoint" && rj.Cause == "USER_BUSY", out == "unavailable" && rj.Cause == "CALL_REJECTED":
		return view{Outcome: out}
	}
	t.Fatalf("telnyx: result %s, reject cause %s", result, rj.Cause)
	return view{}
}

// fakeCC records Call Control commands.
type fakeCC struct {
	mu        sync.Mutex
	transfers []webhook.Transfer
	rejects   []webhook.Reject
}

func (f *fakeCC) Transfer(_ context.Context, tr webhook.Transfer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.transfers = append(f.transfers, tr)
	return nil
}

func (f *fakeCC) Reject(_ context.Context, r webhook.Reject) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rejects = append(f.rejects, r)
	return nil
}

func (f *fakeCC) waitTransfer(t *testing.T, id string) webhook.Transfer {
	t.Helper()
	var out webhook.Transfer
	checkFor(t, 5*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, tr := range f.transfers {
			if tr.CallControlID == id {
				out = tr
				return nil
			}
		}
		return fmt.Errorf("no transfer of %s", id)
	})
	return out
}

// waitTransferOrReject waits for a transfer or a reject of id: the
// reject and true when it was rejected.
func (f *fakeCC) waitTransferOrReject(t *testing.T, id string) (webhook.Reject, bool) {
	t.Helper()
	var rj webhook.Reject
	var rejected bool
	checkFor(t, 5*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, r := range f.rejects {
			if r.CallControlID == id {
				rj, rejected = r, true
				return nil
			}
		}
		for _, tr := range f.transfers {
			if tr.CallControlID == id {
				return nil
			}
		}
		return fmt.Errorf("no transfer or reject of %s", id)
	})
	return rj, rejected
}

func (f *fakeCC) waitReject(t *testing.T, id string) webhook.Reject {
	t.Helper()
	var out webhook.Reject
	checkFor(t, 5*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, r := range f.rejects {
			if r.CallControlID == id {
				out = r
				return nil
			}
		}
		return fmt.Errorf("no reject of %s", id)
	})
	return out
}

// anchor is a media relay that only records which calls were relayed.
type anchor struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (a *anchor) NewSession(callID string, _ func()) (sip.MediaSession, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids[callID] = true
	return session{}, nil
}

func (a *anchor) relayed(callID string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ids[callID]
}

type session struct{}

func (session) RewriteOffer(b []byte) ([]byte, error)  { return b, nil }
func (session) RewriteAnswer(b []byte) ([]byte, error) { return b, nil }
func (session) Close() any                             { return nil }

// recorder keeps lifecycle events.
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
		if e.Kind == kind && e.CallID == callID {
			return e, true
		}
	}
	return calls.Event{}, false
}

// agentUA is an agent endpoint on a raw UDP socket: it keeps every INVITE
// and answers 486 Busy Here (never failed over), which ends the call.
type agentUA struct {
	pc   net.PacketConn
	addr string
	mu   sync.Mutex
	got  map[string]*gosip.Request // by Call-ID
}

func newAgent(t *testing.T) *agentUA {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &agentUA{pc: pc, addr: pc.LocalAddr().String(), got: map[string]*gosip.Request{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg, err := gosip.ParseMessage(append([]byte(nil), buf[:n]...))
			if err != nil {
				continue
			}
			req, ok := msg.(*gosip.Request)
			if !ok || req.Method != gosip.INVITE {
				continue
			}
			a.mu.Lock()
			a.got[req.CallID().Value()] = req
			a.mu.Unlock()
			res := gosip.NewResponseFromRequest(req, 486, "Busy Here", nil)
			_, _ = pc.WriteTo([]byte(res.String()), from)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return a
}

func (a *agentUA) invite(callID string) *gosip.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got[callID]
}

// carrierUA sends INVITEs from a raw UDP socket, as a trunk would.
type carrierUA struct {
	pc net.PacketConn
}

func newCarrier(t *testing.T) *carrierUA {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &carrierUA{pc: pc}
}

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// call sends an INVITE to the node's SIP edge, waits for the final
// response (ACKing it) and reads the decision from it and from what the
// agent received.
func (c *carrierUA) call(t *testing.T, n *node, agent *agentUA, tc testCase) view {
	t.Helper()
	callID := newID("call-") + "@carrier.example"
	branch := "z9hG4bK" + hex.EncodeToString([]byte(callID))
	me := c.pc.LocalAddr().String()
	edge := n.sipEdge
	head := fmt.Sprintf("Via: SIP/2.0/UDP %s;branch=%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:%s@carrier.example>;tag=c1\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: %s\r\n", me, branch, numCaller, tc.called, edge, callID)
	var b strings.Builder
	fmt.Fprintf(&b, "INVITE sip:%s@%s SIP/2.0\r\n%sCSeq: 1 INVITE\r\nContact: <sip:carrier@%s>\r\n", tc.called, edge, head, me)
	if tc.diversion != "" {
		fmt.Fprintf(&b, "Diversion: <sip:%s@carrier.example>;reason=unconditional\r\n", tc.diversion)
	}
	fmt.Fprintf(&b, "Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(testSDP), testSDP)
	to, err := net.ResolveUDPAddr("udp", edge)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.pc.WriteTo([]byte(b.String()), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(10 * time.Second)
	var res *gosip.Response
	for res == nil {
		_ = c.pc.SetReadDeadline(deadline)
		nr, _, err := c.pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("sip: no final response to %s: %v", callID, err)
		}
		msg, err := gosip.ParseMessage(append([]byte(nil), buf[:nr]...))
		if err != nil {
			continue
		}
		if r, ok := msg.(*gosip.Response); ok && r.CallID().Value() == callID && r.StatusCode >= 200 {
			res = r
		}
	}
	toHdr := res.To().Value()
	ack := fmt.Sprintf("ACK sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=%s\r\nMax-Forwards: 70\r\n"+
		"From: <sip:%s@carrier.example>;tag=c1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		tc.called, edge, me, branch, numCaller, toHdr, callID)
	_, _ = c.pc.WriteTo([]byte(ack), to)

	switch res.StatusCode {
	case 404:
		return view{Outcome: "not_ours"}
	case 480:
		return view{Outcome: "unavailable"}
	case 503:
		return view{Outcome: "no_endpoint"}
	case 486:
	default:
		t.Fatalf("sip: final response %d %s", res.StatusCode, res.Reason)
	}
	inv := agent.invite(callID)
	if inv == nil {
		t.Fatalf("sip: 486 but the agent got no INVITE")
	}
	get := func(name string) string {
		if h := inv.GetHeader(name); h != nil {
			return h.Value()
		}
		return ""
	}
	v := n.routedView(t, callID, "", get)
	if n.anchor.relayed(callID) {
		v.Media = routing.MediaRelay
	}
	return v
}

// checkFor is testwait.CheckFor polling every 5 ms.
func checkFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	testwait.CheckFor(t, timeout, 5*time.Millisecond, f)
}

// addHookNumbers adds numHookRoute and numHookReject to table, each with
// its own routing hook (an in-test HTTP server on 127.0.0.1).
func addHookNumbers(t *testing.T, table *routing.Table) {
	t.Helper()
	hookServer := func(answer string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			_, _ = io.WriteString(w, answer)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	num := func(e164, url string) routing.Number {
		return routing.Number{E164: e164, Workspace: "w", Carrier: "twilio", Origin: routing.OriginPurchased,
			Status: routing.StatusActive, AgentID: "a1", Control: &routing.NumberControl{Hook: &routing.Hook{URL: url}}}
	}
	table.Store(table.Load().WithNumbers([]routing.Number{
		num(numHookRoute, hookServer(`{"action":"route","agent_id":"a2"}`)),
		num(numHookReject, hookServer(`{"action":"reject","status":480,"reason":"Closed"}`)),
	}, nil))
}
