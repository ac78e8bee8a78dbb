package sip

import (
	"reflect"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/routing"
)

func TestUriNumber(t *testing.T) {
	for in, want := range map[string]string{
		`<sip:+14155550100@carrier.example>;reason=unconditional`: "+14155550100",
		`"Bob" <sips:4155550100@x;user=phone>`:                    "4155550100",
		`<tel:+1-415-555-0100;phone-context=x>`:                   "+1-415-555-0100",
		`tel:+14155550100;npdi`:                                   "+14155550100",
		`<sip:+14155550100;isub=1@x>`:                             "+14155550100",
		`<sip:+14155550100@x?Reason=SIP%3Bcause%3D302>;index=1`:   "+14155550100",
		`<sip:carrier.example>`:                                   "",
		`<mailto:a@b>`:                                            "",
		`sip:user:pw@x`:                                           "user",
	} {
		if got := uriNumber(in); got != want {
			t.Errorf("uriNumber(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitHeaderValues(t *testing.T) {
	got := splitHeaderValues(`"Smith, J" <sip:a@b>;x=1, <sip:c@d;p=a,b>, <tel:+1>`)
	want := []string{`"Smith, J" <sip:a@b>;x=1`, `<sip:c@d;p=a,b>`, `<tel:+1>`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q", got)
	}
}

func TestResolve(t *testing.T) {
	snap := buildTable().Load()
	mk := func(ruri string, hdrs ...sip.Header) *sip.Request {
		var u sip.Uri
		if err := sip.ParseUri(ruri, &u); err != nil {
			t.Fatal(err)
		}
		r := sip.NewRequest(sip.INVITE, u)
		r.AppendHeader(&sip.ToHeader{Address: u})
		for _, h := range hdrs {
			r.AppendHeader(h)
		}
		return r
	}
	for _, tc := range []struct {
		name           string
		req            *sip.Request
		ok             bool
		number, origin string
		fwd, orig      string
	}{
		{"e164", mk("sip:+12282001234@gw"), true, numPurchased, "purchased", "", ""},
		{"no plus", mk("sip:12282001235@gw"), true, numImported, "imported", "", ""},
		{"national", mk("sip:2282001235@gw"), true, numImported, "imported", "", ""},
		{"tel", mk("tel:+12282001234"), true, numPurchased, "purchased", "", ""},
		{"unknown", mk("sip:+19995550100@gw"), false, "", "", "", ""},
		{"not a number", mk("sip:bob@gw"), false, "", "", "", ""},
		{"business line as R-URI", mk("sip:+14155550100@gw"), true, numPurchased, "forwarded", numBusiness, numBusiness},
		{"diversion newest first", mk("sip:+12282001234@gw",
			sip.NewHeader("Diversion", "<sip:+14155550100@a>;reason=unconditional"),
			sip.NewHeader("Diversion", "<sip:+14155550188@b>, <sip:+14155550177@c>")),
			true, numPurchased, "forwarded", numBusiness, "+14155550177"},
		{"diversion unregistered", mk("sip:+12282001234@gw", sip.NewHeader("Diversion", "<sip:+14155550199@a>")),
			true, numPurchased, "purchased", "", "+14155550199"},
		{"history-info", mk("sip:+12282001234@gw",
			sip.NewHeader("History-Info", "<sip:+14155550100@a>;index=1,<sip:+12282001234@gw>;index=1.1")),
			true, numPurchased, "forwarded", numBusiness, numBusiness},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ci, ok := resolve(tc.req, snap, "US")
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if !ok {
				return
			}
			if ci.Number != tc.number || ci.Origin != tc.origin || ci.ForwardedFrom != tc.fwd || ci.OriginalCalled != tc.orig {
				t.Errorf("got number %s origin %s fwd %q orig %q", ci.Number, ci.Origin, ci.ForwardedFrom, ci.OriginalCalled)
			}
		})
	}
}

// BenchmarkResolveE164: the number part of routing an INVITE whose
// Request-URI user is E.164 (the carrier's usual form).
func BenchmarkResolveE164(b *testing.B) {
	snap := buildTable().Load()
	var u sip.Uri
	_ = sip.ParseUri("sip:+12282001234@gw", &u)
	r := sip.NewRequest(sip.INVITE, u)
	r.AppendHeader(&sip.ToHeader{Address: u})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, ok := resolve(r, snap, "US"); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkResolveDigits: a Request-URI user in digits only without "+"
// (SIPp's [service], some carriers) on a US trunk.
func BenchmarkResolveDigits(b *testing.B) {
	snap := buildTable().Load()
	var u sip.Uri
	_ = sip.ParseUri("sip:12282001234@gw", &u)
	r := sip.NewRequest(sip.INVITE, u)
	r.AppendHeader(&sip.ToHeader{Address: u})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, ok := resolve(r, snap, "US"); !ok {
			b.Fatal("miss")
		}
	}
}

// resolve decides an INVITE with no health information and the default
// media mode (the routing part of handleInvite, for tests); ok is false
// when the number is not ours.
func resolve(req *sip.Request, snap *routing.Snapshot, country string) (routing.Decision, bool) {
	c := callOf(req, &Trunk{Country: country})
	d := routing.Decide(snap, &c, routing.Policy{})
	return d, d.Outcome != routing.OutcomeNotOurs
}
