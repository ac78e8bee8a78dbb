package rfc5118_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/callgate/callgate/conformance/rfc4475"
	"github.com/callgate/callgate/conformance/rfc5118"
)

// TestExpectationsCoverTheCorpus: one line per message of the corpus, the
// twelve of RFC 5118, and every answer callgate gives satisfies its rule.
func TestExpectationsCoverTheCorpus(t *testing.T) {
	exps, err := rfc5118.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(exps) != 12 {
		t.Fatalf("%d expectations, want one for each of RFC 5118's 12 messages", len(exps))
	}
	listed := map[string]bool{}
	for _, e := range exps {
		listed[e.Name] = true
		if _, err := rfc5118.Message(e.Name); err != nil {
			t.Errorf("%s: %v", e.Name, err)
		}
		if !e.Rule.Allows(e.Answer) {
			t.Errorf("%s: callgate answers %d, which the rule %q does not allow", e.Name, e.Answer, e.Rule)
		}
		if e.Rule.Kind != rfc4475.Parsed && e.Rule.Kind != rfc4475.Codes {
			t.Errorf("%s: rule %s: RFC 5118 has only requests to parse or to refuse", e.Name, e.Rule)
		}
	}
	for _, n := range rfc5118.Names() {
		if !listed[n] {
			t.Errorf("corpus/%s.dat has no line in expect.tsv", n)
		}
	}
}

// TestCorpusIsTheArchive: the files are the RFC's archive as imported
// (README.md); an editor that changes line ends or a byte fails here.
func TestCorpusIsTheArchive(t *testing.T) {
	want := map[string]string{
		"ipv4-mapped-ipv6":              "b3d7df025b6465461741c3788fa3b48af25b08d6a2fdb59ded815cc0afc04a68",
		"ipv6-bad":                      "f6ffa0b2e664d05dbecde6bd7eb6fd71a9f01d43a3a0d3e084766c6240be4972",
		"ipv6-bug-abnf-3-colons":        "e542604dca3aed5c346a549c1f692aecf98a12353b38283be3e199664abeb43e",
		"ipv6-correct-abnf-2-colons":    "6a8c09976009aab0159cf1b8cc3e2964b3853557102b5b86bf2b6b2c48c0779e",
		"ipv6-good":                     "80654d05559d5bda7d584b39e0f4dbf69b23189cb140754ef889a4996a3505ed",
		"ipv6-in-sdp":                   "c09ab30a92e790ecd261aadbb3876f8043307bffec3103f5add052d64a125532",
		"mult-ip-in-header":             "ace698f6827e940812cfe26c48960f9069b02291b0022b0777cf00f37405f83a",
		"mult-ip-in-sdp":                "c50fb1a29fdf4f0c3c12cf9cf5b490df1bb86d6dfacf7bc807e2c3e7e8660013",
		"port-ambiguous":                "e1925cfd89436c36025fd21d144b7788cb988bfd752498cf767e3303426f2e7d",
		"port-unambiguous":              "be3a4dbac87b1cdabde97595d117773e3864ffd2ff7ab645bfd5773e280bcd4e",
		"via-received-param-no-delim":   "45f233fd536e7d4d9f47be5098992cd912394a80460dd6b16979f61a713b9dd9",
		"via-received-param-with-delim": "568255f70f186f7d09fe437a662bb32a7b14285c5243222a1a401004b7e6ba80",
	}
	for name, sum := range want {
		b, err := rfc5118.Message(name)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(b)
		if got := hex.EncodeToString(h[:]); got != sum {
			t.Errorf("%s: sha256 %s, want %s", name, got, sum)
		}
		if bytes.ContainsRune(b, '\r') {
			t.Errorf("%s: the archive has bare LF line ends", name)
		}
	}
}

// TestWire: CRLF line ends, a closed header section, Content-Length the
// body's length; the rest unchanged.
func TestWire(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"OPTIONS sip:[::1] SIP/2.0\nContent-Length: 0\n\n", "OPTIONS sip:[::1] SIP/2.0\r\nContent-Length: 0\r\n\r\n"},
		{"OPTIONS sip:[::1] SIP/2.0\nContent-Length: 0\n", "OPTIONS sip:[::1] SIP/2.0\r\nContent-Length: 0\r\n\r\n"},
		{"OPTIONS sip:[::1] SIP/2.0\nContent-Length: 0", "OPTIONS sip:[::1] SIP/2.0\r\nContent-Length: 0\r\n\r\n"},
		{"INVITE sip:[::1] SIP/2.0\nContent-Length: 268\n\nv=0\nc=IN IP6 ::1\n", "INVITE sip:[::1] SIP/2.0\r\nContent-Length: 19\r\n\r\nv=0\r\nc=IN IP6 ::1\r\n"},
	} {
		if got := string(rfc5118.Wire([]byte(tc.in))); got != tc.want {
			t.Errorf("Wire(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, n := range rfc5118.Names() {
		b, _ := rfc5118.Message(n)
		w := rfc5118.Wire(b)
		stripped := strings.ReplaceAll(string(w), "\r", "")
		// only line ends and the Content-Length digits differ
		if strings.Count(stripped, "\n") < strings.Count(string(b), "\n") {
			t.Errorf("%s: lines lost", n)
		}
		if !strings.Contains(string(w), "\r\n\r\n") {
			t.Errorf("%s: header section not closed", n)
		}
	}
}
