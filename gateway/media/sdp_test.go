package media

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
)

func readSDP(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "sdp", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRewriteCarrierOffers rewrites offers as Twilio and Telnyx send them
// (and one with ICE and rtcp-mux) and checks what the agent gets.
func TestRewriteCarrierOffers(t *testing.T) {
	m, _ := runTestManager(t, func(c *Config) { c.AdvertiseIP = "127.0.0.9" })
	tests := []struct {
		file       string
		caller     string // remembered caller RTP address
		callerRTCP string
		keep       []string // lines that must survive unchanged
	}{
		{"twilio_offer.sdp", "168.86.128.40:16228", "168.86.128.40:16229",
			[]string{"m=audio %d RTP/AVP 0 8 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
				"a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-16", "a=ptime:20", "a=maxptime:150", "a=sendrecv", "s=Twilio Media Gateway"}},
		{"telnyx_offer.sdp", "64.16.250.20:29418", "64.16.250.20:29419",
			[]string{"m=audio %d RTP/AVP 0 8 9 18 101", "a=rtpmap:9 G722/8000", "a=rtpmap:18 G729/8000", "a=fmtp:18 annexb=no",
				"a=rtpmap:101 telephone-event/8000", "a=ptime:20", "a=rtcp:%r IN IP4 127.0.0.9"}},
		{"ice_offer.sdp", "203.0.113.7:50000", "203.0.113.7:50001",
			[]string{"m=audio %d RTP/AVP 111 0 8 101", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
				"a=rtcp-mux", "a=rtcp:%r IN IP4 127.0.0.9", "m=video 0 RTP/AVP 96"}},
		{"audio_video_offer.sdp", "198.51.100.9:7078", "198.51.100.9:7079",
			[]string{"m=audio %d RTP/AVP 8 0 101", "m=video 0 RTP/AVP 96", "a=rtpmap:96 H264/90000"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			s, err := m.NewSession("sdp-"+tc.file, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			in := readSDP(t, tc.file)
			out, err := s.RewriteOffer(in)
			if err != nil {
				t.Fatalf("RewriteOffer: %v", err)
			}
			text := string(out)
			var sd sdp.SessionDescription
			if err := sd.Unmarshal(out); err != nil {
				t.Fatalf("output does not parse: %v\n%s", err, text)
			}
			agentPort := int(s.AgentAddr().Port())
			if got := mediaAddr(t, out); got != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.9"), uint16(agentPort)) {
				t.Fatalf("audio goes to %s, want 127.0.0.9:%d\n%s", got, agentPort, text)
			}
			if !strings.Contains(text, "o=") || !strings.Contains(text, " IN IP4 127.0.0.9\r\n") {
				t.Fatalf("o=/c= not rewritten:\n%s", text)
			}
			for _, bad := range []string{"a=candidate", "a=ice-", "a=end-of-candidates", "168.86.", "64.16.", "203.0.113.", "198.51.100."} {
				if strings.Contains(text, bad) {
					t.Fatalf("output still has %q:\n%s", bad, text)
				}
			}
			for _, k := range tc.keep {
				k = strings.ReplaceAll(k, "%d", itoa(agentPort))
				k = strings.ReplaceAll(k, "%r", itoa(agentPort+1))
				if !strings.Contains(text, k+"\r\n") {
					t.Fatalf("output lacks %q:\n%s", k, text)
				}
			}
			if got := *s.caller.rtpPeer.Load(); got.String() != tc.caller {
				t.Fatalf("caller RTP address %s, want %s", got, tc.caller)
			}
			if got := *s.caller.rtcpPeer.Load(); got.String() != tc.callerRTCP {
				t.Fatalf("caller RTCP address %s, want %s", got, tc.callerRTCP)
			}
			// The agent's answer goes back to the caller on the caller-facing leg.
			ans, err := s.RewriteAnswer(readSDP(t, "agent_answer.sdp"))
			if err != nil {
				t.Fatalf("RewriteAnswer: %v", err)
			}
			if got := mediaAddr(t, ans); got.Port() != s.CallerAddr().Port() || got.Addr().String() != "127.0.0.9" {
				t.Fatalf("answer audio %s, want 127.0.0.9:%d", got, s.CallerAddr().Port())
			}
			if bytes.Contains(ans, []byte("10.0.3.15")) {
				t.Fatalf("agent's private address leaks to the caller:\n%s", ans)
			}
			if got := *s.agent.rtpPeer.Load(); got.String() != "10.0.3.15:40000" {
				t.Fatalf("agent address %s", got)
			}
		})
	}
}

func itoa(i int) string {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(i)).String()[len("0.0.0.0:"):]
}

// Opus in the SDP: packets with PT 111 are measured at 48 kHz.
func TestClockRateFromRtpmap(t *testing.T) {
	tab := clockTable(&sdpInfo{clocks: map[uint8]uint32{111: 48000, 101: 8000}}, nil)
	if tab[111] != 48000 || tab[0] != 8000 || tab[9] != 8000 || tab[101] != 8000 || tab[96] != 0 {
		t.Fatalf("clock table: 111=%d 0=%d 9=%d 101=%d 96=%d", tab[111], tab[0], tab[9], tab[101], tab[96])
	}
	// telephone-event from an SDP is flagged: loss, not jitter
	_, info, err := rewriteSDP([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"+
		"m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 Telephone-Event/8000\r\n"), netip.MustParseAddr("127.0.0.1"), 20000, 20001)
	if err != nil {
		t.Fatal(err)
	}
	if tab := clockTable(info, nil); tab[101] != 8000|clockEvent || tab[0] != 8000 {
		t.Fatalf("telephone-event entry %#x, PCMU %d", tab[101], tab[0])
	}
	// the receiving side's numbering wins
	tab = clockTable(&sdpInfo{clocks: map[uint8]uint32{96: 16000}}, &sdpInfo{clocks: map[uint8]uint32{96: 48000}})
	if tab[96] != 16000 {
		t.Fatalf("pt 96 = %d", tab[96])
	}
}

var malformedSDP = map[string]string{
	"empty":               "",
	"garbage":             "hello world",
	"binary":              "\x00\x01\x02\xff",
	"no t= line":          "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\n",
	"no audio":            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n",
	"audio rejected":      "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
	"no c=":               "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
	"port out of range":   "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n",
	"bad port":            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio x RTP/AVP 0\r\n",
	"bad a=rtcp":          "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:abc\r\n",
	"a=rtcp port 0":       "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:0\r\n",
	"bad rtpmap clock":    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/zero\r\n",
	"bad rtpmap pt":       "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:300 PCMU/8000\r\n",
	"bad c= address":      "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 1.2.3.4.5:6\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
	"truncated m= line":   "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio\r\n",
	"HTTP instead of SDP": "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}

func TestRewriteMalformedSDP(t *testing.T) {
	m, _ := runTestManager(t, nil)
	s, err := m.NewSession("bad", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, body := range malformedSDP {
		t.Run(name, func(t *testing.T) {
			for _, f := range []func([]byte) ([]byte, error){s.RewriteOffer, s.RewriteAnswer} {
				out, err := f([]byte(body))
				if err == nil {
					t.Fatalf("accepted, gave:\n%s", out)
				}
				if !errors.Is(err, ErrBadSDP) {
					t.Fatalf("error %v does not wrap ErrBadSDP", err)
				}
				var st interface{ SIPStatus() int }
				if !errors.As(err, &st) || st.SIPStatus() != 400 {
					t.Fatalf("error %v has no SIP status 400", err)
				}
			}
		})
	}
	// A bad SDP does not disturb the session: a good one still works.
	if _, err := s.RewriteOffer(readSDP(t, "twilio_offer.sdp")); err != nil {
		t.Fatal(err)
	}
}

func TestRewriteAfterClose(t *testing.T) {
	m, _ := runTestManager(t, nil)
	s, err := m.NewSession("closed", nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := s.RewriteOffer(readSDP(t, "twilio_offer.sdp")); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

// A re-INVITE with the same address keeps a latched source; a new address
// replaces it.
func TestReofferKeepsOrMovesPeer(t *testing.T) {
	m, _ := runTestManager(t, nil)
	c := setupCall(t, m, nil)
	sendSeqs(t, c, 1, []uint16{1, 2, 3})
	if _, err := c.s.RewriteOffer(offerFor(c.caller)); err != nil {
		t.Fatal(err)
	}
	sendSeqs(t, c, 1, []uint16{4})
	moved := newEndpoint(t)
	if _, err := c.s.RewriteOffer(offerFor(moved)); err != nil {
		t.Fatal(err)
	}
	c.agent.sendRTP(c.toAgent, rtpPacket(2, 1, 0, []byte("x")))
	if _, _, err := moved.recv(2 * time.Second); err != nil {
		t.Fatalf("media not sent to the re-offered address: %v", err)
	}
}

// FuzzRewriteOffer: any input gives output that parses again, or an
// error wrapping ErrBadSDP; never a panic.
func FuzzRewriteOffer(f *testing.F) {
	for _, name := range []string{"twilio_offer.sdp", "telnyx_offer.sdp", "ice_offer.sdp", "audio_video_offer.sdp", "agent_answer.sdp"} {
		f.Add(readSDP(f, name))
	}
	for _, body := range malformedSDP {
		f.Add([]byte(body))
	}
	m, _ := runTestManager(f, nil)
	s, err := m.NewSession("fuzz", nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := s.RewriteOffer(body)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) {
				t.Fatalf("error not ErrBadSDP: %v", err)
			}
			return
		}
		var sd sdp.SessionDescription
		if err := sd.Unmarshal(out); err != nil {
			t.Fatalf("rewritten SDP does not parse: %v\n%q", err, out)
		}
		if got := mediaAddr(t, out); got != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.AgentAddr().Port()) {
			t.Fatalf("audio not pointed at callgate: %s", got)
		}
		attrs := sd.Attributes
		for _, md := range sd.MediaDescriptions {
			attrs = append(attrs, md.Attributes...)
		}
		for _, a := range attrs {
			if iceAttrs[attrKey(a.Key)] {
				t.Fatalf("ICE attribute %q left in %q", a.Key, out)
			}
		}
	})
}
