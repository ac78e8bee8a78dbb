package placer

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/callgate/callgate/routing"
)

// FuzzCarrierCallback feeds arbitrary bodies and queries to the carrier
// callbacks: nothing unsigned is ever accepted (no 2xx), nothing panics,
// and no event, metering or limit changes.
func FuzzCarrierCallback(f *testing.F) {
	state := base64.StdEncoding.EncodeToString([]byte(`{"c":"call_1","w":"acme","a":"bot","n":"+12125550100","f":"+12125550100","t":"+442079460123","e":"sip:bot@127.0.0.1:5999"}`))
	f.Add(true, "", `{"data":{"event_type":"call.answered","payload":{"call_control_id":"v3:x","client_state":"`+state+`"}}}`)
	f.Add(true, "", `{"data":{"event_type":"call.hangup","payload":{"client_state":"bm90IGpzb24="}}}`)
	f.Add(true, "", `{"data":`)
	f.Add(false, "call=call_1&ws=acme&number=%2B12125550100", "CallStatus=completed&CallSid=CA1")
	f.Add(false, "call=call_1&ws=globex&number=%2B12125550199", "CallStatus=in-progress")
	f.Add(false, "%zz", "%%%")
	ev, m, l := &events{}, &meter{}, &limiter{}
	tab := table("telnyx", "int_tx", agentURI,
		routing.Integration{ID: "int_tx", Workspace: ws, Carrier: "telnyx", PublicKey: "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", AuthToken: "token"})
	p := New(Config{PublicURL: "https://gw.example.com"}, Deps{Table: tab, Events: ev, Usage: m, Limits: l})
	h := p.Handler()
	f.Fuzz(func(t *testing.T, telnyx bool, query, body string) {
		path := twilioStatusPath
		ct := "application/x-www-form-urlencoded"
		if telnyx {
			path, ct = telnyxEventsPath, "application/json"
		}
		req := httptest.NewRequest("POST", "https://gw.example.com"+path, strings.NewReader(body))
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", ct)
		req.Header.Set("X-Twilio-Signature", "bm90IGEgc2lnbmF0dXJl")
		req.Header.Set("telnyx-signature-ed25519", "bm90IGEgc2lnbmF0dXJl")
		req.Header.Set("telnyx-timestamp", "1700000000")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code < 400 {
			t.Fatalf("unsigned callback accepted: %d", w.Code)
		}
		if len(ev.ev) != 0 || l.n() != 0 {
			t.Fatal("an unsigned callback changed state")
		}
		if w.Code == http.StatusInternalServerError {
			t.Fatal("500")
		}
	})
}
