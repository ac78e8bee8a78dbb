package sip

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// RFC 3262 (100rel, PRACK) and RFC 3311 (UPDATE) before the answer pass
// through callgate on both listeners: the callee's 183 with Require:
// 100rel and RSeq reaches the caller, the caller's PRACK and its early
// UPDATE (SDP offer) follow the early dialog's route set (the 183's
// Record-Route, its To tag) to the callee and are answered there, never
// 481 or 403 by callgate. SIPp plays both ends (uac_100rel.xml or
// uac_agent_100rel.xml, and uas_100rel.xml).

func skipNoSIPp(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(sippBin); err != nil {
		t.Skip("sipp not installed (Debian sip-tester)")
	}
	if testing.Short() {
		t.Skip("runs SIPp")
	}
}

// check100rel: n calls ended by the caller's BYE in direction dir, and
// no in-dialog request refused.
func check100rel(t *testing.T, e *testEdge, n int, dir string) {
	t.Helper()
	for _, r := range []string{"no_dialog", "relay_denied"} {
		if v := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues(r)); v != 0 {
			t.Errorf("rejected_total{reason=%s} = %v: an early-dialog request was refused", r, v)
		}
	}
	e.events.mu.Lock()
	defer e.events.mu.Unlock()
	ended := 0
	for _, ev := range e.events.events {
		if ev.Kind == calls.Ended && ev.Status == 200 && ev.Direction == dir && ev.Reason == "bye_caller" {
			ended++
		}
	}
	if ended != n {
		t.Errorf("%d %s calls ended by the caller's BYE, want %d", ended, dir, n)
	}
}

// TestSIPp100relInbound: carrier (SIPp) → carrier listener → agent
// listener → agent (SIPp).
func TestSIPp100relInbound(t *testing.T) {
	skipNoSIPp(t)
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	uasPort := freeUDPPort(t)
	e := runAgentEdge(t, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(uasPort)}}.build(),
		"", func(c *Config) { c.Workers = 1 }, nil)
	n := 5
	uas, uasOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uas_100rel.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(uasPort), "-m", strconv.Itoa(n), "-nostdin", "-trace_err", "-aa")
	waitBound(t, "udp", uasPort)
	uac, uacOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uac_100rel.xml"), "-i", "127.0.0.1",
		"-s", numPurchased, "127.0.0.1:"+strconv.Itoa(int(e.UDPAddr().Port())),
		"-m", strconv.Itoa(n), "-r", "5", "-nostdin", "-trace_err")
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp carrier: %v\n%s\nagent:\n%s\n%s", err, tail(uacOut.String()), tail(uasOut.String()), sippErrors(dir))
	}
	if err := uas.Wait(); err != nil {
		t.Fatalf("sipp agent: %v\n%s\n%s", err, tail(uasOut.String()), sippErrors(dir))
	}
	check100rel(t, e, n, calls.Inbound)
}

// TestSIPp100relOutbound: agent (SIPp, digest auth) → agent listener →
// carrier listener → sandbox termination (SIPp "PSTN").
func TestSIPp100relOutbound(t *testing.T) {
	skipNoSIPp(t)
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	pstnPort := freeUDPPort(t)
	e := runAgentEdge(t, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:9"}}.build(),
		"sip:pstn@127.0.0.1:"+strconv.Itoa(pstnPort), func(c *Config) {
			c.Workers = 1
			c.Agents.DigestAlgorithms = "MD5,SHA-256" // SIPp 3.6 takes the first challenge and only does MD5
		}, nil)
	n := 5
	uas, uasOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uas_100rel.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(pstnPort), "-m", strconv.Itoa(n), "-nostdin", "-trace_err", "-aa")
	waitBound(t, "udp", pstnPort)
	uac, uacOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uac_agent_100rel.xml"), "-i", "127.0.0.1",
		"-s", destUS, "-key", "callerid", numSandboxOut, "-au", agentUser, "-ap", agentPass,
		"127.0.0.1:"+strconv.Itoa(int(e.AgentUDPAddr().Port())),
		"-m", strconv.Itoa(n), "-r", "5", "-nostdin", "-trace_err")
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp agent: %v\n%s\npstn:\n%s\n%s", err, tail(uacOut.String()), tail(uasOut.String()), sippErrors(dir))
	}
	if err := uas.Wait(); err != nil {
		t.Fatalf("sipp pstn: %v\n%s\n%s", err, tail(uasOut.String()), sippErrors(dir))
	}
	check100rel(t, e, n, calls.Outbound)
}

// TestSIPp100relOutboundChallenged: the agent's outbound call leaves for
// a Twilio termination that challenges; callgate answers the challenge
// with the INVITE renumbered (CSeq + 1), so the agent's PRACK must reach
// the carrier renumbered too, its CSeq and its RAck (uas_100rel_challenge.xml
// checks both), and the 200s come back numbered for the agent.
func TestSIPp100relOutboundChallenged(t *testing.T) {
	skipNoSIPp(t)
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	pstnPort := freeUDPPort(t)
	e := runAgentEdge(t, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:9"},
		twilioTerm: []string{"sip:pstn@127.0.0.1:" + strconv.Itoa(pstnPort)}, termUser: "trunkuser", termPass: "trunkPass123"}.build(),
		"", func(c *Config) {
			c.Workers = 1
			c.Agents.DigestAlgorithms = "MD5,SHA-256"
		}, nil)
	n := 3
	uas, uasOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uas_100rel_challenge.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(pstnPort), "-m", strconv.Itoa(n), "-nostdin", "-trace_err", "-aa")
	waitBound(t, "udp", pstnPort)
	uac, uacOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uac_agent_100rel.xml"), "-i", "127.0.0.1",
		"-s", destUS, "-key", "callerid", numTwilioOut, "-au", agentUser, "-ap", agentPass,
		"127.0.0.1:"+strconv.Itoa(int(e.AgentUDPAddr().Port())),
		"-m", strconv.Itoa(n), "-r", "5", "-nostdin", "-trace_err")
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp agent: %v\n%s\ncarrier:\n%s\n%s", err, tail(uacOut.String()), tail(uasOut.String()), sippErrors(dir))
	}
	if err := uas.Wait(); err != nil {
		t.Fatalf("sipp carrier: %v\n%s\n%s", err, tail(uasOut.String()), sippErrors(dir))
	}
	check100rel(t, e, n, calls.Outbound)
}
