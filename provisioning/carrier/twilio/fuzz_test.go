package twilio_test

import (
	"testing"

	"github.com/callgate/callgate/provisioning/carrier/twilio"
)

func FuzzDecodePageToken(f *testing.F) {
	f.Add(twilio.PageToken{Type: "local", Page: 1, Token: "PA1"}.Encode())
	f.Add(twilio.PageToken{Type: "toll_free", Page: 9999, Token: ""}.Encode())
	f.Add("")
	f.Add("dHcxfGxvY2FsfDB8")
	f.Add("dHcxfGxvY2FsfC0xfFBB")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := twilio.DecodePageToken(s)
		if err != nil {
			return
		}
		if tok.Page < 1 || tok.Page > 10000 {
			t.Fatalf("page %d accepted", tok.Page)
		}
		// A token that decodes re-encodes to itself.
		again, err := twilio.DecodePageToken(tok.Encode())
		if err != nil || again != tok {
			t.Fatalf("round trip %+v -> %+v, %v", tok, again, err)
		}
	})
}

func FuzzParseAreaCode(f *testing.F) {
	for _, s := range []string{"415", "(212)", "", "015", "4155", "41a", " 650 ", "\x00\x01\x02"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := twilio.ParseAreaCode(s)
		if err != nil {
			return
		}
		if n != 0 && (n < 200 || n > 999) {
			t.Fatalf("%q parsed to %d", s, n)
		}
	})
}
