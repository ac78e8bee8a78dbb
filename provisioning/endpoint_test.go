package provisioning_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/internal/testlog"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/routing"
)

// An agent stored before endpoint URIs were checked (or written around
// the API) keeps its good endpoints in the routing snapshot; the bad ones
// never reach an edge, and each is logged once, without its URI.
func TestRoutingSyncSkipsInvalidStoredEndpoints(t *testing.T) {
	s, _ := newService(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := s.Store()
	s.SetSIPSelf("", netip.MustParseAddrPort("127.0.0.1:5060"))
	stored := provisioning.Agent{ID: "bot", Name: "Bot", Workspace: "old", Endpoints: []routing.Endpoint{
		{Region: "us-east", URI: "sip:bot@127.0.0.1:5090;transport=udp\r\nX-Injected: yes"},
		{Region: "us-east", URI: "sip:bot@127.0.0.1:99999"},
		{Region: "us-east", URI: "sip:bot:hunter2@127.0.0.1:5090"},
		{Region: "us-east", URI: "sip:bot@127.0.0.1:5090;transport=ws"},
		{Region: "us-east", URI: "sip:bot@127.0.0.1:5060"}, // the gateway itself
		{Region: "us-east", URI: "SIP:bot@127.0.0.1:5091;Transport=TCP"},
	}}
	put := func() {
		b, _ := json.Marshal(stored)
		if _, err := st.Agents.Put(ctx, "old.bot", b); err != nil {
			t.Fatal(err)
		}
	}
	put()
	logs := &testlog.Buffer{}
	table := &routing.Table{}
	y := &provisioning.Syncer{Table: table, Endpoints: s.CheckEndpoint, Debounce: time.Millisecond,
		Log: slog.New(slog.NewTextHandler(logs, nil))}
	go y.Run(ctx, st.Numbers, st.Agents, st.Forwarding, st.Integrations)
	<-y.Ready()
	var got []routing.Endpoint
	table.Load().Agents(func(a *routing.Agent) { got = a.Endpoints })
	if want := []routing.Endpoint{{Region: "us-east", URI: "sip:bot@127.0.0.1:5091;transport=tcp"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("snapshot endpoints %v, want %v", got, want)
	}
	// The same agent written again (a rename) is not logged again.
	stored.Name = "Bot 2"
	put()
	testwait.CheckFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		name := ""
		table.Load().Agents(func(a *routing.Agent) { name = a.Name })
		if name != "Bot 2" {
			return fmt.Errorf("agent name %q", name)
		}
		return nil
	})
	out := logs.String()
	if n := strings.Count(out, "stored agent endpoint is invalid"); n != 5 {
		t.Errorf("%d warnings, want 5 (one per bad endpoint):\n%s", n, out)
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "X-Injected") {
		t.Errorf("a stored URI was logged:\n%s", out)
	}
}

// FuzzEndpointURI: whatever CanonicalEndpointURI accepts is a SIP URI
// with no control character, space or non-ASCII byte, a port 1-65535 (or
// none), an allowed transport, no password and no headers; it parses
// with sipgo to the same string, and is its own canonical form.
func FuzzEndpointURI(f *testing.F) {
	for _, s := range []string{
		"sip:bot@127.0.0.1:5090;transport=udp",
		"SIPS:Bot@Agent.Example.com;Transport=TLS;user=phone",
		"sip:bot@[::1]:5090",
		"sip:127.0.0.1",
		"sip:%2B14155550100@127.0.0.1:5090",
		"sip:bot@127.0.0.1:5090;transport=udp\r\nX: y",
		"sip:bot@127.0.0.1:99999",
		"sip:bot@127.0.0.1:-1",
		"sip:bot:pw@h",
		"sip:@h",
		"sip:b%0d%0a@h",
		"sip:bot@h?X=1",
		"sip:bot@[fe80::1%eth0]:5060",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := provisioning.CanonicalEndpointURI(raw)
		if err != nil {
			return
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c <= ' ' || c >= 0x7f {
				t.Fatalf("%q -> %q has byte %q", raw, out, c)
			}
		}
		var u sip.Uri
		if err := sip.ParseUri(out, &u); err != nil {
			t.Fatalf("%q -> %q does not parse: %v", raw, out, err)
		}
		if u.Scheme != "sip" && u.Scheme != "sips" || u.Host == "" || u.Password != "" || u.Headers.Length() != 0 {
			t.Fatalf("%q -> %q: %+v", raw, out, u)
		}
		hp := hostPort(out)
		if i := strings.LastIndexByte(hp, ':'); i >= 0 && !strings.HasSuffix(hp, "]") {
			p, err := strconv.Atoi(hp[i+1:])
			if err != nil || p < 1 || p > 65535 || p != u.Port {
				t.Fatalf("%q -> %q: port %q (sipgo %d)", raw, out, hp[i+1:], u.Port)
			}
		} else if u.Port != 0 {
			t.Fatalf("%q -> %q: sipgo finds port %d", raw, out, u.Port)
		}
		if tr, ok := u.UriParams.Get("transport"); ok && tr != "udp" && tr != "tcp" && tr != "tls" {
			t.Fatalf("%q -> %q: transport %q", raw, out, tr)
		}
		for _, k := range u.UriParams.Keys() {
			if k != "transport" && k != "user" {
				t.Fatalf("%q -> %q: parameter %q", raw, out, k)
			}
		}
		if again, err := provisioning.CanonicalEndpointURI(out); err != nil || again != out {
			t.Fatalf("%q -> %q -> %q, %v: not a fixed point", raw, out, again, err)
		}
		if u.String() != out {
			t.Fatalf("%q -> %q, sipgo writes %q", raw, out, u.String())
		}
	})
}

// hostPort is the host[:port] of a canonical URI.
func hostPort(uri string) string {
	_, rest, _ := strings.Cut(uri, ":")
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	hp, _, _ := strings.Cut(rest, ";")
	return hp
}

// An endpoint at one of the gateway's own SIP addresses is refused: the
// advertised host, a listener's IP, and for a wildcard listener any
// loopback or local address, each at a listening port (5060 when the URI
// names none, 5061 for sips/tls).
func TestCheckEndpointRefusesTheGatewayItself(t *testing.T) {
	s, _ := newService(t)
	if _, err := s.CheckEndpoint("sip:bot@127.0.0.1:5060"); err != nil {
		t.Fatalf("before SetSIPSelf: %v", err)
	}
	s.SetSIPSelf("GW.example.com", netip.MustParseAddrPort("0.0.0.0:5060"), netip.MustParseAddrPort("[::]:5060"), netip.MustParseAddrPort("198.51.100.7:5070"))
	for _, tc := range []struct {
		uri  string
		self bool
	}{
		{"sip:bot@gw.example.com", true},
		{"sip:bot@gw.example.com:5060;transport=tcp", true},
		{"sip:bot@gw.example.com:5070", true},
		{"sips:bot@gw.example.com", false}, // 5061: nothing listens there
		{"sip:bot@127.0.0.1:5060", true},
		{"sip:bot@127.0.0.1", true},
		{"sip:bot@localhost:5060", true},
		{"sip:bot@[::1]:5060", true},
		{"sip:bot@198.51.100.7:5070", true},
		{"sip:bot@198.51.100.7:5090", false},
		{"sip:bot@127.0.0.1:5090", false},
		{"sip:bot@agent.example.com", false},
		{"sip:bot@203.0.113.9:5070", false},
	} {
		_, err := s.CheckEndpoint(tc.uri)
		if got := err != nil && strings.Contains(err.Error(), "this gateway"); got != tc.self {
			t.Errorf("%s: err %v, want refused as the gateway itself: %v", tc.uri, err, tc.self)
		}
	}
}
