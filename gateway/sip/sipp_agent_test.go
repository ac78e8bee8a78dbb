package sip

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// TestSIPpOutboundFromAgent: a SIPp agent authenticating with digest
// places outbound calls through the agent listener to a SIPp "PSTN"
// behind the sandbox termination; each call is answered and its ACK and
// BYE follow the route set back through the agent listener.
func TestSIPpOutboundFromAgent(t *testing.T) {
	if _, err := os.Stat(sippBin); err != nil {
		t.Skip("sipp not installed (Debian sip-tester)")
	}
	if testing.Short() {
		t.Skip("runs SIPp")
	}
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	pstnPort := freeUDPPort(t)
	e := runAgentEdge(t, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:9"}}.build(),
		"sip:pstn@127.0.0.1:"+strconv.Itoa(pstnPort), func(c *Config) {
			c.Agents.DigestAlgorithms = "MD5,SHA-256" // SIPp 3.6 takes the first challenge and only does MD5
		}, nil)
	n, rate := 20, 10
	uas, uasOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uas_rr.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(pstnPort), "-m", strconv.Itoa(n), "-nostdin", "-trace_err", "-aa")
	waitBound(t, "udp", pstnPort)
	uac, uacOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uac_agent_auth.xml"), "-i", "127.0.0.1",
		"-s", destUS, "-key", "callerid", numSandboxOut, "-au", agentUser, "-ap", agentPass,
		"127.0.0.1:"+strconv.Itoa(int(e.AgentUDPAddr().Port())),
		"-m", strconv.Itoa(n), "-r", strconv.Itoa(rate), "-nostdin", "-trace_err")
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp agent: %v\n%s\npstn:\n%s\n%s", err, tail(uacOut.String()), tail(uasOut.String()), sippErrors(dir))
	}
	if err := uas.Wait(); err != nil {
		t.Fatalf("sipp pstn: %v\n%s\n%s", err, tail(uasOut.String()), sippErrors(dir))
	}
	e.events.mu.Lock()
	defer e.events.mu.Unlock()
	ended := 0
	for _, ev := range e.events.events {
		if ev.Kind == calls.Ended && ev.Status == 200 && ev.Direction == calls.Outbound && ev.Reason == "bye_caller" &&
			ev.From == numSandboxOut && ev.To == destUS {
			ended++
		}
	}
	if ended != n {
		t.Errorf("%d outbound calls ended by the agent's BYE, want %d", ended, n)
	}
}

// TestSIPpInboundCrossesListeners: SIPp carrier → callgate → SIPp agent
// with the agent listener on (as with make run): the INVITE reaches the
// agent from the agent listener with two Record-Routes, and SIPp's ACK and
// BYE follow the route set through both listeners.
func TestSIPpInboundCrossesListeners(t *testing.T) {
	if _, err := os.Stat(sippBin); err != nil {
		t.Skip("sipp not installed (Debian sip-tester)")
	}
	if testing.Short() {
		t.Skip("runs SIPp")
	}
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	uasPort := freeUDPPort(t)
	e := runAgentEdge(t, outTable{agentEP: routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(uasPort)}}.build(),
		"", nil, nil)
	n := 10
	uas, uasOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uas_rr.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(uasPort), "-m", strconv.Itoa(n), "-nostdin", "-trace_err", "-aa")
	waitBound(t, "udp", uasPort)
	uac, uacOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uac_rr.xml"), "-i", "127.0.0.1",
		"-s", numPurchased, "127.0.0.1:"+strconv.Itoa(int(e.UDPAddr().Port())),
		"-m", strconv.Itoa(n), "-r", "10", "-nostdin", "-trace_err")
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp carrier: %v\n%s\nagent:\n%s\n%s", err, tail(uacOut.String()), tail(uasOut.String()), sippErrors(dir))
	}
	if err := uas.Wait(); err != nil {
		t.Fatalf("sipp agent: %v\n%s\n%s", err, tail(uasOut.String()), sippErrors(dir))
	}
	e.events.mu.Lock()
	defer e.events.mu.Unlock()
	ended := 0
	for _, ev := range e.events.events {
		if ev.Kind == calls.Ended && ev.Status == 200 && ev.Direction == calls.Inbound && ev.Reason == "bye_caller" {
			ended++
		}
	}
	if ended != n {
		t.Errorf("%d inbound calls ended by the carrier's BYE, want %d", ended, n)
	}
}
