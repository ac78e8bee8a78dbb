package twiliofake_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// The fake runs without a testing.T (for "callgate dev fake-carrier") and
// answers Twilio's 401 body to a request without credentials.
func TestStandaloneAndAuthError(t *testing.T) {
	s, err := twiliofake.New(nil, twiliofake.DemoOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get(s.URL() + "/2010-04-01/Accounts/" + s.AccountSID() + ".json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Code     int    `json:"code"`
		Message  string `json:"message"`
		MoreInfo string `json:"more_info"`
		Status   int    `json:"status"`
	}
	if resp.StatusCode != 401 || json.NewDecoder(resp.Body).Decode(&body) != nil ||
		body.Code != 20003 || body.Message != "Authenticate" || body.Status != 401 || body.MoreInfo != "https://www.twilio.com/docs/errors/20003" {
		t.Fatalf("status %d body %+v", resp.StatusCode, body)
	}
	if len(s.Owned()) != 3 {
		t.Fatalf("demo account has %d numbers", len(s.Owned()))
	}
	s.Close()
	s.Close() // idempotent
}
