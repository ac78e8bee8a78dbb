package sip

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/conformance/rfc4475"
)

// TestRFC4475Torture sends every torture message over UDP from
// 127.0.0.2:5060 (most Vias have no rport, so RFC 3261 18.2.2 sends the
// answer to the source IP on port 5060) and compares the answer with the
// one conformance/rfc4475/expect.tsv records for this edge ("callgate").
// A missing corpus fails the test: it says where the corpus goes.
func TestRFC4475Torture(t *testing.T) {
	exps, err := rfc4475.Load()
	if err != nil {
		t.Fatal(err)
	}
	// the shared corpus, read in place (not copied into the project)
	rfc4475Dir, found := rfc4475.FindCorpus(filepath.Join("..", ".."))
	if !found {
		abs, _ := filepath.Abs(rfc4475Dir)
		t.Fatalf("RFC 4475 corpus not found: no .dat messages in %s (the project expects it at %s from the module root, or in $%s; see conformance/README.md)", abs, rfc4475.CorpusDir, rfc4475.CorpusEnv)
	}
	dats, err := filepath.Glob(filepath.Join(rfc4475Dir, "*.dat"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range exps {
		listed[e.Name] = true
	}
	for _, d := range dats {
		if name := strings.TrimSuffix(filepath.Base(d), ".dat"); !listed[name] {
			t.Errorf("corpus message %s has no line in conformance/rfc4475/expect.tsv", name)
		}
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5060})
	if err != nil {
		t.Skip("cannot bind 127.0.0.2:5060:", err)
	}
	defer conn.Close()
	agent := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(agent.endpoint("eu")), nil, nil)
	raw := &rawUA{t: t, conn: conn, to: net.UDPAddrFromAddrPort(e.UDPAddr())}
	ok, total := 0, 0
	for _, x := range exps {
		name := x.Name
		data, err := os.ReadFile(filepath.Join(rfc4475Dir, name+".dat"))
		if err != nil {
			t.Fatal(err)
		}
		total++
		// an answer without rport goes to the Via's sent-by port
		reader := raw
		if p := viaPort(string(data)); p != 0 && p != 5060 {
			c2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: p})
			if err == nil {
				defer c2.Close()
				reader = &rawUA{t: t, conn: c2}
			}
		}
		raw.send(string(data))
		got, warn := "", ""
		if m := reader.read(300 * time.Millisecond); strings.HasPrefix(m, "SIP/2.0 ") && len(m) >= 11 {
			got = m[8:11]
			warn = first(m, "Warning")
			for _, n := range responseHeaderNotes(string(data), m) {
				t.Errorf("%-10s %s: %s", name, statusLine(m), n)
			}
		}
		for raw.read(30*time.Millisecond) != "" { // drain
		}
		want := ""
		if x.Answer != 0 {
			want = strconv.Itoa(x.Answer)
		}
		if got == want {
			ok++
		} else {
			t.Errorf("%-10s %-9s got %-4q want %-4q %s (RFC: %s)", name, x.Section, got, want, warn, x.Want)
		}
	}
	t.Logf("RFC 4475: %d of %d torture messages answered as intended", ok, total)
	alive(t, raw)
}

// viaPort is the sent-by port of the first Via line (0 if none or no rport-less port).
func viaPort(msg string) int {
	for _, l := range strings.Split(msg, "\r\n") {
		if !strings.HasPrefix(strings.ToLower(l), "via:") {
			continue
		}
		if strings.Contains(l, ";rport") {
			return 0
		}
		f := strings.Fields(l)
		if len(f) < 3 {
			return 0
		}
		hp := strings.SplitN(f[2], ";", 2)[0]
		if i := strings.LastIndexByte(hp, ':'); i > 0 {
			p, _ := strconv.Atoi(hp[i+1:])
			return p
		}
		return 0
	}
	return 0
}

var tagParam = regexp.MustCompile(`(?i);\s*tag\s*=`)

// anyLine is the first header line named by one of names (long or compact
// form, any case, LWS before the colon allowed).
func anyLine(msg string, names ...string) string {
	head := strings.SplitN(msg, "\r\n\r\n", 2)[0]
	for _, l := range strings.Split(head, "\r\n")[1:] {
		n, _, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		for _, want := range names {
			if strings.EqualFold(strings.TrimSpace(n), want) {
				return l
			}
		}
	}
	return ""
}

// responseHeaderNotes checks a final response against RFC 3261 8.2.6.2 and
// 18.2.1: received= in the top Via (the corpus' sent-by hosts are never
// the source), From, To, Call-ID and CSeq copied when the request has
// them, exactly one To tag.
func responseHeaderNotes(req, res string) []string {
	if strings.HasPrefix(res, "SIP/2.0 1") {
		return nil
	}
	var notes []string
	if v := anyLine(res, "Via", "v"); !strings.Contains(v, "received=") {
		notes = append(notes, "top Via without received=: "+v)
	}
	for _, h := range [][]string{{"From", "f"}, {"To", "t"}, {"Call-ID", "i"}, {"CSeq"}} {
		if anyLine(req, h...) != "" && anyLine(res, h...) == "" {
			notes = append(notes, h[0]+" not copied")
		}
	}
	if to := anyLine(res, "To", "t"); to != "" {
		if n := len(tagParam.FindAllString(to, -1)); n != 1 {
			notes = append(notes, "To with "+strconv.Itoa(n)+" tags: "+to)
		}
	}
	return notes
}
