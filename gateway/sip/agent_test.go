package sip

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/gateway/media"
	"github.com/callgate/callgate/gateway/sip/transport/dnstest"
	"github.com/callgate/callgate/routing"
)

// Numbers and credentials of the outbound tests (workspace "w" unless
// said otherwise).
const (
	numSandboxOut = "+12282001240" // sandbox, active
	numTwilioOut  = "+12282001241" // twilio, integration i1, voice region us1
	numOtherWS    = "+12282001250" // another workspace's number
	numSuspOut    = "+12282001242" // sandbox, suspended
	destUS        = "+14155550123"
	destPremium   = "+19002001234"
	destGB        = "+442071234567"
	agentUser     = "agent1"
	agentPass     = "s3cret-Pass-1"
)

func hexHash(h func() hash.Hash, parts ...string) string {
	x := h()
	x.Write([]byte(strings.Join(parts, ":")))
	return hex.EncodeToString(x.Sum(nil))
}

// outTable is the routing table of the outbound tests: agent a1 (its
// endpoint agentEP, for inbound calls), the numbers above, the Twilio
// integration i1 with termination URIs twilioTerm, agent1's credential.
type outTable struct {
	agentEP    routing.Endpoint
	twilioTerm []string
	termUser   string // the Twilio termination's digest credentials
	termPass   string
	outbound   routing.Outbound
	cidrs      []string
	media      string
}

func (o outTable) build() *routing.Table {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w", Name: "bot", Endpoints: []routing.Endpoint{o.agentEP},
		SourceCIDRs: o.cidrs, Media: o.media})
	b.AddNumber(routing.Number{E164: numPurchased, Workspace: "w", Carrier: "sandbox", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	b.AddNumber(routing.Number{E164: numSandboxOut, Workspace: "w", Carrier: "sandbox", Origin: routing.OriginPurchased,
		Status: routing.StatusActive})
	b.AddNumber(routing.Number{E164: numSuspOut, Workspace: "w", Carrier: "sandbox", Origin: routing.OriginPurchased,
		Status: routing.StatusSuspended})
	b.AddNumber(routing.Number{E164: numTwilioOut, Workspace: "w", Carrier: "twilio", Origin: routing.OriginImported,
		Status: routing.StatusActive, IntegrationID: "i1", VoiceRegion: "us1"})
	b.AddNumber(routing.Number{E164: numOtherWS, Workspace: "w2", Carrier: "sandbox", Origin: routing.OriginPurchased,
		Status: routing.StatusActive})
	b.AddForward(routing.Forward{Workspace: "w", BusinessNumber: numBusiness, GatewayNumber: numSandboxOut})
	b.AddIntegration(routing.Integration{ID: "i1", Workspace: "w", Carrier: "twilio",
		Termination: routing.Termination{URIs: o.twilioTerm, Username: o.termUser, Password: o.termPass}})
	b.AddWorkspace(routing.Workspace{ID: "w", Outbound: o.outbound})
	b.AddCredential(routing.SIPCredential{Username: agentUser, Workspace: "w", AgentID: "a1", Realm: "callgate",
		HA1MD5: hexHash(md5.New, agentUser, "callgate", agentPass), HA1SHA256: hexHash(sha256.New, agentUser, "callgate", agentPass)})
	t := &routing.Table{}
	t.Store(b.Build())
	return t
}

// runAgentEdge starts an edge with an agent listener and the sandbox
// termination sandboxTerm.
func runAgentEdge(t testing.TB, table *routing.Table, sandboxTerm string, tweak func(*Config), deps func(*Deps)) *testEdge {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Agents.Addr = "127.0.0.1:0"
	cfg.Region = "test"
	cfg.InviteTimeout = 400 * time.Millisecond
	cfg.Probe.Disabled = true
	if tweak != nil {
		tweak(&cfg)
	}
	d := Deps{Table: table, SandboxTermination: sandboxTerm}
	if deps != nil {
		deps(&d)
	}
	return startEdge(t, cfg, d)
}

// agentURI is dest at the edge's agent listener.
func (e *testEdge) agentURI(dest string) sip.Uri {
	return sip.Uri{Scheme: "sip", User: dest, Host: "127.0.0.1", Port: int(e.AgentUDPAddr().Port())}
}

// dial places an outbound call from agent UA u (caller ID from) to dest
// through e with the given password ("" : no credentials), and waits
// for the answer or the final refusal.
func (u *testUA) dial(ctx context.Context, e *testEdge, from, dest, pass string, hdrs ...sip.Header) (*sipgo.DialogClientSession, error) {
	fh := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: from, Host: "127.0.0.1"},
		Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(10)}}}
	hdrs = append(hdrs, fh, sip.NewHeader("Content-Type", "application/sdp"))
	ds, err := u.dcc.Invite(ctx, e.agentURI(dest), []byte(testSDP), hdrs...)
	if err != nil {
		return nil, err
	}
	err = ds.WaitAnswer(ctx, sipgo.AnswerOptions{Username: agentUser, Password: pass})
	return ds, err
}

// noInvite fails the test if u received an INVITE within d.
func noInvite(t testing.TB, u *testUA, d time.Duration) {
	t.Helper()
	select {
	case r := <-u.invites:
		t.Fatalf("the PSTN received an INVITE it must not: %s", r.StartLine())
	case <-time.After(d):
	}
}

func reasonOf(err error) string {
	var de *sipgo.ErrDialogResponse
	if errors.As(err, &de) {
		return de.Res.Reason
	}
	return ""
}

func rrPorts(hs []sip.Header) []int {
	var ports []int
	for _, h := range hs {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			ports = append(ports, rr.Address.Port)
		}
	}
	return ports
}

func sandboxURI(u *testUA) string { return fmt.Sprintf("sip:pstn@127.0.0.1:%d", u.port) }

// TestOutboundCallFromAgent: an agent authenticated by digest (SHA-256,
// sipgo's client) calls a PSTN number from its sandbox number; the call
// leaves through the sandbox termination to the "PSTN", is answered,
// record-routed through both listeners, and BYE passes both ways.
func TestOutboundCallFromAgent(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local")}.build(), sandboxURI(pstn), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ds, err := agent.dial(ctx, e, numSandboxOut, destUS, agentPass)
	if err != nil {
		t.Fatalf("outbound call: %v", err)
	}
	inv := recv(t, pstn.invites, "INVITE at the PSTN")
	if inv.Recipient.User != destUS || inv.Recipient.Port != pstn.port {
		t.Errorf("PSTN Request-URI %s, want %s at port %d", inv.Recipient.String(), destUS, pstn.port)
	}
	for _, h := range []string{"Proxy-Authorization", "X-Callgate-Number", "X-Callgate-Agent"} {
		if inv.GetHeader(h) != nil {
			t.Errorf("the carrier got %s: %s", h, header(inv, h))
		}
	}
	carrierPort, agentPort := int(e.UDPAddr().Port()), int(e.AgentUDPAddr().Port())
	if got := rrPorts(inv.Headers()); len(got) != 2 || got[0] != carrierPort || got[1] != agentPort {
		t.Errorf("Record-Route ports at the PSTN %v, want [%d %d] (carrier side on top)", got, carrierPort, agentPort)
	}
	if v := inv.Via(); v.Port != carrierPort {
		t.Errorf("INVITE left from port %d, want the carrier listener %d", v.Port, carrierPort)
	}
	// the agent's route set starts at the agent listener
	if got := rrPorts(ds.InviteResponse.Headers()); len(got) != 2 || got[1] != agentPort {
		t.Errorf("Record-Route ports in the agent's 200 %v, want the agent listener %d last", got, agentPort)
	}
	if err := ds.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	recv(t, pstn.acks, "ACK at the PSTN")
	callID := ds.InviteRequest.CallID().Value()
	ans := e.events.waitEvent(t, calls.Answered, callID)
	if ans.Direction != calls.Outbound || ans.From != numSandboxOut || ans.To != destUS || ans.Workspace != "w" ||
		ans.Agent != "a1" || ans.Carrier != "sandbox" || !strings.Contains(ans.Endpoint, destUS) {
		t.Errorf("answered event %+v", ans)
	}
	if got := testutil.ToFloat64(e.metrics.OutboundActive); got != 1 {
		t.Errorf("outbound_active_calls %v, want 1", got)
	}
	if n, in := histSamples(t, e.metrics.OutboundSetupAnswer), histSamples(t, e.metrics.SetupAnswer); n != 1 || in != 0 {
		t.Errorf("setup observations: outbound %d, inbound %d; want 1 and 0 (PSTN answer times stay out of the inbound alerts)", n, in)
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("agent's BYE: %v", err)
	}
	recv(t, pstn.byes, "BYE at the PSTN")
	end := e.events.waitEvent(t, calls.Ended, callID)
	if end.Reason != "bye_caller" || end.Direction != calls.Outbound {
		t.Errorf("ended event %+v", end)
	}

	// the PSTN hangs up the next call: its BYE reaches the agent
	ds2, err := agent.dial(ctx, e, numSandboxOut, destUS, agentPass)
	if err != nil {
		t.Fatalf("second call: %v", err)
	}
	_ = ds2.Ack(ctx)
	inv2 := recv(t, pstn.invites, "second INVITE")
	recv(t, pstn.acks, "second ACK")
	var sess *sipgo.DialogServerSession
	checkFor(t, 5*time.Second, func() error {
		if sess = pstn.session(inv2.CallID().Value()); sess == nil {
			return errors.New("no PSTN dialog yet")
		}
		return nil
	})
	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("PSTN BYE: %v", err)
	}
	recv(t, agent.byes, "BYE at the agent")
	if end := e.events.waitEvent(t, calls.Ended, inv2.CallID().Value()); end.Reason != "bye_agent" {
		t.Errorf("second call ended %+v", end)
	}
	checkFor(t, 5*time.Second, func() error {
		if n := testutil.ToFloat64(e.metrics.OutboundActive); n != 0 {
			return fmt.Errorf("outbound_active_calls %v", n)
		}
		return nil
	})
}

// TestOutboundRefusals: caller ID and destination policy refusals name
// the rule, and nothing reaches the PSTN.
func TestOutboundRefusals(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local")}.build(), sandboxURI(pstn), nil, nil)
	cases := []struct {
		name, from, dest string
		hdrs             []sip.Header
		code             int
		phrase           string
	}{
		{"spoofed caller ID (another workspace's number)", numOtherWS, destUS, nil, 403, "Caller ID not allowed"},
		{"caller ID not ours at all", "+13125550100", destUS, nil, 403, "Caller ID not allowed"},
		{"suspended caller ID", numSuspOut, destUS, nil, 403, "Caller ID not allowed"},
		{"P-Asserted-Identity wins over From", numSandboxOut, destUS,
			[]sip.Header{sip.NewHeader("P-Asserted-Identity", "<sip:"+numOtherWS+"@127.0.0.1>")}, 403, "Caller ID not allowed"},
		{"premium-rate destination", numSandboxOut, destPremium, nil, 403, "Premium-rate destination not allowed"},
		{"disallowed country", numSandboxOut, destGB, nil, 403, "Destination country not allowed"},
		{"not a number", numSandboxOut, "12", nil, 484, routing.RulePhrase(routing.RuleInvalidDestination)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := agent.dial(ctx, e, tc.from, tc.dest, agentPass, tc.hdrs...)
			if statusOf(err) != tc.code || reasonOf(err) != tc.phrase {
				t.Fatalf("got %v (%d %q), want %d %q", err, statusOf(err), reasonOf(err), tc.code, tc.phrase)
			}
			noInvite(t, pstn, 100*time.Millisecond)
		})
	}
	// a business line the workspace registered is a good caller ID
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := agent.dial(ctx, e, numBusiness, destUS, agentPass)
	if err != nil {
		t.Fatalf("call from the business line: %v", err)
	}
	_ = ds.Ack(ctx)
	if inv := recv(t, pstn.invites, "INVITE from the business line"); inv.From().Address.User != numBusiness {
		t.Errorf("From at the PSTN %s", inv.From().Address.String())
	}
	_ = ds.Bye(ctx)
	noInvite(t, pstn, 100*time.Millisecond)
}

// TestOutboundAllowedCountry: a workspace that allows GB reaches a GB
// number (the refusal above is the policy, not a broken path).
func TestOutboundAllowedCountry(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local"),
		outbound: routing.Outbound{AllowedCountries: []string{"US", "GB"}}}.build(), sandboxURI(pstn), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := agent.dial(ctx, e, numSandboxOut, destGB, agentPass)
	if err != nil {
		t.Fatalf("call to GB: %v", err)
	}
	_ = ds.Ack(ctx)
	if inv := recv(t, pstn.invites, "INVITE to GB"); inv.Recipient.User != destGB {
		t.Errorf("Request-URI %s", inv.Recipient.String())
	}
	_ = ds.Bye(ctx)
	// a national number is taken in the caller ID's country and sent on in E.164
	ds, err = agent.dial(ctx, e, numSandboxOut, "4155550123", agentPass)
	if err != nil {
		t.Fatalf("national-format call: %v", err)
	}
	_ = ds.Ack(ctx)
	if inv := recv(t, pstn.invites, "INVITE to a national number"); inv.Recipient.User != destUS {
		t.Errorf("Request-URI %s, want %s", inv.Recipient.String(), destUS)
	}
	_ = ds.Bye(ctx)
}

// TestAgentWrongPasswordRateLimited: each wrong password is challenged
// again (407) until the source has failed max_auth_failures times; then
// it gets 403 without a challenge, even with the right password, while
// another source still gets through.
func TestAgentWrongPasswordRateLimited(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local")}.build(), sandboxURI(pstn), func(c *Config) {
		c.Agents.MaxAuthFailures = 5
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// sipgo answers each challenge once more (two wrong responses a dial)
	for i := 1; i <= 2; i++ {
		_, err := agent.dial(ctx, e, numSandboxOut, destUS, "wrong")
		if statusOf(err) != 407 {
			t.Fatalf("wrong password %d: %v, want 407", i, err)
		}
	}
	_, err := agent.dial(ctx, e, numSandboxOut, destUS, "wrong")
	if statusOf(err) != 403 {
		t.Fatalf("fifth wrong password: %v, want 403", err)
	}
	if got := testutil.ToFloat64(e.metrics.AgentAuthFailures); got != 5 {
		t.Errorf("agent_auth_failures_total %v, want 5", got)
	}
	_, err = agent.dial(ctx, e, numSandboxOut, destUS, agentPass)
	if statusOf(err) != 403 {
		t.Fatalf("blocked source with the right password: %v, want 403 without challenge", err)
	}
	if got := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("auth_blocked")); got < 2 {
		t.Errorf("rejected_total{reason=auth_blocked} %v, want >= 2", got)
	}
	noInvite(t, pstn, 50*time.Millisecond)
	other := newUA(t, "127.0.0.2")
	ds, err := other.dial(ctx, e, numSandboxOut, destUS, agentPass)
	if err != nil {
		t.Fatalf("another source: %v", err)
	}
	_ = ds.Ack(ctx)
	recv(t, pstn.invites, "INVITE from the other source")
	_ = ds.Bye(ctx)
}

// TestAgentDigestMD5AndStale: the 407 offers SHA-256 then MD5 (qop=auth);
// an MD5 response is accepted; a response to an expired nonce of ours
// gets a new challenge with stale=true; a source outside the agent's
// source CIDRs gets 403.
func TestAgentDigestMD5AndStale(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:9"},
		cidrs: []string{"127.0.0.1/32"}}.build(), sandboxURI(pstn), nil, nil)
	agentAddr := net.UDPAddrFromAddrPort(e.AgentUDPAddr())
	send := func(r *rawUA, callID string, seq int, auth string) string {
		ruri := fmt.Sprintf("sip:%s@127.0.0.1:%d", destUS, e.AgentUDPAddr().Port())
		extra := ""
		if auth != "" {
			extra = "Proxy-Authorization: " + auth + "\r\n"
		}
		r.send(fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK-%s-%d;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:%s@127.0.0.1>;tag=a-%s\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: %s\r\n"+
			"CSeq: %d INVITE\r\nContact: <sip:agent@127.0.0.1:%d>\r\n%sContent-Length: 0\r\n\r\n",
			ruri, r.port(), callID, seq, numSandboxOut, callID, destUS, callID, seq, r.port(), extra))
		return ruri
	}
	challenges := func(m string) []*digest.Challenge {
		var out []*digest.Challenge
		for _, l := range strings.Split(m, "\r\n") {
			if v, ok := strings.CutPrefix(l, "Proxy-Authenticate: "); ok {
				c, err := digest.ParseChallenge(v)
				if err != nil {
					t.Fatalf("challenge %q: %v", v, err)
				}
				out = append(out, c)
			}
		}
		return out
	}
	r := newRaw(t, "127.0.0.1", agentAddr)
	ruri := send(r, "md5-1", 1, "")
	res := r.readFinal(5 * time.Second)
	ch := challenges(res)
	if !strings.HasPrefix(res, "SIP/2.0 407 ") || len(ch) != 2 || ch[0].Algorithm != "SHA-256" || ch[1].Algorithm != "MD5" ||
		!ch[1].SupportsQOP("auth") || ch[0].Realm != "callgate" {
		t.Fatalf("challenge: %s", res)
	}
	cr, err := digest.Digest(ch[1], digest.Options{Method: "INVITE", URI: ruri, Username: agentUser, Password: agentPass, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	send(r, "md5-1", 2, cr.String())
	inv := recv(t, pstn.invites, "INVITE authenticated with MD5")
	if inv.Recipient.User != destUS {
		t.Errorf("Request-URI %s", inv.Recipient.String())
	}

	// a good response to an old nonce of ours: stale=true
	old := &digest.Challenge{Realm: "callgate", Nonce: e.ag.nonce(time.Now().Add(-agentNonceTTL - time.Minute)),
		Algorithm: "SHA-256", QOP: []string{"auth"}}
	cr, _ = digest.Digest(old, digest.Options{Method: "INVITE", URI: ruri, Username: agentUser, Password: agentPass, Count: 1})
	r2 := newRaw(t, "127.0.0.1", agentAddr)
	send(r2, "stale-1", 1, cr.String())
	res = r2.readFinal(5 * time.Second)
	if ch := challenges(res); !strings.HasPrefix(res, "SIP/2.0 407 ") || len(ch) != 2 || !ch[0].Stale {
		t.Fatalf("old nonce: %s", res)
	}
	if got := testutil.ToFloat64(e.metrics.AgentAuthFailures); got != 0 {
		t.Errorf("a stale nonce counted as a failure (%v)", got)
	}

	// from 127.0.0.2, outside the agent's source CIDRs
	r3 := newRaw(t, "127.0.0.2", agentAddr)
	send(r3, "cidr-1", 1, "")
	ch = challenges(r3.readFinal(5 * time.Second))
	cr, _ = digest.Digest(ch[0], digest.Options{Method: "INVITE", URI: ruri, Username: agentUser, Password: agentPass, Count: 1})
	send(r3, "cidr-1", 2, cr.String())
	if res := r3.readFinal(5 * time.Second); !strings.HasPrefix(res, "SIP/2.0 403 Source address not allowed") {
		t.Fatalf("outside source CIDRs: %s", statusLine(res))
	}
	noInvite(t, pstn, 50*time.Millisecond)
}

// TestCarrierListenerRefusesOutbound: the carrier-facing listener never
// places a call: an INVITE there for a number that is not ours gets 404
// and nothing reaches the termination, credentials or not.
func TestCarrierListenerRefusesOutbound(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:9"}}.build(),
		sandboxURI(pstn), nil, nil)
	carrier := newRaw(t, "127.0.0.1", net_(e))
	carrier.send(carrier.invite(e, destUS, "foreign-1", "Proxy-Authorization: Digest username=\"agent1\", realm=\"callgate\"\r\n"))
	if res := carrier.readFinal(5 * time.Second); !strings.HasPrefix(res, "SIP/2.0 404 ") {
		t.Fatalf("INVITE for a foreign number on the carrier listener: %s", statusLine(res))
	}
	noInvite(t, pstn, 200*time.Millisecond)
}

// TestOutboundCarrier503Failover: the first termination answers 503, the
// call goes on to the second, which answers.
func TestOutboundCarrier503Failover(t *testing.T) {
	first := newUA(t, "127.0.0.1", reject(503))
	second := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local"),
		twilioTerm: []string{sandboxURI(first), sandboxURI(second)}}.build(), "", nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := agent.dial(ctx, e, numTwilioOut, destUS, agentPass)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	_ = ds.Ack(ctx)
	recv(t, first.invites, "INVITE at the first termination")
	recv(t, second.invites, "INVITE at the second termination")
	_ = ds.Bye(ctx)
	recv(t, second.byes, "BYE at the second termination")

	// a 486 from the carrier goes back to the agent: no failover
	busy := newUA(t, "127.0.0.1", reject(486))
	spare := newUA(t, "127.0.0.1")
	e2 := runAgentEdge(t, outTable{agentEP: agent.endpoint("local"),
		twilioTerm: []string{sandboxURI(busy), sandboxURI(spare)}}.build(), "", nil, nil)
	if _, err := agent.dial(ctx, e2, numTwilioOut, destUS, agentPass); statusOf(err) != 486 {
		t.Fatalf("busy callee: %v, want 486", err)
	}
	recv(t, busy.invites, "INVITE at the busy termination")
	noInvite(t, spare, 200*time.Millisecond)
}

// TestOutboundTwilioEdge: a Twilio termination URI
// mytrunk.pstn.twilio.com is dialled at the edge of the number's voice
// region (us1: mytrunk.pstn.ashburn.twilio.com), resolved by DNS.
func TestOutboundTwilioEdge(t *testing.T) {
	d := dnstest.Run(t)
	d.Set("mytrunk.pstn.ashburn.twilio.com", "127.0.0.1", 60)
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local"),
		twilioTerm: []string{"sip:mytrunk.pstn.twilio.com:" + strconv.Itoa(pstn.port)}}.build(), "",
		withDNS(d, nil), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := agent.dial(ctx, e, numTwilioOut, destUS, agentPass)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	_ = ds.Ack(ctx)
	inv := recv(t, pstn.invites, "INVITE at the Twilio edge")
	if inv.Recipient.Host != "mytrunk.pstn.ashburn.twilio.com" || inv.Recipient.User != destUS {
		t.Errorf("Request-URI %s, want %s@mytrunk.pstn.ashburn.twilio.com", inv.Recipient.String(), destUS)
	}
	_ = ds.Bye(ctx)
	recv(t, pstn.byes, "BYE at the Twilio edge")
}

func TestTwilioLocalize(t *testing.T) {
	for _, tc := range []struct{ host, region, want string }{
		{"mytrunk.pstn.twilio.com", "us1", "mytrunk.pstn.ashburn.twilio.com"},
		{"mytrunk.pstn.twilio.com", "ie1", "mytrunk.pstn.dublin.twilio.com"},
		{"mytrunk.pstn.twilio.com", "au1", "mytrunk.pstn.sydney.twilio.com"},
		{"mytrunk.pstn.twilio.com", "frankfurt", "mytrunk.pstn.frankfurt.twilio.com"},
		{"mytrunk.pstn.twilio.com", "", "mytrunk.pstn.twilio.com"},
		{"mytrunk.pstn.twilio.com", "mars1", "mytrunk.pstn.twilio.com"},
		{"mytrunk.pstn.dublin.twilio.com", "us1", "mytrunk.pstn.dublin.twilio.com"}, // already localized
		{"sip.example.com", "us1", "sip.example.com"},
	} {
		if got := twilioLocalize(tc.host, twilioEdge(tc.region)); got != tc.want {
			t.Errorf("%s in %q: %s, want %s", tc.host, tc.region, got, tc.want)
		}
	}
}

// TestInboundCrossesListeners: with an agent listener, an inbound call is
// record-routed on both sides (agent side on top, toward the agent) and
// reaches the agent from the agent listener; the agent's BYE, sent by its
// route set to the agent listener, reaches the carrier.
func TestInboundCrossesListeners(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	carrier := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local")}.build(), "", nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e)
	inv := recv(t, agent.invites, "INVITE at the agent")
	carrierPort, agentPort := int(e.UDPAddr().Port()), int(e.AgentUDPAddr().Port())
	if got := rrPorts(inv.Headers()); len(got) != 2 || got[0] != agentPort || got[1] != carrierPort {
		t.Errorf("Record-Route ports at the agent %v, want [%d %d]", got, agentPort, carrierPort)
	}
	if v := inv.Via(); v.Port != agentPort {
		t.Errorf("INVITE reached the agent from port %d, want the agent listener %d", v.Port, agentPort)
	}
	if got := rrPorts(ds.InviteResponse.Headers()); len(got) != 2 || got[1] != carrierPort {
		t.Errorf("Record-Route ports at the carrier %v", got)
	}
	recv(t, agent.acks, "ACK at the agent")
	sess := agent.session(inv.CallID().Value())
	if sess == nil {
		t.Fatal("no agent dialog")
	}
	before := testutil.ToFloat64(e.metrics.Requests.WithLabelValues("BYE"))
	if err := sess.Bye(ctx); err != nil {
		t.Fatalf("agent's BYE: %v", err)
	}
	bye := recv(t, carrier.byes, "BYE at the carrier")
	if v := bye.Via(); v.Port != carrierPort {
		t.Errorf("BYE reached the carrier from port %d, want %d", v.Port, carrierPort)
	}
	if got := testutil.ToFloat64(e.metrics.Requests.WithLabelValues("BYE")); got != before+1 {
		t.Errorf("BYE requests %v → %v", before, got)
	}
	if ev := e.events.waitEvent(t, calls.Ended, inv.CallID().Value()); ev.Direction != calls.Inbound || ev.Reason != "bye_agent" {
		t.Errorf("ended %+v", ev)
	}
}

// TestEndCallByesBothWays: EndCall ends an answered outbound call with
// BYE to the agent and to the PSTN, with the reason given.
func TestEndCallByesBothWays(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local")}.build(), sandboxURI(pstn), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := agent.dial(ctx, e, numSandboxOut, destUS, agentPass)
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	recv(t, pstn.acks, "ACK at the PSTN")
	callID := ds.InviteRequest.CallID().Value()
	if e.EndCall("no-such-call", "credits_exhausted") {
		t.Error("EndCall of an unknown call reported true")
	}
	if !e.EndCall(callID, "credits_exhausted") {
		t.Fatal("EndCall: false")
	}
	recv(t, pstn.byes, "BYE at the PSTN")
	recv(t, agent.byes, "BYE at the agent")
	if ev := e.events.waitEvent(t, calls.Ended, callID); ev.Reason != "credits_exhausted" {
		t.Errorf("ended %+v", ev)
	}
}

// capLimiter admits up to max outbound calls at once (a stand-in for the
// cluster Limiter, to see the edge's side of the contract: 503 with
// Retry-After naming the rule, Release at the end).
type capLimiter struct {
	mu       sync.Mutex
	max, n   int
	released int
}

func (l *capLimiter) Admit(ws, dir string, caps calls.LimitCaps) (string, time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if dir != calls.Outbound || caps.MaxOutConcurrent != l.max {
		return "wrong_caps", time.Second, false
	}
	if l.n >= l.max {
		return "outbound.max_concurrent_calls", 2 * time.Second, false
	}
	l.n++
	return "", 0, true
}

func (l *capLimiter) Release(ws, dir string) {
	l.mu.Lock()
	l.n--
	l.released++
	l.mu.Unlock()
}

// TestOutboundConcurrentCap: the second concurrent call of a workspace
// capped at one gets 503 "Outbound concurrent call limit" with
// Retry-After; once the first ends its count is released.
func TestOutboundConcurrentCap(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	lim := &capLimiter{max: 1}
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local"),
		outbound: routing.Outbound{MaxConcurrentCalls: 1}}.build(), sandboxURI(pstn), nil,
		func(d *Deps) { d.Limits = lim })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds, err := agent.dial(ctx, e, numSandboxOut, destUS, agentPass)
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	var de *sipgo.ErrDialogResponse
	_, err = agent.dial(ctx, e, numSandboxOut, destUS, agentPass)
	if !errors.As(err, &de) || de.Res.StatusCode != 503 || de.Res.Reason != "Outbound concurrent call limit" ||
		header2(de.Res, "Retry-After") != "2" {
		t.Fatalf("second call: %v", err)
	}
	_ = ds.Bye(ctx)
	checkFor(t, 5*time.Second, func() error {
		lim.mu.Lock()
		defer lim.mu.Unlock()
		if lim.released != 1 || lim.n != 0 {
			return fmt.Errorf("released %d, counted %d", lim.released, lim.n)
		}
		return nil
	})
}

func header2(res *sip.Response, name string) string {
	if h := res.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// TestOutboundCarrierDigest: a termination that challenges (407) gets
// the INVITE once more with the integration's credentials, same Call-ID
// and the next CSeq; the agent never sees the challenge, and its ACK and
// BYE reach the carrier renumbered to match, the BYE's answer numbered
// back for the agent.
func TestOutboundCarrierDigest(t *testing.T) {
	const user, pass = "trunkuser", "trunkPass123"
	var mu sync.Mutex
	var invites []*sip.Request
	pstn := newUA(t, "127.0.0.1", func(u *testUA, req *sip.Request, tx sip.ServerTransaction) {
		mu.Lock()
		invites = append(invites, req.Clone())
		mu.Unlock()
		h := req.GetHeader("Proxy-Authorization")
		chal := &digest.Challenge{Realm: "sip.twilio.com", Nonce: "n0nce-1", Algorithm: "MD5", QOP: []string{"auth"}}
		if h == nil {
			res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
			res.AppendHeader(sip.NewHeader("Proxy-Authenticate", chal.String()))
			_ = tx.Respond(res)
			return
		}
		cr, err := digest.ParseCredentials(h.Value())
		if err != nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Auth", nil))
			return
		}
		want, _ := digest.Digest(chal, digest.Options{Method: "INVITE", URI: cr.URI, Username: user, Password: pass,
			Count: cr.Nc, Cnonce: cr.Cnonce})
		if cr.Username != user || cr.Response != want.Response {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 403, "Bad Credentials", nil))
			return
		}
		answer(u, req, tx)
	})
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local"), twilioTerm: []string{sandboxURI(pstn)},
		termUser: user, termPass: pass}.build(), "", nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var seen []int
	fh := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: numTwilioOut, Host: "127.0.0.1"},
		Params: sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(10)}}}
	ds, err := agent.dcc.Invite(ctx, e.agentURI(destUS), []byte(testSDP), fh, sip.NewHeader("Content-Type", "application/sdp"))
	if err != nil {
		t.Fatal(err)
	}
	err = ds.WaitAnswer(ctx, sipgo.AnswerOptions{Username: agentUser, Password: agentPass,
		OnResponse: func(r *sip.Response) error { seen = append(seen, r.StatusCode); return nil }})
	if err != nil {
		t.Fatalf("call: %v (responses %v)", err, seen)
	}
	for _, c := range seen[1:] { // the first 407 is ours, to the agent
		if c == 407 {
			t.Errorf("the carrier's challenge reached the agent: %v", seen)
		}
	}
	agentSeq := ds.InviteRequest.CSeq().SeqNo
	mu.Lock()
	if len(invites) != 2 || invites[1].CSeq().SeqNo != invites[0].CSeq().SeqNo+1 ||
		invites[1].CallID().Value() != invites[0].CallID().Value() || invites[0].CSeq().SeqNo != agentSeq {
		t.Fatalf("INVITEs at the carrier: %d (CSeq %v)", len(invites), invites)
	}
	carrierSeq := invites[1].CSeq().SeqNo
	mu.Unlock()
	if err := ds.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	// The ACK of the 2xx; the ACK of the 407 (hop by hop, the first
	// INVITE's CSeq) may reach the handler too when it comes late for the
	// UA's transaction (a 407 retransmitted under load).
	ack := recv(t, pstn.acks, "ACK at the carrier")
	if ack.CSeq().SeqNo == carrierSeq-1 {
		ack = recv(t, pstn.acks, "ACK of the 2xx at the carrier")
	}
	if ack.CSeq().SeqNo != carrierSeq {
		t.Errorf("ACK CSeq %d at the carrier, want %d (the INVITE it answered)", ack.CSeq().SeqNo, carrierSeq)
	}
	info := sip.NewRequest(sip.INFO, ds.InviteResponse.Contact().Address)
	res, err := ds.Do(ctx, info)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("INFO: %v %v", res, err)
	}
	if got := recv(t, pstn.others, "INFO at the carrier"); got.CSeq().SeqNo != info.CSeq().SeqNo+1 {
		t.Errorf("INFO CSeq %d at the carrier, want %d", got.CSeq().SeqNo, info.CSeq().SeqNo+1)
	}
	if res.CSeq().SeqNo != info.CSeq().SeqNo {
		t.Errorf("answer to INFO %d reached the agent with CSeq %d, want its own %d", info.CSeq().SeqNo, res.CSeq().SeqNo, info.CSeq().SeqNo)
	}
	if err := ds.Bye(ctx); err != nil {
		t.Fatalf("agent's BYE: %v", err)
	}
	if bye := recv(t, pstn.byes, "BYE at the carrier"); bye.CSeq().SeqNo <= carrierSeq {
		t.Errorf("BYE CSeq %d at the carrier, not above the INVITE's %d", bye.CSeq().SeqNo, carrierSeq)
	}
}

// TestOutboundMedia: the agent's media setting decides as for inbound
// calls: relay rewrites both SDPs to relay ports of the real
// gateway/media relay; direct leaves the agent's SDP alone.
func TestOutboundMedia(t *testing.T) {
	for _, mode := range []string{"relay", "direct"} {
		t.Run(mode, func(t *testing.T) {
			pstn := newUA(t, "127.0.0.1")
			agent := newUA(t, "127.0.0.1")
			mgr := newMediaManager(t, 31010, 31013)
			e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local"), media: mode}.build(), sandboxURI(pstn), nil,
				func(d *Deps) { d.Media = media.Anchor[MediaSession]{M: mgr} })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ds, err := agent.dial(ctx, e, numSandboxOut, destUS, agentPass)
			if err != nil {
				t.Fatal(err)
			}
			_ = ds.Ack(ctx)
			inv := recv(t, pstn.invites, "INVITE at the PSTN")
			offer, answer := sdpPort(string(inv.Body())), sdpPort(string(ds.InviteResponse.Body()))
			relayed := func(p int) bool { return p >= 31010 && p <= 31013 }
			if mode == "relay" && (!relayed(offer) || !relayed(answer)) {
				t.Errorf("relay: offer port %d, answer port %d, want relay ports", offer, answer)
			}
			if mode == "direct" && (offer != 40000 || answer != 40000) {
				t.Errorf("direct: offer port %d, answer port %d, want the parties' own 40000", offer, answer)
			}
			_ = ds.Bye(ctx)
			recv(t, pstn.byes, "BYE at the PSTN")
		})
	}
}

// testMeter is a calls.UsageMeter that refuses workspaces in broke and
// records what it was told (the edge's side of the contract; the real
// meter charges the ledger).
type testMeter struct {
	mu       sync.Mutex
	broke    map[string]bool
	answered map[string]string // call id → dest
	ended    map[string]int
}

func (m *testMeter) Authorize(ws, dest string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.broke[ws] {
		return errors.New("balance below one minute")
	}
	return nil
}

func (m *testMeter) Answered(callID, ws, dest string, at time.Time) {
	m.mu.Lock()
	m.answered[callID] = dest
	m.mu.Unlock()
}

func (m *testMeter) Ended(callID string, at time.Time) {
	m.mu.Lock()
	m.ended[callID]++
	m.mu.Unlock()
}

// TestOutboundUsage: a workspace that cannot pay the first minute gets
// 402 "Insufficient credits" and nothing reaches the PSTN; an answered
// call is metered from its answer and ended once.
func TestOutboundUsage(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	agent := newUA(t, "127.0.0.1")
	m := &testMeter{broke: map[string]bool{"w": true}, answered: map[string]string{}, ended: map[string]int{}}
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local")}.build(), sandboxURI(pstn), nil,
		func(d *Deps) { d.Usage = m })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := agent.dial(ctx, e, numSandboxOut, destUS, agentPass); statusOf(err) != 402 || reasonOf(err) != "Insufficient credits" {
		t.Fatalf("broke workspace: %v, want 402 Insufficient credits", err)
	}
	noInvite(t, pstn, 100*time.Millisecond)
	m.mu.Lock()
	m.broke["w"] = false
	m.mu.Unlock()
	ds, err := agent.dial(ctx, e, numSandboxOut, destUS, agentPass)
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(ctx)
	callID := ds.InviteRequest.CallID().Value()
	_ = ds.Bye(ctx)
	recv(t, pstn.byes, "BYE at the PSTN")
	checkFor(t, 5*time.Second, func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.answered[callID] != destUS || m.ended[callID] != 1 {
			return fmt.Errorf("answered %q, ended %d times", m.answered[callID], m.ended[callID])
		}
		return nil
	})
}

// TestOutboundCancel: an agent that gives up while the PSTN rings gets
// 487, and the CANCEL reaches the PSTN through the carrier listener.
func TestOutboundCancel(t *testing.T) {
	pstn := newUA(t, "127.0.0.1", ringForever)
	agent := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: agent.endpoint("local")}.build(), sandboxURI(pstn), nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ringing := e.metrics.Responses.WithLabelValues("INVITE", codeLabel(180))
	go func() {
		// the agent cancels once the 180 was forwarded to it (CANCEL needs a provisional)
		defer cancel()
		deadline := time.Now().Add(5 * time.Second)
		for testutil.ToFloat64(ringing) < 1 && time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	_, err := agent.dial(ctx, e, numSandboxOut, destUS, agentPass)
	if err == nil {
		t.Fatal("call answered")
	}
	recv(t, pstn.invites, "INVITE at the PSTN")
	recv(t, pstn.cancels, "CANCEL at the PSTN")
	var ev calls.Event
	checkFor(t, 5*time.Second, func() error {
		var ok bool
		if ev, ok = e.events.find(calls.Ended, ""); !ok {
			return errors.New("no ended event")
		}
		return nil
	})
	if ev.Status != 487 || ev.Reason != "cancel" || ev.Direction != calls.Outbound {
		t.Errorf("ended %+v", ev)
	}
}

// TestAgentChallengesPikeLimited: INVITEs without valid credentials count
// against the per-source rate (sip.pike): past the burst a source gets
// 503 instead of more 407s (no challenge reflector), while an
// authenticated INVITE from it is not counted.
func TestAgentChallengesPikeLimited(t *testing.T) {
	pstn := newUA(t, "127.0.0.1")
	e := runAgentEdge(t, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:9"}}.build(),
		sandboxURI(pstn), func(c *Config) {
			c.Trunks = []Trunk{{Name: "local", Carrier: "local", CIDRs: []string{"127.0.0.1/32"}}}
			c.Pike = PikeConfig{Rate: 0.01, Burst: 2, Action: pikeReject}
		}, nil)
	r := newRaw(t, "127.0.0.2", net.UDPAddrFromAddrPort(e.AgentUDPAddr()))
	ruri := fmt.Sprintf("sip:%s@127.0.0.1:%d", destUS, e.AgentUDPAddr().Port())
	inv := func(callID, authz string) string {
		return fmt.Sprintf("INVITE %s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:%d;branch=z9hG4bK-%s;rport\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:%s@127.0.0.2>;tag=p\r\nTo: <sip:%s@127.0.0.1>\r\nCall-ID: %s\r\n"+
			"CSeq: 1 INVITE\r\nContact: <sip:agent@127.0.0.2:%d>\r\n%sContent-Length: 0\r\n\r\n",
			ruri, r.port(), callID, numSandboxOut, destUS, callID, r.port(), authz)
	}
	var last string
	for i := 1; i <= 2; i++ {
		r.send(inv(fmt.Sprintf("pike-%d", i), ""))
		if last = r.readFinal(5 * time.Second); !strings.HasPrefix(last, "SIP/2.0 407 ") {
			t.Fatalf("challenge %d: %s", i, statusLine(last))
		}
	}
	r.send(inv("pike-3", ""))
	if res := r.readFinal(5 * time.Second); !strings.HasPrefix(res, "SIP/2.0 503 ") {
		t.Fatalf("third unauthenticated INVITE: %s, want 503 (pike)", statusLine(res))
	}
	var ch *digest.Challenge
	for _, l := range strings.Split(last, "\r\n") {
		if v, ok := strings.CutPrefix(l, "Proxy-Authenticate: "); ok && ch == nil {
			ch, _ = digest.ParseChallenge(v)
		}
	}
	cr, _ := digest.Digest(ch, digest.Options{Method: "INVITE", URI: ruri, Username: agentUser, Password: agentPass, Count: 1})
	r.send(inv("pike-4", "Proxy-Authorization: "+cr.String()+"\r\n"))
	recv(t, pstn.invites, "authenticated INVITE at the PSTN")
}
