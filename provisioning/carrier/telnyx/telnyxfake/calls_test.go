package telnyxfake_test

import (
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
