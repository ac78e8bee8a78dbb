package twiliofake_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// The Calls API answers bad input as Twilio does (400 with code, message,
// more_info, status) and a good call with 201 and the Call resource.
func TestCreateCallAnswers(t *testing.T) {
	s := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+14155550101", Voice: true}}})
	post := func(form url.Values) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.URL()+"/2010-04-01/Accounts/"+s.AccountSID()+"/Calls.json", strings.NewReader(form.Encode()))
		req.SetBasicAuth(s.AccountSID(), s.AuthToken())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	tw := "<Response><Hangup/></Response>"
	for _, tc := range []struct {
		form url.Values
		code float64
	}{
		{url.Values{"From": {"+14155550101"}, "Twiml": {tw}}, 21201},
		{url.Values{"To": {"+14155550123"}, "Twiml": {tw}}, 21213},
		{url.Values{"To": {"+14155550123"}, "From": {"+14155550101"}}, 21205},
		{url.Values{"To": {"12"}, "From": {"+14155550101"}, "Twiml": {tw}}, 21211},
		{url.Values{"To": {"+14155550123"}, "From": {"+14155550199"}, "Twiml": {tw}}, 21210},
	} {
		status, m := post(tc.form)
		if status != 400 || m["code"] != tc.code || m["status"] != float64(400) || m["message"] == "" || m["more_info"] == "" {
			t.Fatalf("%v: %d %v", tc.form, status, m)
		}
	}
	status, m := post(url.Values{"To": {"+14155550123"}, "From": {"+14155550101"}, "Twiml": {tw}, "StatusCallback": {"https://gw.example.com/s"},
		"StatusCallbackEvent": {"answered", "completed"}})
	if status != 201 || !strings.HasPrefix(m["sid"].(string), "CA") || m["status"] != "queued" || m["direction"] != "outbound-api" || m["from"] != "+14155550101" {
		t.Fatalf("create: %d %v", status, m)
	}
	if cs := s.Calls(); len(cs) != 1 || cs[0].Twiml != tw || len(cs[0].StatusCallbackEvents) != 2 {
		t.Fatalf("recorded %+v", cs)
	}
}

// Updating a call answers as Twilio does: 404 with code 20404 for an
// unknown sid; 200 with the Call resource, status completed.
func TestUpdateCallAnswers(t *testing.T) {
	s := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+14155550101", Voice: true}}})
	post := func(path string, form url.Values) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", s.URL()+"/2010-04-01/Accounts/"+s.AccountSID()+path, strings.NewReader(form.Encode()))
		req.SetBasicAuth(s.AccountSID(), s.AuthToken())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	status, m := post("/Calls/CA0123456789abcdef0123456789abcdef.json", url.Values{"Status": {"completed"}})
	if status != 404 || m["code"] != float64(20404) || m["status"] != float64(404) {
		t.Fatalf("unknown sid: %d %v", status, m)
	}
	_, m = post("/Calls.json", url.Values{"To": {"+14155550123"}, "From": {"+14155550101"}, "Twiml": {"<Response/>"}})
	sid, _ := m["sid"].(string)
	status, m = post("/Calls/"+sid+".json", url.Values{"Status": {"completed"}})
	if status != 200 || m["sid"] != sid || m["status"] != "completed" {
		t.Fatalf("update: %d %v", status, m)
	}
	if cs := s.Calls(); len(cs) != 1 || len(cs[0].Updates) != 1 || cs[0].Updates[0] != "completed" {
		t.Fatalf("recorded %+v", cs)
	}
}

// An inbound call can be redirected with new TwiML while in progress (the
// resource says direction inbound); once the caller hung up the update is
// 400 with 21220, as Twilio answers.
func TestInboundCallRedirect(t *testing.T) {
	s := twiliofake.MustNew(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+14155550101", Voice: true}}})
	sid := s.Inbound("+15005550006", "+14155550101")
	update := func() (int, map[string]any) {
		t.Helper()
		form := url.Values{"Twiml": {`<Response><Dial><Number>+12125550143</Number></Dial></Response>`}}
		req, _ := http.NewRequest("POST", s.URL()+"/2010-04-01/Accounts/"+s.AccountSID()+"/Calls/"+sid+".json", strings.NewReader(form.Encode()))
		req.SetBasicAuth(s.AccountSID(), s.AuthToken())
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, m := update(); code != 200 || m["direction"] != "inbound" || m["sid"] != sid || m["status"] != "in-progress" {
		t.Fatalf("redirect: %d %v", code, m)
	}
	if c := s.Calls()[0]; len(c.TwimlUpdates) != 1 || !strings.Contains(c.TwimlUpdates[0], "+12125550143") {
		t.Fatalf("recorded %+v", c)
	}
	s.Hangup(sid)
	if code, m := update(); code != 400 || m["code"] != float64(21220) {
		t.Fatalf("redirect after the hangup: %d %v", code, m)
	}
}
