package sip

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/internal/testlog"
	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store/storetest"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	bad := DefaultConfig()
	bad.Addr = "nope"
	bad.TLSCert = "cert.pem"
	bad.Trunks = append(bad.Trunks,
		Trunk{Name: "local", CIDRs: []string{"10.0.0.0/33"}},
		Trunk{Name: "t", Preset: "verizon"},
		Trunk{Name: "u", Username: "x", Country: "usa"})
	bad.Probe.Alpha = 2
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, key := range []string{"sip.addr", "sip.tls_addr", "sip.trunks[1].name", "sip.trunks[1].cidrs[0]",
		"sip.trunks[2].preset", "sip.trunks[3].password", "sip.trunks[3].country", "sip.probe.alpha"} {
		if !strings.Contains(err.Error(), key+":") {
			t.Errorf("error does not name %s:\n%v", key, err)
		}
	}
	wild := DefaultConfig()
	wild.Addr = "0.0.0.0:5060"
	if err := wild.Validate(); err == nil || !strings.Contains(err.Error(), "sip.advertise_host") {
		t.Errorf("0.0.0.0 without advertise_host: %v", err)
	}
}

func TestDrain(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), func(c *Config) { c.DrainTimeout = 5 * time.Second }, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e)
	recv(t, agent.invites, "INVITE")
	drained := make(chan int, 1)
	go func() { drained <- e.Drain(ctx) }()
	checkFor(t, time.Second, func() error {
		if !e.Draining() {
			return errorf("not draining")
		}
		return nil
	})
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(raw.invite(e, numPurchased, "drain-new", ""))
	if m := raw.readFinal(2 * time.Second); !strings.HasPrefix(m, "SIP/2.0 503") || !strings.Contains(m, "Retry-After:") {
		t.Fatalf("new INVITE while draining: %q", m)
	}
	select {
	case n := <-drained:
		t.Fatalf("Drain returned %d with a call up", n)
	case <-time.After(100 * time.Millisecond):
	}
	if err := ds.Bye(ctx); err != nil { // the active dialog still works
		t.Fatal(err)
	}
	select {
	case n := <-drained:
		if n != 0 {
			t.Fatalf("Drain left %d", n)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Drain did not return after the last BYE")
	}
}

func TestProberHealthAndFailover(t *testing.T) {
	live := newUA(t, "127.0.0.1")
	dead := newRaw(t, "127.0.0.1", &netUDPAddrLoop)
	deadEP := routing.Endpoint{Region: "ap", URI: "sip:bot@127.0.0.1:" + itoa(dead.port())}
	e := runEdge(t, buildTable(deadEP, live.endpoint("us")), func(c *Config) {
		c.Probe = ProbeConfig{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, DownAfter: 2, UpAfter: 2, Alpha: 0.5}
	}, nil)
	checkFor(t, 3*time.Second, func() error {
		st := e.Status()
		if len(st) != 2 {
			return errorf("status %+v", st)
		}
		// sorted by region: ap (dead) then us (live)
		if st[0].Up || !st[0].Known || !st[1].Up || !st[1].Known || st[1].RTT <= 0 {
			return errorf("status %+v", st)
		}
		return nil
	})
	if _, up, known := e.Prober().Endpoint(deadEP.URI); up || !known {
		t.Fatal("dead endpoint not down")
	}
	// with the dead endpoint known down, a call goes straight to the live one
	r, _ := e.table.Load().Lookup(numPurchased)
	c := routing.Candidates(r, e.Prober())
	if len(c) != 1 || c[0].Region != "us" {
		t.Fatalf("candidates %+v", c)
	}
	// the prober's later rounds update these series in place: a series
	// reset and made again could be missing from a scrape in between
	wants := []string{`callgate_sip_region_endpoints{region="ap",state="down"} 1`,
		`callgate_sip_region_endpoints{region="us",state="up"} 1`, `callgate_sip_probe_rtt_seconds_count{region="us"}`,
		`callgate_sip_endpoint_up{endpoint="0",region="ap"} 0`, `callgate_sip_endpoint_up{endpoint="0",region="us"} 1`,
		`callgate_sip_region_rtt_estimate_seconds{region="us"}`, `callgate_sip_endpoint_rtt_estimate_seconds{endpoint="0",region="us"}`}
	children := func() []prometheus.Gauge {
		met := e.metrics
		return []prometheus.Gauge{met.RegionEndpoints.WithLabelValues("ap", "down"), met.RegionEndpoints.WithLabelValues("us", "up"),
			met.EndpointUp.WithLabelValues("us", "0"), met.EndpointRTT.WithLabelValues("us", "0"), met.RegionRTT.WithLabelValues("us")}
	}
	probes := func(m string) int {
		_, after, _ := strings.Cut(m, `callgate_sip_probe_rtt_seconds_count{region="us"} `)
		n, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(after, "\n", 2)[0]))
		return n
	}
	before := children()
	first := probes(metricsText(t, e))
	checkFor(t, 5*time.Second, func() error {
		if n := probes(metricsText(t, e)); n < first+3 {
			return errorf("%d probe rounds after %d", n-first, first)
		}
		return nil
	})
	m := metricsText(t, e)
	for _, want := range wants {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for i, g := range children() {
		if g != before[i] {
			t.Errorf("series %d was made again by a later probe round (reset, not updated in place)", i)
		}
	}
	js, _ := json.Marshal(e.Status())
	if !strings.Contains(string(js), `"rtt_ms"`) {
		t.Errorf("status JSON %s", js)
	}
}

// TestMetricsLint feeds the exported metrics to promtool (Debian's
// prometheus package) after a call.
func TestMetricsLint(t *testing.T) {
	pt, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	carrier := newUA(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ds := carrier.answered(ctx, t, e)
	_ = ds.Bye(ctx)
	recv(t, agent.byes, "BYE")
	var m bytes.Buffer
	mfs, _ := e.reg.Gather()
	for _, mf := range mfs {
		_, _ = expfmt.MetricFamilyToText(&m, mf)
	}
	cmd := exec.Command(pt, "check", "metrics")
	cmd.Stdin = &m
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestEventsOnNATS: lifecycle events through calls.NATSPublisher on an
// embedded nats-server.
func TestEventsOnNATS(t *testing.T) {
	ns := storetest.RunServer(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("callgate.calls.>")
	if err != nil {
		t.Fatal(err)
	}
	agent := newUA(t, "127.0.0.1")
	table := buildTable(agent.endpoint("eu"))
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Probe.Disabled = true
	s, err := New(cfg, Deps{Table: table, Events: &calls.NATSPublisher{NC: nc, Region: "local"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = s.Serve(ctx) }()
	e := &testEdge{Server: s}
	carrier := newUA(t, "127.0.0.1")
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	ds, _, err := carrier.call(cctx, e, numPurchased)
	if err != nil {
		t.Fatal(err)
	}
	_ = ds.Ack(cctx)
	_ = ds.Bye(cctx)
	var subjects []string
	for len(subjects) < 3 {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %v: %v", subjects, err)
		}
		subjects = append(subjects, msg.Subject)
		var ev calls.Event
		if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.Number != numPurchased || ev.Carrier != "twilio" {
			t.Errorf("event %s: %v %+v", msg.Subject, err, ev)
		}
	}
	want := []string{"callgate.calls.eu.started", "callgate.calls.eu.answered", "callgate.calls.eu.ended"}
	if strings.Join(subjects, ",") != strings.Join(want, ",") {
		t.Errorf("subjects %v, want %v", subjects, want)
	}
}

// TestDigestTrunk: a trunk with credentials challenges with 407 and
// accepts the right response.
func TestDigestTrunk(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), func(c *Config) {
		c.Trunks = []Trunk{{Name: "pbx", Carrier: "local", CIDRs: []string{"127.0.0.0/8"}, Username: "pbx", Password: "s3cret"}}
	}, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	inv := raw.invite(e, numPurchased, "auth-1", "")
	raw.send(inv)
	m := raw.readFinal(2 * time.Second)
	if !strings.HasPrefix(m, "SIP/2.0 407") {
		t.Fatalf("got %q, want 407", statusLine(m))
	}
	res, err := sip.ParseMessage([]byte(m))
	if err != nil {
		t.Fatal(err)
	}
	ch := res.(*sip.Response).GetHeader("Proxy-Authenticate").Value()
	nonce := between(ch, `nonce="`, `"`)
	uri := "sip:" + numPurchased + "@127.0.0.1:" + itoa(int(e.UDPAddr().Port()))
	h := func(s string) string { x := md5.Sum([]byte(s)); return hex.EncodeToString(x[:]) }
	ha1, ha2 := h("pbx:callgate:s3cret"), h("INVITE:"+uri)
	resp := h(ha1 + ":" + nonce + ":00000001:abc:auth:" + ha2)
	auth := `Proxy-Authorization: Digest username="pbx", realm="callgate", nonce="` + nonce + `", uri="` + uri +
		`", response="` + resp + `", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"` + "\r\n"
	inv2 := strings.Replace(raw.invite(e, numPurchased, "auth-2", ""), "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n"+auth, 1)
	raw.send(inv2)
	if m := raw.readFinal(3 * time.Second); !strings.HasPrefix(m, "SIP/2.0 200") {
		t.Fatalf("authenticated INVITE: %q", statusLine(m))
	}
	wrong := strings.Replace(inv2, resp, h("x"), 1)
	raw.send(strings.ReplaceAll(wrong, "auth-2", "auth-3"))
	if m := raw.readFinal(2 * time.Second); !strings.HasPrefix(m, "SIP/2.0 407") {
		t.Fatalf("wrong password: %q", statusLine(m))
	}
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	if j := strings.Index(s, b); j >= 0 {
		return s[:j]
	}
	return s
}

// TestTCPCall: a carrier on TCP, the agent on UDP (two Record-Route entries).
func TestTCPCall(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	c, err := net.Dial("tcp", e.TCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lp := c.LocalAddr().(*net.TCPAddr).Port
	body := testSDP
	inv := "INVITE sip:" + numPurchased + "@127.0.0.1:" + itoa(int(e.TCPAddr().Port())) + ";transport=tcp SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP 127.0.0.1:" + itoa(lp) + ";branch=z9hG4bK-tcp1\r\nMax-Forwards: 70\r\n" +
		"From: <sip:+15005550006@127.0.0.1>;tag=tcp\r\nTo: <sip:" + numPurchased + "@127.0.0.1>\r\nCall-ID: tcp-1\r\n" +
		"CSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:" + itoa(lp) + ";transport=tcp>\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if _, err := c.Write([]byte(inv)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got strings.Builder
	buf := make([]byte, 8192)
	for !strings.Contains(got.String(), "SIP/2.0 200") {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, got.String())
		}
		got.Write(buf[:n])
	}
	fwd := recv(t, agent.invites, "INVITE over UDP")
	if n := len(fwd.GetHeaders("Record-Route")); n != 2 {
		t.Errorf("agent sees %d Record-Route, want 2 (UDP and TCP sides)", n)
	}
	if !strings.Contains(got.String(), "transport=tcp") {
		t.Errorf("200 at the TCP caller lacks the TCP Record-Route:\n%s", got.String())
	}
}

// TestUnlistedSourcesKeepNoState: thousands of datagrams from unlisted
// source ports leave no connection, transaction or goroutine behind.
func TestUnlistedSourcesKeepNoState(t *testing.T) {
	e := runEdge(t, buildTable(), func(c *Config) {
		c.Trunks = []Trunk{{Name: "carrier", Carrier: "twilio", CIDRs: []string{"127.0.0.5/32"}}}
		c.SilentReject = true
	}, nil)
	before := runtime.NumGoroutine()
	for i := 0; i < 200; i++ {
		raw := newRaw(t, "127.0.0.9", net_(e))
		for j := 0; j < 10; j++ {
			raw.send(raw.invite(e, numPurchased, "scan-"+itoa(i)+"-"+itoa(j), ""))
		}
		raw.conn.Close()
	}
	checkFor(t, 3*time.Second, func() error {
		if n := testutilCount(e); n != 2000 {
			return errorf("rejected %v", n)
		}
		return nil
	})
	streams := e.tp.Streams()
	if streams != 0 || e.serverTx.len() != 0 || e.clientTx.len() != 0 || e.dialogs.len() != 0 {
		t.Errorf("state left: streams %d serverTx %d clientTx %d dialogs %d",
			streams, e.serverTx.len(), e.clientTx.len(), e.dialogs.len())
	}
	// A goroutine the edge kept for a refused source would stay; one that
	// was only passing through (a timer's callback, a previous test's
	// shutdown) ends. Wait for the count to settle before judging it.
	checkFor(t, 5*time.Second, func() error {
		if after := runtime.NumGoroutine(); after > before+2 {
			buf := make([]byte, 1<<20)
			return errorf("goroutines %d → %d:\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		return nil
	})
}

func testutilCount(e *testEdge) float64 {
	return testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("unknown_source"))
}

// syncBuffer is a log sink several goroutines write to.
type syncBuffer = testlog.Buffer

// TestCallLogLine: one line per call outcome, number masked, no secret.
func TestCallLogLine(t *testing.T) {
	agent := newUA(t, "127.0.0.1")
	var logs syncBuffer
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Probe.Disabled = true
	cfg.Trunks = []Trunk{{Name: "pbx", Carrier: "local", CIDRs: []string{"127.0.0.3/32"}, Username: "pbx", Password: "s3cret-pw"},
		{Name: "local", Carrier: "local", CIDRs: []string{"127.0.0.0/8"}}}
	s, err := New(cfg, Deps{Table: buildTable(agent.endpoint("eu")),
		Log: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	e := &testEdge{Server: s}
	pbx := newRaw(t, "127.0.0.3", net_(e))
	pbx.send(pbx.invite(e, numPurchased, "log-1", "")) // 407 challenge
	pbx.readFinal(2 * time.Second)
	raw := newRaw(t, "127.0.0.1", net_(e)) // an unassigned number: one outcome line
	raw.send(raw.invite(e, numUnassigned, "log-2", ""))
	raw.readFinal(2 * time.Second)
	// rejected INVITEs: one info line each (unknown number, too many hops)
	const unknown = "+12282009999"
	raw.send(raw.invite(e, unknown, "log-3", ""))
	raw.readFinal(2 * time.Second)
	raw.send(strings.Replace(raw.invite(e, numPurchased, "log-4", ""), "Max-Forwards: 70", "Max-Forwards: 0", 1))
	raw.readFinal(2 * time.Second)
	checkFor(t, 2*time.Second, func() error {
		for _, want := range []string{`"call_id":"log-2"`, `"call_id":"log-3"`, `"call_id":"log-4"`} {
			if !strings.Contains(logs.String(), want) {
				return errorf("no line with %s:\n%s", want, logs.String())
			}
		}
		return nil
	})
	out := logs.String()
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.Contains(l, `"call_id":"log-3"`):
			if !strings.Contains(l, `"level":"INFO"`) || !strings.Contains(l, `"status":404`) ||
				!strings.Contains(l, `"reason":"unknown_number"`) || !strings.Contains(l, phone.Mask(unknown)) {
				t.Errorf("404 line: %s", l)
			}
		case strings.Contains(l, `"call_id":"log-4"`):
			if !strings.Contains(l, `"level":"INFO"`) || !strings.Contains(l, `"status":483`) {
				t.Errorf("483 line: %s", l)
			}
		}
	}
	if strings.Contains(out, unknown) || strings.Contains(out, strings.TrimPrefix(numPurchased, "+")) {
		t.Errorf("full number in logs:\n%s", out)
	}
	if strings.Contains(out, numUnassigned) || strings.Contains(out, numPurchased) {
		t.Errorf("full number in logs:\n%s", out)
	}
	if !strings.Contains(out, phone.Mask(numUnassigned)) {
		t.Errorf("masked number missing:\n%s", out)
	}
	if strings.Contains(out, "s3cret-pw") {
		t.Errorf("password in logs")
	}
}

// TestPassiveHealth: an endpoint whose OPTIONS answers never come (an
// agent too busy to answer probes in time) stays up while it answers
// calls; it goes down only once probes and real traffic both fail.
func TestPassiveHealth(t *testing.T) {
	agent, ep := rawAgent(t)
	e := runEdge(t, buildTable(ep), func(c *Config) {
		c.Probe = ProbeConfig{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, DownAfter: 2, UpAfter: 2, Alpha: 0.5}
	}, nil)
	done := make(chan struct{})
	var quit atomic.Bool
	go func() { // answers INVITEs with 486 at once, ignores OPTIONS and ACK
		defer close(done)
		buf := make([]byte, 65535)
		for !quit.Load() {
			_ = agent.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, _, err := agent.conn.ReadFromUDP(buf)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if err != nil {
				return
			}
			if m := string(buf[:n]); strings.HasPrefix(m, "INVITE ") {
				agent.replyTo(m, 486, "Busy Here", "ag", "")
			}
		}
	}()
	caller := newRaw(t, "127.0.0.1", net_(e))
	for i := 0; i < 40; i++ {
		id := "passive-" + itoa(i)
		caller.send(caller.invite(e, numPurchased, id, ""))
		m := caller.readFinal(2 * time.Second)
		if !strings.HasPrefix(m, "SIP/2.0 486") {
			t.Fatalf("call %d: %q, want the agent's 486 (endpoint marked down while answering calls?)", i, statusLine(m))
		}
		caller.send(strings.Replace(cancelFor(caller.invite(e, numPurchased, id, "")), "CANCEL", "ACK", 2))
		if _, up, _ := e.Prober().Endpoint(ep.URI); !up {
			t.Fatalf("call %d: endpoint down while it answers calls", i)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// no traffic and no probe answers: down
	checkFor(t, 3*time.Second, func() error {
		if _, up, known := e.Prober().Endpoint(ep.URI); up || !known {
			return errorf("endpoint still up (known %v) without probe answers or traffic", known)
		}
		return nil
	})
	quit.Store(true)
	<-done
}

func metricsText(t *testing.T, e *testEdge) string {
	t.Helper()
	var m bytes.Buffer
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		_, _ = expfmt.MetricFamilyToText(&m, mf)
	}
	return m.String()
}

// TestProberGaugesAndStatus: endpoints are listed before their first
// probe; a region without a healthy endpoint has no RTT estimate series
// (not 0); a region that leaves the table loses its series.
func TestProberGaugesAndStatus(t *testing.T) {
	dead := newRaw(t, "127.0.0.1", &netUDPAddrLoop)
	deadEP := routing.Endpoint{Region: "ap", URI: "sip:bot@127.0.0.1:" + itoa(dead.port())}
	off := runEdge(t, buildTable(deadEP), nil, nil) // probing disabled
	if st := off.Status(); len(st) != 1 || st[0].Known || !st[0].Up || st[0].URI != deadEP.URI {
		t.Errorf("status before any probe: %+v, want the endpoint with probed=false", st)
	}

	live := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(deadEP, live.endpoint("us")), func(c *Config) {
		c.Probe = ProbeConfig{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, DownAfter: 2, UpAfter: 2, Alpha: 0.5}
	}, nil)
	checkFor(t, 3*time.Second, func() error {
		m := metricsText(t, e)
		if !strings.Contains(m, `callgate_sip_region_endpoints{region="ap",state="down"} 1`) ||
			!strings.Contains(m, `callgate_sip_region_rtt_estimate_seconds{region="us"}`) {
			return errorf("probes not settled:\n%s", m)
		}
		if strings.Contains(m, `callgate_sip_region_rtt_estimate_seconds{region="ap"}`) {
			return errorf("RTT estimate for a region with no healthy endpoint")
		}
		return nil
	})
	e.table.Store(buildTable(live.endpoint("us")).Load()) // region ap leaves
	checkFor(t, 3*time.Second, func() error {
		if m := metricsText(t, e); strings.Contains(m, `region="ap"`) {
			return errorf("series of a region that left the table remain:\n%s", m)
		}
		return nil
	})
}
