package sip

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
)

// TestSIPpSessionExpires: SIPp carrier and agent negotiate a 90 s session
// (Session-Expires passed untouched both ways) and never refresh it;
// callgate sends BYE to both (each SIPp waits for it and answers 200) and
// every call ends session_expired. A session second lasts 20 ms here.
func TestSIPpSessionExpires(t *testing.T) {
	skipNoSIPp(t)
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	uasPort := freeUDPPort(t)
	e := runEdge(t, buildTable(routing.Endpoint{Region: "local", URI: "sip:bot@127.0.0.1:" + strconv.Itoa(uasPort)}),
		func(c *Config) { c.sessionUnit = 20 * time.Millisecond }, nil)
	n := 5
	uas, uasOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uas_session_timer.xml"), "-i", "127.0.0.1",
		"-p", strconv.Itoa(uasPort), "-m", strconv.Itoa(n), "-nostdin", "-trace_err", "-aa")
	waitBound(t, "udp", uasPort)
	uac, uacOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uac_session_timer.xml"), "-i", "127.0.0.1",
		"-s", numPurchased, "127.0.0.1:"+strconv.Itoa(int(e.UDPAddr().Port())),
		"-m", strconv.Itoa(n), "-r", "5", "-nostdin", "-trace_err")
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp carrier: %v\n%s\nagent:\n%s\n%s", err, tail(uacOut.String()), tail(uasOut.String()), sippErrors(dir))
	}
	if err := uas.Wait(); err != nil {
		t.Fatalf("sipp agent: %v\n%s\n%s", err, tail(uasOut.String()), sippErrors(dir))
	}
	e.events.mu.Lock()
	expired := 0
	for _, ev := range e.events.events {
		if ev.Kind == calls.Ended && ev.Reason == "session_expired" {
			expired++
		}
	}
	e.events.mu.Unlock()
	if expired != n {
		t.Errorf("%d calls ended session_expired, want %d", expired, n)
	}
	if v := testutil.ToFloat64(e.metrics.Dropped.WithLabelValues("malformed")); v != 0 {
		t.Errorf("dropped_total{reason=malformed} = %v: the 200s to our BYEs were taken for malformed", v)
	}
}

// TestSIPp422MinSE: SIPp asks for Session-Expires: 60 and gets 422 with
// Min-SE: 90 (the default min_se); the INVITE never reaches an agent.
func TestSIPp422MinSE(t *testing.T) {
	skipNoSIPp(t)
	scen, _ := filepath.Abs("testdata/sipp")
	dir := t.TempDir()
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("local")), nil, nil)
	uac, uacOut := startSIPp(t, dir, 60, "-sf", filepath.Join(scen, "uac_session_422.xml"), "-i", "127.0.0.1",
		"-s", numPurchased, "127.0.0.1:"+strconv.Itoa(int(e.UDPAddr().Port())),
		"-m", "3", "-r", "5", "-nostdin", "-trace_err")
	if err := uac.Wait(); err != nil {
		t.Fatalf("sipp carrier: %v\n%s\n%s", err, tail(uacOut.String()), sippErrors(dir))
	}
	select {
	case r := <-agent.invites:
		t.Fatalf("an INVITE below min_se reached the agent: %s", r.CallID().Value())
	default:
	}
	if v := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("session_interval_too_small")); v != 3 {
		t.Errorf("rejected_total{reason=session_interval_too_small} = %v, want 3", v)
	}
}
