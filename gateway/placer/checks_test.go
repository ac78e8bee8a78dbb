package placer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/callgate/callgate/routing"
)

// TestPlaceRefusals: every refusal names its field and status, and leaves
// nothing behind (no event, no limiter slot).
func TestPlaceRefusals(t *testing.T) {
	cases := []struct {
		name   string
		req    Request
		refuse bool // the meter refuses
		full   bool // the limiter is full
		status int
		field  string
		rule   string
	}{
		{"from missing", Request{To: "+12125550155", AgentID: "bot"}, false, false, 400, "from", ""},
		{"from garbage", Request{From: "hello", To: "+12125550155", AgentID: "bot"}, false, false, 400, "from", ""},
		{"to garbage", Request{From: "+12125550100", To: "12", AgentID: "bot"}, false, false, 400, "to", ""},
		{"agent missing", Request{From: "+12125550100", To: "+12125550155"}, false, false, 400, "agent_id", ""},
		{"unknown from", Request{From: "+12125550177", To: "+12125550155", AgentID: "bot"}, false, false, 403, "from", ""},
		{"another workspace's number", Request{From: "+12125550199", To: "+12125550155", AgentID: "bot"}, false, false, 403, "from", ""},
		{"suspended from", Request{From: "+12125550101", To: "+12125550155", AgentID: "bot"}, false, false, 403, "from", ""},
		{"unknown agent", Request{From: "+12125550100", To: "+12125550155", AgentID: "ghost"}, false, false, 404, "agent_id", ""},
		{"agent without endpoint", Request{From: "+12125550100", To: "+12125550155", AgentID: "mute"}, false, false, 400, "agent_id", ""},
		{"country not allowed", Request{From: "+12125550100", To: "+33142685300", AgentID: "bot"}, false, false, 403, "to", routing.RuleCountry},
		{"premium rate", Request{From: "+12125550100", To: "+19005550123", AgentID: "bot"}, false, false, 403, "to", routing.RulePremium},
		{"no credits", Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, true, false, 402, "", ""},
		{"cap reached", Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, false, true, 503, "", "outbound.max_concurrent_calls"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, m, l := &events{}, &meter{refuse: tc.refuse}, &limiter{}
			if tc.full {
				l.max, l.active = 1, 1
			}
			before := l.active
			p := New(Config{}, Deps{Table: table("sandbox", "", "sip:bot@127.0.0.1:5999"), Events: ev, Usage: m, Limits: l})
			_, err := p.Place(context.Background(), ws, tc.req, "")
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err %v", err)
			}
			if pe.Status != tc.status || pe.Field != tc.field || pe.Rule != tc.rule {
				t.Fatalf("got %d %q %q (%s), want %d %q %q", pe.Status, pe.Field, pe.Rule, pe.Detail, tc.status, tc.field, tc.rule)
			}
			if tc.status == 503 && pe.RetryAfter != 2*time.Second {
				t.Fatalf("retry after %v", pe.RetryAfter)
			}
			if len(ev.ev) != 0 || l.active != before {
				t.Fatalf("left behind: %d events, %d active", len(ev.ev), l.active)
			}
		})
	}
}

// TestForeignNumberReadsLikeUnknown: another workspace's number and a
// number nobody holds get the same answer, word for word.
func TestForeignNumberReadsLikeUnknown(t *testing.T) {
	p := New(Config{}, Deps{Table: table("sandbox", "", "sip:bot@127.0.0.1:5999")})
	_, e1 := p.Place(context.Background(), ws, Request{From: "+12125550199", To: "+12125550155", AgentID: "bot"}, "")
	_, e2 := p.Place(context.Background(), ws, Request{From: "+12125550177", To: "+12125550155", AgentID: "bot"}, "")
	a, b := e1.(*Error), e2.(*Error)
	if a.Status != b.Status || a.Title != b.Title || len(a.Detail) == 0 ||
		a.Detail[len("+12125550199"):] != b.Detail[len("+12125550177"):] {
		t.Fatalf("%+v vs %+v", a, b)
	}
}

// TestSandboxWithoutTerminationIsAFieldError: no termination URI is a
// clear 400, not a crash, and the limiter slot is given back.
func TestSandboxWithoutTerminationIsAFieldError(t *testing.T) {
	l := &limiter{}
	p := New(Config{}, Deps{Table: table("sandbox", "", "sip:bot@127.0.0.1:5999"), Limits: l})
	_, err := p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 400 || pe.Field != "from" || l.n() != 0 {
		t.Fatalf("err %v active %d", err, l.n())
	}
}

// health marks endpoints down by URI.
type health map[string]bool

func (h health) Endpoint(uri string) (time.Duration, bool, bool) {
	return time.Millisecond, !h[uri], true
}

// TestEndpointsDownIs503: an agent whose every endpoint is down gets a
// 503 with Retry-After, as a SIP call would; with one up, it is chosen.
func TestEndpointsDownIs503(t *testing.T) {
	tab := table("sandbox", "", "sip:bot@127.0.0.1:5999")
	p := New(Config{}, Deps{Table: tab, Health: health{"sip:bot@127.0.0.1:5999": true}})
	_, err := p.Place(context.Background(), ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"}, "")
	var pe *Error
	if !errors.As(err, &pe) || pe.Status != 503 || pe.RetryAfter <= 0 {
		t.Fatalf("err %v", err)
	}
	p = New(Config{}, Deps{Table: tab, Health: health{}})
	pl, err := p.check(ws, Request{From: "+12125550100", To: "+12125550155", AgentID: "bot"})
	if err != nil || pl.endpoint.URI != "sip:bot@127.0.0.1:5999" {
		t.Fatalf("plan %+v %v", pl, err)
	}
}

// TestBusinessLineAsCallerID: a business line the workspace registered
// for forwarding may be the caller ID; the call leaves through the gateway
// number it forwards to, and says so (ForwardedFrom).
func TestBusinessLineAsCallerID(t *testing.T) {
	p := New(Config{}, Deps{Table: table("sandbox", "", "sip:bot@127.0.0.1:5999")})
	pl, err := p.check(ws, Request{From: "+13125550123", To: "+12125550155", AgentID: "bot"})
	if err != nil || pl.number.E164 != "+12125550100" || pl.forwardedFrom != "+13125550123" || pl.call.From != "+13125550123" {
		t.Fatalf("plan %+v %v", pl, err)
	}
	// Another workspace cannot use it.
	if _, err := p.check("globex", Request{From: "+13125550123", To: "+12125550155", AgentID: "bot"}); err == nil || err.(*Error).Status != 403 {
		t.Fatalf("globex: %v", err)
	}
}
