package webhook

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/routing"
)

// newFuzzHandler is a handler over the test snapshot with no network
// peers (events and messages discarded, no Call Control).
func newFuzzHandler(f *testing.F) *Handler {
	table := &routing.Table{}
	table.Store(buildTestSnapshot(""))
	h, err := New(Config{PublicURL: testPublicURL, Twilio: TwilioConfig{Edges: map[string]string{"us-east": "ashburn"}}},
		Deps{Table: table, Now: func() time.Time { return testNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	return h
}

// FuzzTwilioVoice: any request to the voice webhook gets 200 (TwiML),
// 400, 403 or 413, never a panic; a 200 is a TwiML document.
func FuzzTwilioVoice(f *testing.F) {
	f.Add("application/x-www-form-urlencoded", []byte("To=%2B12282001234&CallSid=CA1"), "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "")
	f.Add("application/x-www-form-urlencoded", []byte("To=+12282001234&To=+12282001235&Digits=1&Digits=1"), "AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "attempt=1")
	f.Add("application/json", []byte(`{"To":"+12282001234","n":1,"b":true,"x":null,"o":{}}`), "x", "bodySHA256=00")
	f.Add("", []byte("To=sip:%2B12282001234@gw.example.com;user=phone"), "sig", "attempt=99")
	f.Add("text/plain", []byte("\x00\xff"), "", "")
	h := newFuzzHandler(f)
	f.Fuzz(func(t *testing.T, ct string, body []byte, sig, query string) {
		target := PathTwilioVoice
		if q := url.QueryEscape(query); q != "" {
			target += "?" + strings.ReplaceAll(q, "%3D", "=")
		}
		r := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		r.Header.Set("X-Twilio-Signature", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case 200:
			if !strings.HasPrefix(w.Body.String(), xmlHeader+"<Response>") {
				t.Fatalf("200 without TwiML: %q", w.Body)
			}
		case 400, 403, 413:
		default:
			t.Fatalf("status %d", w.Code)
		}
	})
}

// FuzzTwilioSignature: whatever the URL and form, a request signed with
// TwilioSignature verifies, and not with another token.
func FuzzTwilioSignature(f *testing.F) {
	f.Add("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234")
	f.Add("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", "Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234&Digits=1234")
	f.Add("tok", "http://[::1]:80/x", "a=&=b&%00=%ff")
	f.Fuzz(func(t *testing.T, token, rawURL, form string) {
		params, err := url.ParseQuery(form)
		if err != nil || token == "" || strings.Contains(rawURL, "bodySHA256") {
			return
		}
		sig := TwilioSignature(token, rawURL, params)
		if err := VerifyTwilio(token, rawURL, sig, params, nil); err != nil {
			t.Fatalf("own signature refused: %v", err)
		}
		if err := VerifyTwilio(token+"x", rawURL, sig, params, nil); err == nil {
			t.Fatal("signature accepted with another token")
		}
	})
}

// FuzzTelnyxCallControl: any body and headers get 200, 400 or 403; a
// body correctly signed is never refused (200 or 400), unless it was
// already accepted once (a replay).
func FuzzTelnyxCallControl(f *testing.F) {
	f.Add([]byte(`{"data":{"event_type":"call.initiated","payload":{"call_control_id":"v3:x","to":"+13125550100","direction":"incoming",`+
		`"sip_headers":[{"name":"Diversion","value":"<sip:+16015550124@x>;reason=unconditional"}]}}}`), "1700000000", "sig", true)
	f.Add([]byte(`{"data":{"event_type":"call.hangup","payload":{"to":"+13125550100","sip_hangup_cause":"486"}}}`), "", "", false)
	f.Add([]byte(`{"data":{"event_type":"call.initiated","payload":{"to":"+13125550101","direction":"incoming","call_control_id":"a"}}}`), "x", "y", true)
	f.Add([]byte(`[]`), "1", "2", false)
	h := newFuzzHandler(f)
	h.cfg.Telnyx.PublicKey = txVecKey // the operator's key too: any number may be signed for
	priv := telnyxTestKey(f)
	replays := h.Metrics().Requests.WithLabelValues("telnyx", "call_control", ResultReplay)
	f.Fuzz(func(t *testing.T, body []byte, ts, sig string, sign bool) {
		before := testutil.ToFloat64(replays)
		r := httptest.NewRequest(http.MethodPost, PathTelnyxCallControl, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if sign {
			ts = strconv.FormatInt(testNow.Unix(), 10)
			sig = signTelnyx(priv, ts, body)
		}
		r.Header.Set("Telnyx-Timestamp", ts)
		r.Header.Set("Telnyx-Signature-Ed25519", sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch {
		case sign && w.Code != 200 && w.Code != 400 && testutil.ToFloat64(replays) == before:
			t.Fatalf("signed request answered %d %q", w.Code, w.Body)
		case w.Code != 200 && w.Code != 400 && w.Code != 403 && w.Code != 413:
			t.Fatalf("status %d", w.Code)
		}
	})
}

// FuzzDiversion: any Diversion value yields non-empty addresses.
func FuzzDiversion(f *testing.F) {
	f.Add(`<sip:+16015550124@a.example>;reason=unconditional`)
	f.Add(`"A, B" <tel:+1601>;reason=x, sip:+1602@b;counter=2`)
	f.Add(`<<>>,,;`)
	f.Fuzz(func(t *testing.T, v string) {
		for _, u := range diversionURIs([]nameValue{{"Diversion", v}}) {
			if u == "" {
				t.Fatalf("empty address from %q", v)
			}
			normalizeNumber(u)
		}
	})
}

// FuzzParseForm: the hot-path form parser agrees with url.ParseQuery
// (values and whether it fails), and signs the same bytes as the
// url.Values signer.
func FuzzParseForm(f *testing.F) {
	f.Add("To=%2B12282001234&From=+1415&Digits=5678&Digits=1234&Digits=1234")
	f.Add("a=1;b=2")
	f.Add("%zz=1&b")
	f.Add("&&=&a==b&+=%20")
	f.Fuzz(func(t *testing.T, body string) {
		want, werr := url.ParseQuery(body)
		fm := getForm()
		defer putForm(fm)
		gerr := fm.parseForm(body)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("errors differ: url.ParseQuery %v, parseForm %v", werr, gerr)
		}
		got := url.Values{}
		for _, x := range fm.fields {
			got[x.k] = append(got[x.k], x.v)
		}
		if got.Encode() != want.Encode() {
			t.Fatalf("values differ:\n got %v\nwant %v", got, want)
		}
		if a, b := TwilioSignature("k", "u", want), signForm("k", "u", fm); a != b {
			t.Fatalf("signatures differ: %s vs %s", a, b)
		}
	})
}

func signForm(token, u string, fm *form) string {
	mac, pool := getMAC(token)
	defer pool.Put(mac)
	mac.Write(fm.appendSigned([]byte(u)))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
