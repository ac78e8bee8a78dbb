package telnyxfake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
)

// Call Control dial answers 422 with the pointer at fault, then 200 with
// the call's ids; transfer needs an answered call (422 90018 before) and
// an existing one (404).
func TestDialAndTransferAnswers(t *testing.T) {
	s := telnyxfake.MustNew(t, telnyxfake.Options{})
	for _, body := range []string{
		`{"to":"+14155550123","from":"+14155550101"}`,
		`{"connection_id":"1","from":"+14155550101"}`,
		`{"connection_id":"1","to":"+14155550123"}`,
		`{"connection_id":"1","to":"12","from":"+14155550101"}`,
		`{"connection_id":"1","to":"+14155550123","from":"+14155550101","client_state":"not base64!"}`,
	} {
		if code, b := do(t, s, "POST", "/v2/calls", body); code != 422 || len(b.Errors) != 1 || b.Errors[0].Code != "10015" {
			t.Fatalf("%s: %d %+v", body, code, b)
		}
	}
	if code, _ := do(t, s, "POST", "/v2/calls", `{"connection_id":"1","to":"+14155550123","from":"+14155550101","webhook_url":"http://127.0.0.1:1/x"}`); code != 200 {
		t.Fatalf("dial: %d", code)
	}
	id := s.Dialled()[0].CallControlID
	if code, b := do(t, s, "POST", "/v2/calls/"+id+"/actions/transfer", `{"to":"sip:bot@127.0.0.1"}`); code != 422 || b.Errors[0].Code != "90018" {
		t.Fatalf("transfer before answer: %d %+v", code, b)
	}
	if code, _ := do(t, s, "POST", "/v2/calls/v3:nope/actions/transfer", `{"to":"sip:bot@127.0.0.1"}`); code != 404 {
		t.Fatalf("transfer of an unknown call: %d", code)
	}
}

// An incoming call is transferred while parked (Call Control answers it
// that way); send_dtmf checks digits (422 at /digits, w and W pauses
// allowed) and needs a live call: 404 unknown, 422 90018 before the
// answer and after the hangup.
func TestIncomingTransferAndSendDTMFAnswers(t *testing.T) {
	s := telnyxfake.MustNew(t, telnyxfake.Options{})
	in, code, err := s.Incoming(context.Background(), "+15005550006", "+14155550101", "1", "")
	if err != nil || code != 0 || in.Direction != "incoming" || in.State != "parked" {
		t.Fatalf("incoming: %+v %d %v", in, code, err)
	}
	path := "/v2/calls/" + in.CallControlID + "/actions/"
	if code, b := do(t, s, "POST", path+"send_dtmf", `{"digits":"1"}`); code != 422 || b.Errors[0].Code != "90018" {
		t.Fatalf("send_dtmf before the answer: %d %+v", code, b)
	}
	if code, _ := do(t, s, "POST", path+"transfer", `{"to":"sip:bot@127.0.0.1"}`); code != 200 {
		t.Fatalf("transfer of a parked incoming call: %d", code)
	}
	for _, body := range []string{`{}`, `{"digits":"12x"}`, `{"digits":"1","duration_millis":50}`} {
		if code, b := do(t, s, "POST", path+"send_dtmf", body); code != 422 || b.Errors[0].Code != "10015" {
			t.Fatalf("%s: %d %+v", body, code, b)
		}
	}
	if code, _ := do(t, s, "POST", path+"send_dtmf", `{"digits":"1www2WABCDw9*#","command_id":"c1"}`); code != 200 {
		t.Fatalf("send_dtmf: %d", code)
	}
	if code, _ := do(t, s, "POST", path+"send_dtmf", `{"digits":"1www2WABCDw9*#","command_id":"c1"}`); code != 200 {
		t.Fatalf("repeated command_id: %d", code)
	}
	if d := s.Dialled()[0].DTMF; len(d) != 1 || d[0].Digits != "1www2WABCDw9*#" {
		t.Fatalf("recorded %+v, want one send_dtmf", d)
	}
	if code, _ := do(t, s, "POST", "/v2/calls/v3:nope/actions/send_dtmf", `{"digits":"1"}`); code != 404 {
		t.Fatalf("send_dtmf to an unknown call: %d", code)
	}
	if _, err := s.Hangup(context.Background(), in.CallControlID); err != nil {
		t.Fatal(err)
	}
	if code, b := do(t, s, "POST", path+"send_dtmf", `{"digits":"1"}`); code != 422 || b.Errors[0].Code != "90018" {
		t.Fatalf("send_dtmf after the hangup: %d %+v", code, b)
	}
}

// The gateway transfers an incoming call as soon as it has answered
// call.initiated, while Incoming is still returning: what Incoming returns
// is the call as it was made, and reading it does not race the transfer
// (run with -race: it read the live call after the webhook).
func TestIncomingReturnsTheCallWhileTheGatewayActsOnIt(t *testing.T) {
	s := telnyxfake.MustNew(t, telnyxfake.Options{})
	done := make(chan error, 1)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Data struct {
				Payload struct {
					CallControlID string `json:"call_control_id"`
				} `json:"payload"`
			} `json:"data"`
		}
		err := json.NewDecoder(r.Body).Decode(&ev)
		w.WriteHeader(http.StatusOK)
		go func() {
			if err != nil {
				done <- err
				return
			}
			req, _ := http.NewRequest("POST", s.URL()+"/v2/calls/"+ev.Data.Payload.CallControlID+"/actions/transfer",
				strings.NewReader(`{"to":"sip:bot@127.0.0.1"}`))
			req.Header.Set("Authorization", "Bearer "+s.APIKey())
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("transfer: %d", resp.StatusCode)
				}
			}
			done <- err
		}()
	}))
	defer gw.Close()
	in, code, err := s.Incoming(context.Background(), "+15005550006", "+14155550101", "1", gw.URL)
	if err != nil || code != 200 {
		t.Fatalf("incoming: %d %v", code, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if in.State != "parked" || len(in.Transfers) != 0 {
		t.Fatalf("Incoming returned %+v, want the call as made (parked, no transfer)", in)
	}
	if c := s.Dialled()[0]; c.State != "bridging" || len(c.Transfers) != 1 {
		t.Fatalf("the call after the transfer: %+v", c)
	}
}
