package webhook

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/callgate/callgate/routing"
)

// benchSnapshot has n Twilio numbers spread over 100 agents with two
// endpoints each, all owned by one integration.
func benchSnapshot(n int) *routing.Snapshot {
	b := routing.NewBuilder()
	b.AddIntegration(routing.Integration{ID: "int-tw", Workspace: "w1", Carrier: "twilio", AuthToken: testToken})
	for i := range 100 {
		b.AddAgent(routing.Agent{ID: fmt.Sprintf("agent-%d", i), Workspace: "w1", Endpoints: []routing.Endpoint{
			{Region: "us-east", URI: fmt.Sprintf("sip:agent%d@127.0.0.1:5090;transport=udp", i)},
			{Region: "eu-west", URI: fmt.Sprintf("sip:agent%d@127.0.0.2:5090;transport=udp", i)},
		}})
	}
	for i := range n {
		b.AddNumber(routing.Number{E164: fmt.Sprintf("+1228%07d", i), Workspace: "w1", Carrier: "twilio",
			Origin: routing.OriginImported, Status: routing.StatusActive, AgentID: fmt.Sprintf("agent-%d", i%100),
			IntegrationID: "int-tw"})
	}
	return b.Build()
}

// discardWriter is a reusable ResponseWriter.
type discardWriter struct {
	h    http.Header
	code int
	n    int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }
func (d *discardWriter) WriteHeader(c int)           { d.code = c }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// A signed Twilio voice webhook (a typical inbound-call parameter set)
// through the whole handler: parse, look up, verify, choose, write TwiML.
func BenchmarkTwilioVoice(b *testing.B) {
	table := &routing.Table{}
	table.Store(benchSnapshot(100_000))
	h, err := New(Config{PublicURL: testPublicURL, Twilio: TwilioConfig{Edges: map[string]string{"us-east": "ashburn"}}},
		Deps{Table: table})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	p := url.Values{
		"AccountSid": {"AC0123456789abcdef0123456789abcdef"}, "ApiVersion": {"2010-04-01"},
		"CallSid": {"CA0123456789abcdef0123456789abcdef"}, "CallStatus": {"ringing"}, "Called": {"+12280004242"},
		"CalledCity": {"BILOXI"}, "CalledCountry": {"US"}, "CalledState": {"MS"}, "CalledZip": {"39530"},
		"Caller": {"+14155550100"}, "CallerCity": {"SAN FRANCISCO"}, "CallerCountry": {"US"}, "CallerState": {"CA"},
		"Direction": {"inbound"}, "From": {"+14155550100"}, "FromCountry": {"US"}, "To": {"+12280004242"}, "ToCountry": {"US"},
	}
	body := []byte(p.Encode())
	r := httptest.NewRequest(http.MethodPost, PathTwilioVoice, nil)
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Twilio-Signature", TwilioSignature(testToken, testPublicURL+PathTwilioVoice, p))
	rd := bytes.NewReader(body)
	w := &discardWriter{h: http.Header{}}
	mux := h.Routes()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		rd.Reset(body)
		r.Body = nopCloser{rd}
		clear(w.h)
		w.code = 0
		mux.ServeHTTP(w, r)
		if w.code != 200 {
			b.Fatalf("status %d", w.code)
		}
	}
}

func BenchmarkTwilioSignature(b *testing.B) {
	p := twVecParams()
	b.ReportAllocs()
	for b.Loop() {
		TwilioSignature(twVecToken, twVecURL, p)
	}
}
