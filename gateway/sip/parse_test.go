package sip

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// sippInvite is SIPp's carrier INVITE (bench/sip/uac_rr.xml).
const sippInvite = "INVITE sip:+12282001234@127.0.0.1:5060 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4242-1-0\r\n" +
	"From: sipp <sip:+15005550006@127.0.0.1:5070>;tag=4242SIPpTag001\r\n" +
	"To: <sip:+12282001234@127.0.0.1:5060>\r\n" +
	"Call-ID: 1-4242@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:sipp@127.0.0.1:5070>\r\nMax-Forwards: 70\r\n" +
	"Subject: callgate bench\r\nContent-Type: application/sdp\r\nContent-Length: 123\r\n\r\n" +
	"v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=ptime:20\r\n"

// parseSeeds: messages parseQuick takes (requests, responses, compact
// forms, several values on a line, generic headers, bodies with and
// without Content-Length) and ones it must leave to sipgo (folding, a
// CR alone, no empty line, bad start lines and headers, short bodies).
var parseSeeds = []string{
	sippInvite,
	"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKcgx1, SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1;received=127.0.0.2\r\n" +
		"Record-Route: <sip:127.0.0.9:5060;lr;cg=abc>\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:bot@127.0.0.1:5080>\r\nContent-Length: 0\r\n\r\n",
	"invite sip:bob@[::1]:5060;transport=udp SIP/2.0\r\nv: SIP/2.0/UDP [::1]:5070;branch=z9hG4bKq;rport\r\nf: \"A B\" <sip:a@b>;tag=1\r\n" +
		"t: <tel:+14155550100>\r\ni: abc\r\nCSeq: 9 invite\r\nm: <sip:a@[::1]>, <sip:b@c>;q=0.1\r\nRoute: <sip:p1;lr>, <sip:p2;lr>\r\n" +
		"Diversion: <sip:+1415@x>;reason=unconditional, <tel:+1416>\r\nUser-Agent: x y z\r\nl: 4\r\nc: text/plain\r\n\r\nbody",
	"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKo\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: o\r\nCSeq: 1 OPTIONS\r\n\r\n",
	"BYE sip:a@b SIP/2.0\r\n Via : SIP/2.0/UDP h;branch=z9hG4bKb\r\nX-Empty:\r\n\r\nno length",
	"INVITE sip:a@b SIP/2.0\r\nSubject: folded\r\n line\r\n\r\n",
	"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\rbad\r\n\r\n",
	"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKn\r\n",
	"INVITE * SIP/2.0\r\n\r\n",
	"INVITE sip:a@b SIP/2.0\r\nMax-Forwards: abc\r\n\r\n",
	"INVITE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nshort",
	"SIP/2.0 99999 Odd\r\n\r\n",
	"SIP/2.0 200\r\n\r\n",
	"INVITE  sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n",
	"\r\nINVITE sip:a@b SIP/2.0\r\n\r\n",
}

// checkParse: what parseQuick takes, sipgo's parser takes too and builds
// the same message (every header, parsed, and the body); what it leaves
// goes to sipgo.
func checkParse(t *testing.T, data []byte) {
	t.Helper()
	p := sip.NewParser()
	got := parseQuick(data, p.MaxMessageLength, sip.DefaultHeadersParser())
	if got == nil {
		return
	}
	want, err := p.ParseSIP(data)
	if err != nil {
		t.Fatalf("parseQuick took %q, sipgo: %v", data, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\nparseQuick %q\nsipgo      %q", data, got.String(), want.String())
	}
}

func TestParseQuickLikeSipgo(t *testing.T) {
	for _, s := range parseSeeds {
		checkParse(t, []byte(s))
	}
	// and it does take the common messages
	p := sip.NewParser()
	for _, s := range parseSeeds[:4] {
		if parseQuick([]byte(s), p.MaxMessageLength, sip.DefaultHeadersParser()) == nil {
			t.Errorf("parseQuick left to sipgo: %q", s)
		}
	}
}

// FuzzParseDatagram holds parseQuick to sipgo's parser (seeds: parseSeeds,
// FuzzMessage's and testdata/fuzz/FuzzParseDatagram).
func FuzzParseDatagram(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	if ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzMessage")); err == nil {
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzMessage", e.Name()))
			if err == nil && strings.HasPrefix(string(b), "go test fuzz v1\n[]byte(") {
				if v, ok := unquoteCorpus(string(b)); ok {
					f.Add([]byte(v))
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkParse(t, data)
	})
}

// unquoteCorpus reads a one-value []byte corpus file of go test fuzz v1.
func unquoteCorpus(s string) (string, bool) {
	s = strings.TrimSpace(strings.TrimPrefix(s, "go test fuzz v1\n[]byte("))
	s = strings.TrimSuffix(s, ")")
	v, err := strconv.Unquote(s)
	return v, err == nil
}

func TestParseQuickAllocatesLess(t *testing.T) {
	p := sip.NewParser()
	data := []byte(sippInvite)
	quick := testing.AllocsPerRun(200, func() { parseQuick(data, p.MaxMessageLength, sip.DefaultHeadersParser()) })
	full := testing.AllocsPerRun(200, func() { _, _ = p.ParseSIP(data) })
	t.Logf("SIPp's INVITE: parseQuick %v allocations, sipgo %v", quick, full)
	if quick > full-10 {
		t.Fatalf("parseQuick %v allocations, sipgo %v: want at least 10 fewer", quick, full)
	}
}

// BenchmarkParseDatagram compares parseQuick with sipgo's parser on
// SIPp's INVITE and an agent's 200 with SDP.
func BenchmarkParseDatagram(b *testing.B) {
	ok200 := "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bKcgx0123456789abcdef0123\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4242-1-0\r\n" +
		"Record-Route: <sip:127.0.0.9:5060;lr;cg=0123456789abcdef0123456789abcdef0123456789abcdef>\r\n" +
		"From: sipp <sip:+15005550006@127.0.0.1:5070>;tag=4242SIPpTag001\r\nTo: <sip:+12282001234@127.0.0.1:5060>;tag=4243SIPpTag011\r\n" +
		"Call-ID: 1-4242@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5080;transport=UDP>\r\n" +
		"Content-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(testSDP)) + "\r\n\r\n" + testSDP
	p := sip.NewParser()
	for _, m := range []struct{ name, data string }{{"invite", sippInvite}, {"200", ok200}} {
		data := []byte(m.data)
		b.Run(m.name+"/quick", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if parseQuick(data, p.MaxMessageLength, sip.DefaultHeadersParser()) == nil {
					b.Fatal("left to sipgo")
				}
			}
		})
		b.Run(m.name+"/sipgo", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := p.ParseSIP(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
