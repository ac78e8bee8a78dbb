package sip

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func scannerOptions(raw *rawUA, id, ua string) string {
	return "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:" + itoa(raw.port()) + ";branch=z9hG4bK-" + id + "\r\n" +
		"From: \"sipvicious\"<sip:100@1.1.1.1>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: " + id + "\r\nCSeq: 1 OPTIONS\r\n" +
		"Max-Forwards: 70\r\nUser-Agent: " + ua + "\r\nContent-Length: 0\r\n\r\n"
}

// TestScannerUserAgentsGetNoAnswer: an INVITE and an OPTIONS from a known
// scanner are dropped without any answer and counted; the edge still
// answers everyone else, on the same socket.
func TestScannerUserAgentsGetNoAnswer(t *testing.T) {
	e := runEdge(t, buildTable(), nil, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(scannerOptions(raw, "scan-1", "friendly-scanner"))
	raw.send(raw.invite(e, numPurchased, "scan-2", "User-Agent: SIPVicious/0.3.4\r\n"))
	raw.send(raw.invite(e, "100", "scan-3", "User-Agent: sipcli/v1.8\r\n"))
	dropped := e.metrics.Dropped.WithLabelValues("scanner")
	checkFor(t, 10*time.Second, func() error {
		if n := testutil.ToFloat64(dropped); n != 3 {
			return errorf("callgate_sip_dropped_total{reason=scanner} = %v, want 3", n)
		}
		return nil
	})
	// every scanner message was handled (dropped) before this one: the
	// first answer on the socket must be this one's
	id := aliveCallID()
	raw.send(aliveOptions(raw, id))
	m := raw.read(10 * time.Second)
	if got := msgCallID(m); got != id {
		t.Fatalf("first message back is for %q (%q), want only the answer to %s", got, statusLine(m), id)
	}
	if n := testutil.ToFloat64(e.metrics.Requests.WithLabelValues("INVITE")); n != 0 {
		t.Fatalf("scanner INVITEs counted as requests: %v", n)
	}
	e.events.mu.Lock()
	n := len(e.events.events)
	e.events.mu.Unlock()
	if n != 0 {
		t.Fatalf("scanner INVITEs made %d call events", n)
	}
}

// TestScannerListOff: with the list emptied, the same User-Agent is served.
func TestScannerListOff(t *testing.T) {
	e := runEdge(t, buildTable(), func(c *Config) { c.ScannerUserAgents = nil }, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	raw.send(scannerOptions(raw, "scan-off", "friendly-scanner"))
	if m := raw.read(10 * time.Second); !strings.HasPrefix(m, "SIP/2.0 200") {
		t.Fatalf("OPTIONS with the list off: %q", statusLine(m))
	}
}

// TestPikeLimitsAFloodFromOneSource: a source over its INVITE rate gets 503
// with Retry-After (or nothing, with action drop) while another source is
// served.
func TestPikeLimitsAFloodFromOneSource(t *testing.T) {
	for _, action := range []string{"reject", "drop"} {
		t.Run(action, func(t *testing.T) {
			e := runEdge(t, buildTable(), func(c *Config) {
				c.Pike = PikeConfig{Rate: 0.001, Burst: 3, Action: action, TrunkSources: true}
			}, nil)
			flood := newRaw(t, "127.0.0.1", net_(e))
			for i := 0; i < 3; i++ { // the burst: routed (404: no such number)
				flood.send(flood.invite(e, "+19995550000", "flood-"+itoa(i), ""))
				if m := flood.readFinal(10 * time.Second); !strings.HasPrefix(m, "SIP/2.0 404") {
					t.Fatalf("INVITE %d within the burst: %q", i, statusLine(m))
				}
			}
			flood.send(flood.invite(e, "+19995550000", "flood-over", ""))
			if action == "reject" {
				m := flood.readFinal(10 * time.Second)
				if !strings.HasPrefix(m, "SIP/2.0 503") || rawHeader(m, "Retry-After") == "" {
					t.Fatalf("INVITE over the rate: %q, want 503 with Retry-After", m)
				}
				if n := testutil.ToFloat64(e.metrics.Rejected.WithLabelValues("pike")); n != 1 {
					t.Fatalf("callgate_sip_rejected_total{reason=pike} = %v, want 1", n)
				}
			} else {
				checkFor(t, 10*time.Second, func() error {
					if n := testutil.ToFloat64(e.metrics.Dropped.WithLabelValues("pike")); n != 1 {
						return errorf("callgate_sip_dropped_total{reason=pike} = %v, want 1", n)
					}
					return nil
				})
				alive(t, flood) // OPTIONS are not limited; and nothing came back for the INVITE first
			}
			// another source address is not affected
			other := newRaw(t, "127.0.0.2", net_(e))
			other.send(other.invite(e, "+19995550000", "other-1", ""))
			if m := other.readFinal(10 * time.Second); !strings.HasPrefix(m, "SIP/2.0 404") {
				t.Fatalf("INVITE from another source: %q", statusLine(m))
			}
		})
	}
}

// TestPikeSparesTrunkSourcesByDefault: a trunk's own range is not limited
// unless trunk_sources is set.
func TestPikeSparesTrunkSourcesByDefault(t *testing.T) {
	e := runEdge(t, buildTable(), func(c *Config) { c.Pike = PikeConfig{Rate: 0.001, Burst: 1} }, nil)
	raw := newRaw(t, "127.0.0.1", net_(e))
	for i := 0; i < 5; i++ {
		raw.send(raw.invite(e, "+19995550000", "trunk-"+itoa(i), ""))
		if m := raw.readFinal(10 * time.Second); !strings.HasPrefix(m, "SIP/2.0 404") {
			t.Fatalf("INVITE %d from the trunk: %q", i, statusLine(m))
		}
	}
}

func TestPikeBucketRefillsAndForgetsIdleSources(t *testing.T) {
	p := newPike(PikeConfig{Rate: 10, Burst: 2})
	a := netip.MustParseAddr("192.0.2.1")
	t0 := time.Unix(1000, 0)
	if !p.allow(a, t0) || !p.allow(a, t0) || p.allow(a, t0) {
		t.Fatal("burst of 2 not enforced")
	}
	if !p.allow(a, t0.Add(100*time.Millisecond)) {
		t.Fatal("one token not refilled after 1/rate")
	}
	p.sweep(t0.Add(time.Second))
	for i := range p.shards {
		if len(p.shards[i].m) != 0 {
			t.Fatal("idle source not forgotten")
		}
	}
	if newPike(PikeConfig{Disabled: true}) != nil {
		t.Fatal("disabled pike is not nil")
	}
}

func TestPikeConfigValidation(t *testing.T) {
	c := DefaultConfig()
	c.Pike.Action = "bounce"
	c.Pike.Rate = -1
	c.ScannerUserAgents = []string{"ok", " "}
	err := c.Validate()
	for _, want := range []string{"sip.pike.action", "sip.pike.rate", "sip.scanner_user_agents[1]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v; want an error naming %s", err, want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestScannerUserAgentMatch(t *testing.T) {
	s := &Server{guard: guard{scanners: lowerAll(DefaultScannerUserAgents)}}
	for ua, want := range map[string]bool{
		"SIPVicious/0.3": true, "x friendly-scanner": true, "Friendly-Scanne": false, "": false, "SMAP 0.6": true,
		"Linphone/5 (belle-sip)": false, "VaxSIPUserAgent/3.1": true, strings.Repeat("a", 300) + "sipvicious": false,
	} {
		if got := s.isScannerUA(ua); got != want {
			t.Errorf("isScannerUA(%q) = %v, want %v", ua, got, want)
		}
	}
}

// BenchmarkScannerCheck is the cost the scanner list adds to every request
// from an allowed source (a User-Agent that is not a scanner's).
func BenchmarkScannerCheck(b *testing.B) {
	s := &Server{metrics: NewMetrics(nil), guard: guard{scanners: lowerAll(DefaultScannerUserAgents)}}
	raw := newRawForBench()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if s.scanner(raw) {
			b.Fatal("not a scanner")
		}
	}
}

func newRawForBench() *sip.Request {
	req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "+12282001234", Host: "127.0.0.1"})
	req.AppendHeader(sip.NewHeader("User-Agent", "Twilio Gateway/2.1 (carrier edge; ashburn)"))
	return req
}

// TestScannerFromAnUnknownSourceGetsNo403: an unlisted source is answered
// 403, but not when it is a scanner.
func TestScannerFromAnUnknownSourceGetsNo403(t *testing.T) {
	e := runEdge(t, buildTable(), func(c *Config) {
		c.Trunks = []Trunk{{Name: "carrier", Carrier: "twilio", CIDRs: []string{"127.0.0.5/32"}}}
	}, nil)
	raw := newRaw(t, "127.0.0.2", net_(e))
	raw.send(scannerOptions(raw, "scan-unknown", "friendly-scanner"))
	checkFor(t, 10*time.Second, func() error {
		if n := testutil.ToFloat64(e.metrics.Dropped.WithLabelValues("scanner")); n != 1 {
			return errorf("callgate_sip_dropped_total{reason=scanner} = %v, want 1", n)
		}
		return nil
	})
	id := aliveCallID()
	raw.send(aliveOptions(raw, id))
	m := raw.read(10 * time.Second)
	if msgCallID(m) != id || !strings.HasPrefix(m, "SIP/2.0 403") {
		t.Fatalf("first answer: %q for %q; want only the 403 to %s", statusLine(m), msgCallID(m), id)
	}
}
