package sip

import (
	"strings"
	"testing"
)

// TestTransferTargets: the Refer-To and API forms an agent may name, and
// what is refused before anything is sent (internal hosts, other schemes,
// malformed numbers).
func TestTransferTargets(t *testing.T) {
	cases := []struct {
		in, api  string // Refer-To value; API "to" (when it differs: "-" = not tried)
		kind     string // "" = refused
		want     string // String()
		errMatch string
	}{
		{in: "<tel:+14155550143>", kind: targetPhone, want: "tel:+14155550143"},
		{in: "tel:+14155550143;phone-context=x", kind: targetPhone, want: "tel:+14155550143"},
		{in: "<sip:+442079460000@carrier.example;user=phone>", kind: targetPhone, want: "tel:+442079460000"},
		{in: "<sip:+1-415-555-0143@10.0.0.1;user=phone>", kind: targetPhone, want: "tel:+14155550143"},
		{in: "<sip:+14155550143@127.0.0.1>", kind: targetPhone, want: "tel:+14155550143"}, // baresip's form: no user=phone
		{in: "<sip:+1415@pbx.example.com>", errMatch: "not a valid"},
		{in: "<sip:agent=a2@callgate>", kind: targetAgent, want: "sip:agent=a2@callgate"},
		{in: "<sip:agent=a2@CALLGATE;transport=udp>", kind: targetAgent, want: "sip:agent=a2@callgate"},
		{in: "<sip:support@pbx.example.com:5070;transport=tcp>;x=1", kind: targetSIP, want: "sip:support@pbx.example.com:5070;transport=tcp"},
		{in: "<sip:human@203.0.113.7>", kind: targetSIP, want: "sip:human@203.0.113.7"},
		// refused
		{in: "<sip:human@127.0.0.1:5060>", errMatch: "internal address"},
		{in: "<sip:human@10.1.2.3>", errMatch: "internal address"},
		{in: "<sip:human@[::1]>", errMatch: "internal address"},
		{in: "<sip:human@169.254.169.254>", errMatch: "internal address"},
		{in: "<sip:human@pbx.example.com?Subject=x>", errMatch: "headers"},
		{in: "<sip:bob@callgate>", errMatch: "must name an agent"},
		{in: "<sip:agent=../x@callgate>", errMatch: "agent id"},
		{in: "<tel:4155550143>", errMatch: "E.164"},
		{in: "<tel:+1415555>", errMatch: "not a valid"},
		{in: "<http://example.com>", errMatch: "not supported"},
		{in: "<tel:+14155550143", errMatch: "unterminated"},
		{in: "<sip:bad host@x>", errMatch: "space"},
		{in: "+14155550143", errMatch: "tel: or sip:"},
		{in: "<agent:a2>", errMatch: "API form"},
		{in: strings.Repeat("a", 600), errMatch: "longer"},
	}
	for _, tc := range cases {
		got, err := parseReferTo(tc.in)
		if tc.kind == "" {
			if err == nil || !strings.Contains(err.Error(), tc.errMatch) || !isTargetErr(err) {
				t.Errorf("parseReferTo(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.errMatch)
			}
			continue
		}
		if err != nil || got.kind != tc.kind || got.String() != tc.want {
			t.Errorf("parseReferTo(%q) = %+v (%s), %v; want %s %s", tc.in, got, got.String(), err, tc.kind, tc.want)
		}
	}
	// API forms
	for in, want := range map[string]string{
		"+14155550143":          "tel:+14155550143",
		"tel:+14155550143":      "tel:+14155550143",
		"agent:a2":              "sip:agent=a2@callgate",
		"sip:agent=a2@callgate": "sip:agent=a2@callgate",
	} {
		if got, err := parseAPITarget(in); err != nil || got.String() != want {
			t.Errorf("parseAPITarget(%q) = %s, %v; want %s", in, got.String(), err, want)
		}
	}
	for _, in := range []string{"", "4155550143", "agent:", "sip:x@192.168.1.1"} {
		if _, err := parseAPITarget(in); err == nil {
			t.Errorf("parseAPITarget(%q) accepted", in)
		}
	}
}

// TestParseSipfrag: NOTIFY bodies of a REFER's subscription.
func TestParseSipfrag(t *testing.T) {
	for in, want := range map[string]int{
		"SIP/2.0 100 Trying\r\n": 100, "SIP/2.0 180 Ringing": 180, "SIP/2.0 200 OK\r\nContent-Length: 0\r\n": 200,
		"SIP/2.0 486 Busy Here": 486, "  SIP/2.0 603 Decline": 603,
		"": 0, "SIP/2.0 20": 0, "SIP/1.0 200 OK": 0, "SIP/2.0 999 x": 0, "SIP/2.0 abc": 0,
	} {
		got, ok := parseSipfrag([]byte(in))
		if got != want || ok != (want != 0) {
			t.Errorf("parseSipfrag(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func FuzzTransferTarget(f *testing.F) {
	for _, s := range []string{"<tel:+14155550143>", "<sip:+442079460000@h;user=phone>", "<sip:agent=a2@callgate>",
		"<sip:u@pbx.example.com:5070;transport=tcp>;x=1", "sip:u@[2001:db8::1]", "agent:x", "+1", "<sip:%41@h>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, api := range []bool{false, true} {
			var tg transferTarget
			var err error
			if api {
				tg, err = parseAPITarget(s)
			} else {
				tg, err = parseReferTo(s)
			}
			if err != nil {
				if !isTargetErr(err) {
					t.Fatalf("%q: untyped error %v", s, err)
				}
				continue
			}
			out := tg.String()
			// what is accepted re-parses to itself (what we send is what we checked)
			again, err := parseReferTo("<" + out + ">")
			if err != nil || again.String() != out || again.kind != tg.kind {
				t.Fatalf("%q → %q does not re-parse: %+v %v", s, out, again, err)
			}
			if strings.ContainsAny(out, "\r\n<> ") {
				t.Fatalf("%q → %q holds a header-breaking character", s, out)
			}
		}
	})
}
