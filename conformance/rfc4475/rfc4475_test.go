package rfc4475_test

import (
	"strings"
	"testing"

	"github.com/callgate/callgate/conformance/rfc4475"
)

// TestCallgateAnswersSatisfyTheRFC: the answer gateway/sip asserts for
// each message is one the RFC allows, so that the regression test and
// `make conformance` cannot drift apart.
func TestCallgateAnswersSatisfyTheRFC(t *testing.T) {
	exps, err := rfc4475.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(exps) != 49 {
		t.Fatalf("%d expectations, want one for each of RFC 4475's 49 messages", len(exps))
	}
	for _, e := range exps {
		if !e.Rule.Allows(e.Answer) {
			t.Errorf("%s: callgate answers %d, which the rule %q does not allow", e.Name, e.Answer, e.Rule)
		}
		if (e.Kind == "response") != (e.Rule.Kind == rfc4475.Silent) {
			t.Errorf("%s: kind %s with rule %s: only a response sent to the gateway is dropped", e.Name, e.Kind, e.Rule)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ line, err string }{
		{"x\t1\tvalid\tparsed\t404", "5 columns"},
		{"x\t1\tvalid\tcodes 4x\t400\tw", `bad status "4x"`},
		{"x\t1\tvalid\tparsed 404\t404\tw", "takes no codes"},
		{"x\t1\tvalid\tmaybe\t404\tw", `unknown rule "maybe"`},
		{"x\t1\tvalid\tparsed\tnone\tw", `callgate answer "none"`},
		{"x\t1\tvalid\tparsed\t404\tw\nx\t1\tvalid\tparsed\t404\tw", "listed twice"},
	} {
		_, err := rfc4475.Parse("# header\n" + tc.line + "\n")
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%q: error %v, want one containing %q", tc.line, err, tc.err)
		}
	}
}

func TestRuleAllows(t *testing.T) {
	for _, tc := range []struct {
		rule   rfc4475.Rule
		status int
		want   bool
	}{
		{rfc4475.Rule{Kind: rfc4475.Codes, Codes: []int{416, 404}}, 404, true},
		{rfc4475.Rule{Kind: rfc4475.Codes, Codes: []int{416, 404}}, 400, false},
		{rfc4475.Rule{Kind: rfc4475.Parsed}, 404, true},
		{rfc4475.Rule{Kind: rfc4475.Parsed}, 400, false},
		{rfc4475.Rule{Kind: rfc4475.Parsed}, 505, false},
		{rfc4475.Rule{Kind: rfc4475.Parsed}, 0, false},
		{rfc4475.Rule{Kind: rfc4475.Answered}, 400, true},
		{rfc4475.Rule{Kind: rfc4475.Answered}, 0, false},
		{rfc4475.Rule{Kind: rfc4475.Silent}, 0, true},
		{rfc4475.Rule{Kind: rfc4475.Silent}, 200, false},
		{rfc4475.Rule{Kind: rfc4475.BadExtension}, 420, true},
		{rfc4475.Rule{Kind: rfc4475.OneAnswer}, 400, false},
	} {
		if got := tc.rule.Allows(tc.status); got != tc.want {
			t.Errorf("%s allows %d: %v, want %v", tc.rule, tc.status, got, tc.want)
		}
	}
}
