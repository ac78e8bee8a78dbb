package telnyx_test

import (
	"testing"

	"github.com/callgate/callgate/provisioning/carrier/telnyx"
)

func FuzzParseErrors(f *testing.F) {
	f.Add([]byte(`{"errors":[{"code":"10009","title":"Authentication failed","detail":"Could not understand the provided credentials.","meta":{"url":"https://developers.telnyx.com/docs/overview/errors/10009"}}]}`))
	f.Add([]byte(`{"errors":[{"code":10005,"title":"Resource not found"}]}`))
	f.Add([]byte(`{"errors":null}`))
	f.Add([]byte(`<html>502</html>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, e := range telnyx.ParseErrors(b) {
			_ = e.Code + e.Title + e.Detail
		}
	})
}

func FuzzParseAreaCode(f *testing.F) {
	for _, s := range []string{"312", "(212)", "20", "112", "1234567", "٣١٢"} {
		f.Add(s, "US")
		f.Add(s, "GB")
	}
	f.Fuzz(func(t *testing.T, s, country string) {
		ac, err := telnyx.ParseAreaCode(s, country)
		if err != nil {
			return
		}
		if len(ac) > 5 {
			t.Fatalf("%q accepted as %q", s, ac)
		}
		for _, c := range ac {
			if c < '0' || c > '9' {
				t.Fatalf("%q accepted as %q", s, ac)
			}
		}
	})
}
