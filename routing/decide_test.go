package routing

import (
	"reflect"
	"testing"
	"time"

	"github.com/callgate/callgate/phone"
)

// Numbers of decideSnapshot.
const (
	dPurchased  = "+12282001234" // w, agent a1 (eu, us)
	dImported   = "+12282001235" // w, agent a1, imported
	dUnassigned = "+12282001236" // w, no agent
	dSuspended  = "+12282001237" // w, agent a1, suspended
	dReleasing  = "+12282001238" // w, agent a1, releasing
	dDown       = "+12282001239" // w, agent down1 whose only endpoint is down
	dRelay      = "+12282001240" // w, agent r1 with media relay
	dDirect     = "+12282001241" // w, agent d1 with media direct
	dOther      = "+12282001242" // w2, agent b1
	dBusiness   = "+14155550100" // w's line forwarding to dPurchased
	dForeign    = "+14155550101" // w2's line forwarding to dPurchased (w's number)
	dForeignUnk = "+14155550102" // w2's line forwarding to dOther (w2's number)
	dUnknown    = "+19995550100"
)

func decideSnapshot() *Snapshot {
	b := NewBuilder()
	eps := []Endpoint{{Region: "eu", URI: "sip:a@127.0.0.1:5091"}, {Region: "us", URI: "sip:a@127.0.0.1:5092"}}
	b.AddAgent(Agent{ID: "a1", Workspace: "w", Endpoints: eps})
	b.AddAgent(Agent{ID: "down1", Workspace: "w", Endpoints: []Endpoint{{Region: "eu", URI: "sip:down@127.0.0.1:5093"}}})
	b.AddAgent(Agent{ID: "r1", Workspace: "w", Endpoints: eps, Media: MediaRelay})
	b.AddAgent(Agent{ID: "d1", Workspace: "w", Endpoints: eps, Media: MediaDirect})
	b.AddAgent(Agent{ID: "b1", Workspace: "w2", Endpoints: eps})
	num := func(e164, ws, origin, status, agent string) {
		b.AddNumber(Number{E164: e164, Workspace: ws, Carrier: "twilio", Origin: origin, Status: status, AgentID: agent})
	}
	num(dPurchased, "w", OriginPurchased, StatusActive, "a1")
	num(dImported, "w", OriginImported, StatusActive, "a1")
	num(dUnassigned, "w", OriginPurchased, StatusActive, "")
	num(dSuspended, "w", OriginPurchased, StatusSuspended, "a1")
	num(dReleasing, "w", OriginPurchased, "releasing", "a1")
	num(dDown, "w", OriginPurchased, StatusActive, "down1")
	num(dRelay, "w", OriginPurchased, StatusActive, "r1")
	num(dDirect, "w", OriginPurchased, StatusActive, "d1")
	num(dOther, "w2", OriginPurchased, StatusActive, "b1")
	b.AddForward(Forward{Workspace: "w", BusinessNumber: dBusiness, GatewayNumber: dPurchased})
	b.AddForward(Forward{Workspace: "w2", BusinessNumber: dForeign, GatewayNumber: dPurchased})
	b.AddForward(Forward{Workspace: "w2", BusinessNumber: dForeignUnk, GatewayNumber: dOther})
	return b.Build()
}

func TestDecide(t *testing.T) {
	snap := decideSnapshot()
	health := fakeHealth{"sip:down@127.0.0.1:5093": {rtt: time.Millisecond}}
	type want struct {
		outcome        Outcome
		reason         Reason
		number, origin string
		fwd, orig      string
		media          string
		cands          int
	}
	for _, tc := range []struct {
		name   string
		call   Call
		policy Policy
		want   want
	}{
		{"purchased", Call{Called: dPurchased}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginPurchased, "", "", MediaDirect, 2}},
		{"imported, digits on a US trunk", Call{Called: "12282001235", Country: "US"}, Policy{},
			want{OutcomeRoute, "", dImported, OriginImported, "", "", MediaDirect, 2}},
		{"national format", Call{Called: "(228) 200-1234", Country: "US"}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginPurchased, "", "", MediaDirect, 2}},
		{"To when Called is not a number", Call{Called: "bot", To: dPurchased}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginPurchased, "", "", MediaDirect, 2}},
		{"forwarded via Diversion", Call{Called: dPurchased, Diversion: []string{dBusiness}}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginForwarded, dBusiness, dBusiness, MediaDirect, 2}},
		{"forwarded, oldest diversion is the original called", Call{Called: dPurchased,
			Diversion: []string{dBusiness, "+14155550177"}}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginForwarded, dBusiness, "+14155550177", MediaDirect, 2}},
		{"forwarded via History-Info", Call{Called: dPurchased, History: []string{dBusiness, dPurchased}}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginForwarded, dBusiness, dBusiness, MediaDirect, 2}},
		{"business line as the called number", Call{Called: dBusiness}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginForwarded, dBusiness, dBusiness, MediaDirect, 2}},
		{"unknown number forwarded by a registered line", Call{Called: dUnknown, Diversion: []string{"tel:" + dBusiness}}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginForwarded, dBusiness, dBusiness, MediaDirect, 2}},
		{"unregistered diversion", Call{Called: dPurchased, Diversion: []string{"+14155550199"}}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginPurchased, "", "+14155550199", MediaDirect, 2}},
		{"forwarding entry of another workspace is not attributed", Call{Called: dPurchased, Diversion: []string{dForeign}}, Policy{},
			want{OutcomeRoute, "", dPurchased, OriginPurchased, "", dForeign, MediaDirect, 2}},
		{"forwarding entry of another workspace does not route", Call{Called: dForeign}, Policy{},
			want{OutcomeNotOurs, ReasonUnknownNumber, "", "", "", "", "", 0}},
		{"forwarding entry of the number's workspace routes", Call{Called: dForeignUnk}, Policy{},
			want{OutcomeRoute, "", dOther, OriginForwarded, dForeignUnk, dForeignUnk, MediaDirect, 2}},
		{"unassigned", Call{Called: dUnassigned}, Policy{},
			want{OutcomeReject, ReasonUnassigned, dUnassigned, OriginPurchased, "", "", MediaDirect, 0}},
		{"suspended", Call{Called: dSuspended}, Policy{},
			want{OutcomeReject, ReasonInactive, dSuspended, OriginPurchased, "", "", MediaDirect, 0}},
		{"releasing", Call{Called: dReleasing}, Policy{},
			want{OutcomeReject, ReasonInactive, dReleasing, OriginPurchased, "", "", MediaDirect, 0}},
		{"unknown", Call{Called: dUnknown}, Policy{},
			want{OutcomeNotOurs, ReasonUnknownNumber, "", "", "", "", "", 0}},
		{"not a number", Call{Called: "bob", To: "alice"}, Policy{},
			want{OutcomeNotOurs, ReasonUnknownNumber, "", "", "", "", "", 0}},
		{"no healthy endpoint", Call{Called: dDown}, Policy{Health: health},
			want{OutcomeReject, ReasonNoEndpoint, dDown, OriginPurchased, "", "", MediaDirect, 0}},
		{"node default relay", Call{Called: dPurchased}, Policy{Media: MediaRelay},
			want{OutcomeRoute, "", dPurchased, OriginPurchased, "", "", MediaRelay, 2}},
		{"agent relay", Call{Called: dRelay}, Policy{},
			want{OutcomeRoute, "", dRelay, OriginPurchased, "", "", MediaRelay, 2}},
		{"agent direct wins over the node default", Call{Called: dDirect}, Policy{Media: MediaRelay},
			want{OutcomeRoute, "", dDirect, OriginPurchased, "", "", MediaDirect, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(snap, &tc.call, tc.policy)
			got := want{d.Outcome, d.Reason, d.Number, d.Origin, d.ForwardedFrom, d.OriginalCalled, d.Media, len(d.Candidates)}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			if d.Outcome == OutcomeNotOurs {
				if d.Route != nil || d.Agent != nil {
					t.Errorf("not ours with a route: %+v", d)
				}
				return
			}
			if d.Route == nil || d.Route.Number.E164 != d.Number || d.Workspace != d.Route.Number.Workspace {
				t.Errorf("route %+v does not match number %s workspace %s", d.Route, d.Number, d.Workspace)
			}
		})
	}
}

// TestDecideCandidatesOrder: the decision's candidates are the ones
// Candidates gives (voice region first, then health and RTT).
func TestDecideCandidatesOrder(t *testing.T) {
	b := NewBuilder()
	b.AddAgent(Agent{ID: "a", Workspace: "w", Endpoints: []Endpoint{
		{Region: "eu", URI: "sip:a@127.0.0.1:1"}, {Region: "us", URI: "sip:a@127.0.0.1:2"}, {Region: "ap", URI: "sip:a@127.0.0.1:3"}}})
	b.AddNumber(Number{E164: dPurchased, Workspace: "w", Status: StatusActive, AgentID: "a", VoiceRegion: "us"})
	snap := b.Build()
	h := fakeHealth{"sip:a@127.0.0.1:3": {rtt: time.Millisecond}}
	d := Decide(snap, &Call{Called: dPurchased}, Policy{Health: h})
	r, _ := snap.Lookup(dPurchased)
	if want := Candidates(r, h); !reflect.DeepEqual(d.Candidates, want) || len(want) != 2 || want[0].Region != "us" {
		t.Errorf("candidates %v, want %v (us first, ap down)", d.Candidates, want)
	}
}

// TestDecideAllocations: the decision of a routed E.164 call allocates
// only its candidate list.
func TestDecideAllocations(t *testing.T) {
	snap := decideSnapshot()
	c := &Call{Called: dPurchased, Diversion: []string{dBusiness}}
	if n := testing.AllocsPerRun(200, func() { Decide(snap, c, Policy{}) }); n > 1 {
		t.Errorf("Decide allocates %v times, want at most 1", n)
	}
}

// TestLookupNumberFastPathAgreesWithParse: a called number in digits
// only is looked up without libphonenumber in NANP countries; the answer
// must be the one full normalisation gives, for every country.
func TestLookupNumberFastPathAgreesWithParse(t *testing.T) {
	snap := decideSnapshot()
	b := NewBuilder() // a UK number in a second table
	b.AddNumber(Number{E164: "+442079460123", Status: StatusActive})
	uk := b.Build()
	inputs := []string{"12282001234", "2282001234", "12282001235", "2282009999", "12282009999", "1228200123",
		"442079460123", "02079460123", "2079460123", "11282001234", "0282001234", "+12282001234", "228-200-1234"}
	for _, sn := range []*Snapshot{snap, uk} {
		for _, country := range []string{"US", "us", "CA", "PR", "GB", "DE", "NO", ""} {
			for _, in := range inputs {
				e, r, ok := LookupNumber(sn, in, country)
				want, wok := phone.Parse(in, country)
				var wr *Route
				if wok {
					wr, wok = sn.Lookup(want)
				}
				if ok != wok || (ok && (e != want || r != wr)) {
					t.Errorf("LookupNumber(%q, %q) = %q, %v; normalise and look up: %q, %v", in, country, e, ok, want, wok)
				}
			}
		}
	}
}
