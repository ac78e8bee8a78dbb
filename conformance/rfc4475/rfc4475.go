// Package rfc4475 is what callgate expects of its SIP edge for each RFC
// 4475 torture message, in one committed file (expect.tsv): the handling
// the RFC allows (Rule, judged by conformance/torture against a running
// gateway) and the answer callgate's edge gives (Answer, asserted by
// gateway/sip's TestRFC4475Torture). Every Answer satisfies its Rule
// (checked by this package's test).
//
// The corpus (NAME.dat, byte for byte from the RFC) is test data outside
// the tree, read in place from CorpusDir.
package rfc4475

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// CorpusDir is where the torture messages are, relative to the module root.
const CorpusDir = "../shared/testdata/rfc4475"

//go:embed expect.tsv
var expectTSV string

// Rule kinds: what the RFC allows of a proxy or UAS for one message.
const (
	Codes        = "codes"         // a final response with one of Rule.Codes
	Parsed       = "parsed"        // a final response that is not 400 or 505, or the request forwarded intact
	Answered     = "answered"      // any final response
	Silent       = "silent"        // nothing comes back
	BadExtension = "bad-extension" // 420 with Unsupported listing the required option tags
	OneAnswer    = "one-answer"    // one final response to the first request, not 400
)

// Rule is what the RFC allows.
type Rule struct {
	Kind  string
	Codes []int // for Codes
}

// Allows reports whether answering with status (0: no answer) can satisfy
// the rule. For Parsed, BadExtension and OneAnswer a running gateway is
// judged on more than the status (a forwarded body, the Unsupported
// header, the trailing octets ignored).
func (r Rule) Allows(status int) bool {
	switch r.Kind {
	case Codes:
		for _, c := range r.Codes {
			if status == c {
				return true
			}
		}
		return false
	case Parsed, OneAnswer:
		return status >= 100 && status != 400 && status != 505
	case Answered:
		return status >= 100
	case Silent:
		return status == 0
	case BadExtension:
		return status == 420
	}
	return false
}

func (r Rule) String() string {
	if r.Kind != Codes {
		return r.Kind
	}
	cs := make([]string, len(r.Codes))
	for i, c := range r.Codes {
		cs[i] = strconv.Itoa(c)
	}
	return Codes + " " + strings.Join(cs, ",")
}

// Expectation is one message's line of expect.tsv.
type Expectation struct {
	Name    string // the message is Name + ".dat" in the corpus
	Section string // RFC 4475 section
	Kind    string // valid, invalid-syntax, ..., or response (a response sent to the gateway)
	Rule    Rule
	Answer  int    // the status callgate's edge answers with; 0: none
	Want    string // the expectation in words
}

// Load returns the expectations, in the RFC's order.
func Load() ([]Expectation, error) {
	return Parse(expectTSV)
}

// Parse reads expectations in expect.tsv's format.
func Parse(tsv string) ([]Expectation, error) {
	var out []Expectation
	seen := map[string]bool{}
	for i, line := range strings.Split(tsv, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("rfc4475: expect.tsv line %d: %w", i+1, err)
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("rfc4475: expect.tsv line %d: %s listed twice", i+1, e.Name)
		}
		seen[e.Name] = true
		out = append(out, e)
	}
	return out, nil
}

func parseLine(line string) (Expectation, error) {
	f := strings.Split(line, "\t")
	if len(f) != 6 {
		return Expectation{}, fmt.Errorf("%d columns, want 6 (name, section, kind, rule, callgate, expected)", len(f))
	}
	e := Expectation{Name: f[0], Section: f[1], Kind: f[2], Want: f[5]}
	kind, codes, _ := strings.Cut(f[3], " ")
	e.Rule.Kind = kind
	switch kind {
	case Codes:
		for _, c := range strings.Split(codes, ",") {
			n, err := strconv.Atoi(c)
			if err != nil || n < 100 || n > 699 {
				return e, fmt.Errorf("%s: rule %q: bad status %q", e.Name, f[3], c)
			}
			e.Rule.Codes = append(e.Rule.Codes, n)
		}
	case Parsed, Answered, Silent, BadExtension, OneAnswer:
		if codes != "" {
			return e, fmt.Errorf("%s: rule %q takes no codes", e.Name, f[3])
		}
	default:
		return e, fmt.Errorf("%s: unknown rule %q", e.Name, f[3])
	}
	if f[4] != "-" {
		n, err := strconv.Atoi(f[4])
		if err != nil || n < 100 || n > 699 {
			return e, fmt.Errorf("%s: callgate answer %q is not a status or -", e.Name, f[4])
		}
		e.Answer = n
	}
	return e, nil
}

// CorpusEnv names a directory of the torture messages that overrides the
// search below.
const CorpusEnv = "CALLGATE_RFC4475_DIR"

// FindCorpus returns the directory of the torture messages: $CALLGATE_RFC4475_DIR
// when set, else CorpusDir from the module root (moduleRoot, relative or
// absolute), else shared/testdata/rfc4475 in the nearest directory above
// the module root, or above the checkout a local clone was made from,
// that has it. It returns the first place looked at and false when no
// directory there holds a .dat message.
func FindCorpus(moduleRoot string) (string, bool) {
	has := func(dir string) bool {
		m, err := filepath.Glob(filepath.Join(dir, "*.dat"))
		return err == nil && len(m) > 0
	}
	if d := os.Getenv(CorpusEnv); d != "" {
		return d, has(d)
	}
	first := filepath.Join(moduleRoot, CorpusDir)
	if has(first) {
		return first, true
	}
	starts := []string{moduleRoot}
	// a clone of a local checkout: look beside the checkout it came from
	if out, err := exec.Command("git", "-C", moduleRoot, "config", "--get", "remote.origin.url").Output(); err == nil {
		if u := strings.TrimPrefix(strings.TrimSpace(string(out)), "file://"); filepath.IsAbs(u) {
			starts = append(starts, u)
		}
	}
	for _, s := range starts {
		abs, err := filepath.Abs(s)
		if err != nil {
			continue
		}
		for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
			if d := filepath.Join(dir, "shared", "testdata", "rfc4475"); has(d) {
				return d, true
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	return first, false
}
