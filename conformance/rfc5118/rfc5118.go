// Package rfc5118 holds the RFC 5118 (SIP torture test messages for IPv6)
// corpus and what callgate expects of its SIP edge for each message, in
// one committed file (expect.tsv): the handling the RFC asks for (Rule,
// judged by conformance/torture against a running gateway, with
// conformance/rfc4475's rule vocabulary), the address family a message is
// sent over, and the answer callgate's edge gives (Answer, asserted by
// gateway/sip's TestRFC5118Torture).
//
// The twelve messages are in corpus/ as the RFC's Appendix A archive holds
// them (README.md); Wire turns one into the bytes sent.
package rfc5118

import (
	"bytes"
	"embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/callgate/callgate/conformance/rfc4475"
)

//go:embed expect.tsv
var expectTSV string

//go:embed corpus/*.dat
var corpus embed.FS

// Expectation is one message's line of expect.tsv.
type Expectation struct {
	Name    string // the message is corpus/Name.dat
	Section string // RFC 5118 section
	IPv6    bool   // sent over IPv6 (from ::1), else over IPv4
	Rule    rfc4475.Rule
	Answer  int    // the status callgate's edge answers with
	Want    string // the expectation in words
}

// Load returns the expectations, in the RFC's order.
func Load() ([]Expectation, error) { return Parse(expectTSV) }

// Parse reads expectations in expect.tsv's format.
func Parse(tsv string) ([]Expectation, error) {
	var out []Expectation
	seen := map[string]bool{}
	for i, line := range strings.Split(tsv, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			return nil, fmt.Errorf("rfc5118: expect.tsv line %d: %d columns, want 6 (name, section, family, rule, callgate, expected)", i+1, len(f))
		}
		e := Expectation{Name: f[0], Section: f[1], Want: f[5]}
		switch f[2] {
		case "6":
			e.IPv6 = true
		case "4":
		default:
			return nil, fmt.Errorf("rfc5118: expect.tsv line %d: %s: family %q, want 4 or 6", i+1, e.Name, f[2])
		}
		// the rule and answer columns are rfc4475's
		r, err := rfc4475.Parse(strings.Join([]string{f[0], f[1], "-", f[3], f[4], f[5]}, "\t"))
		if err != nil || len(r) != 1 {
			return nil, fmt.Errorf("rfc5118: expect.tsv line %d: %v", i+1, err)
		}
		e.Rule, e.Answer = r[0].Rule, r[0].Answer
		if seen[e.Name] {
			return nil, fmt.Errorf("rfc5118: expect.tsv line %d: %s listed twice", i+1, e.Name)
		}
		seen[e.Name] = true
		out = append(out, e)
	}
	return out, nil
}

// Message returns the archived bytes of corpus/name.dat.
func Message(name string) ([]byte, error) {
	return corpus.ReadFile("corpus/" + name + ".dat")
}

// Names lists the corpus files (without .dat).
func Names() []string {
	ents, _ := corpus.ReadDir("corpus")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".dat"))
	}
	return out
}

// Wire turns an archived message into the bytes sent (README.md): LF line
// ends become CRLF, a header section without its closing empty line gets
// one, and Content-Length is set to the body's length (the RFC's figures
// match no line-end convention for two of the three bodies). Nothing else
// changes.
func Wire(archived []byte) []byte {
	var b []byte
	for i, c := range archived {
		if c == '\n' && (i == 0 || archived[i-1] != '\r') {
			b = append(b, '\r')
		}
		b = append(b, c)
	}
	if !bytes.Contains(b, []byte("\r\n\r\n")) {
		if !bytes.HasSuffix(b, []byte("\r\n")) {
			b = append(b, '\r', '\n')
		}
		b = append(b, '\r', '\n')
	}
	head, body, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	lines := bytes.Split(head, []byte("\r\n"))
	for i, l := range lines {
		name, _, ok := bytes.Cut(l, []byte(":"))
		if ok && (strings.EqualFold(strings.TrimSpace(string(name)), "Content-Length") || strings.EqualFold(strings.TrimSpace(string(name)), "l")) {
			lines[i] = append(append([]byte{}, name...), []byte(": "+strconv.Itoa(len(body)))...)
		}
	}
	out := bytes.Join(lines, []byte("\r\n"))
	out = append(out, "\r\n\r\n"...)
	return append(out, body...)
}
