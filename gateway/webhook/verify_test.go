package webhook

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestBadSignatureSameForEveryNumber: with a bad signature, an unknown
// number and a provisioned one (assigned or not, operator's or an
// integration's) get the same answer: 403, nothing else. The answer used
// to be 200 <Reject> for an unknown number, which let anyone list the
// numbers a gateway serves.
func TestBadSignatureSameForEveryNumber(t *testing.T) {
	rg := newRig(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	numbers := []string{"+12282009999", numMain, numUnassign, numSuspended, numTelnyx, numSandbox, "+13125559999"}
	type answer struct {
		code   int
		body   string
		header string
	}
	for _, ep := range []struct {
		name string
		req  func(to string) *http.Request
	}{
		{"twilio voice", func(to string) *http.Request { return twilioRequest(PathTwilioVoice, voiceParams(to), "not-the-token") }},
		{"twilio sms", func(to string) *http.Request {
			return twilioRequest(PathTwilioSMS, url.Values{"To": {to}, "From": {"+14155550100"}, "Body": {"hi"}}, "not-the-token")
		}},
		{"twilio status", func(to string) *http.Request {
			return twilioRequest(PathTwilioStatus, url.Values{"To": {to}, "CallSid": {"CA1"}, "CallStatus": {"completed"}}, "not-the-token")
		}},
		{"telnyx texml", func(to string) *http.Request {
			body := url.Values{"CallSid": {"v3:1"}, "From": {"+14155550100"}, "To": {to}}.Encode()
			return telnyxRequest(t, PathTelnyxTeXML, "application/x-www-form-urlencoded", []byte(body), testNow, otherKey)
		}},
		{"telnyx call control", func(to string) *http.Request {
			return telnyxRequest(t, PathTelnyxCallControl, "application/json", callEvent("call.initiated", to, "incoming"), testNow, otherKey)
		}},
		{"telnyx messaging", func(to string) *http.Request {
			body := `{"data":{"event_type":"message.received","payload":{"from":{"phone_number":"+14155550100"},"to":[{"phone_number":"` + to + `"}],"text":"hi"}}}`
			return telnyxRequest(t, PathTelnyxMessaging, "application/json", []byte(body), testNow, otherKey)
		}},
	} {
		t.Run(ep.name, func(t *testing.T) {
			var first *answer
			for _, n := range numbers {
				w := rg.do(ep.req(n))
				got := answer{w.Code, w.Body.String(), strings.Join(strings.Fields(strings.TrimSpace(headerString(w.Header()))), " ")}
				if got.code != 403 {
					t.Errorf("%s with a bad signature: %d %q", n, got.code, got.body)
				}
				if first == nil {
					first = &got
				} else if got != *first {
					t.Errorf("%s answered %+v, %s answered %+v", n, got, numbers[0], *first)
				}
			}
		})
	}
}

func headerString(h http.Header) string {
	var sb strings.Builder
	_ = h.Write(&sb)
	return sb.String()
}

// TestTelnyxReplayRefused: a Telnyx webhook sent again with the same
// signature (within the timestamp tolerance) is refused; a new event,
// signed anew, is not.
func TestTelnyxReplayRefused(t *testing.T) {
	rg := newRig(t)
	priv := telnyxTestKey(t)
	events := subscribe(t, rg.nc, "callgate.calls.>")
	ev := callEvent("call.answered", numTelnyx, "incoming")
	req := func(ts time.Time) *http.Request {
		return telnyxRequest(t, PathTelnyxCallControl, "application/json", ev, ts, priv)
	}
	if w := rg.do(req(testNow)); w.Code != 200 {
		t.Fatalf("first delivery: %d %s", w.Code, w.Body)
	}
	recv(t, events)
	if w := rg.do(req(testNow)); w.Code != 403 {
		t.Fatalf("replay: %d %s", w.Code, w.Body)
	}
	if v := testutil.ToFloat64(rg.h.Metrics().Requests.WithLabelValues("telnyx", "call_control", ResultReplay)); v != 1 {
		t.Errorf("replays counted %v", v)
	}
	noMessage(t, events, rg.nc)
	// Signed again with another timestamp: a new delivery.
	if w := rg.do(req(testNow.Add(-time.Second))); w.Code != 200 {
		t.Fatalf("new signature: %d %s", w.Code, w.Body)
	}
	recv(t, events)
	// TeXML too.
	body := []byte(url.Values{"CallSid": {"v3:texml-9"}, "From": {"+14155550100"}, "To": {numTelnyx}}.Encode())
	if w := rg.do(telnyxRequest(t, PathTelnyxTeXML, "application/x-www-form-urlencoded", body, testNow, priv)); w.Code != 200 {
		t.Fatalf("texml: %d", w.Code)
	}
	if w := rg.do(telnyxRequest(t, PathTelnyxTeXML, "application/x-www-form-urlencoded", body, testNow, priv)); w.Code != 403 {
		t.Fatalf("texml replay: %d", w.Code)
	}
}

// TestRefusedRequestBodyNotRead: a request refused for its missing
// signature is answered and its connection closed without waiting for
// (or reading) the rest of its body, even on a server without timeouts.
func TestRefusedRequestBodyNotRead(t *testing.T) {
	rg := newRig(t)
	srv := httptest.NewServer(rg.h.Routes())
	defer srv.Close()
	for _, path := range []string{PathTwilioVoice, PathTelnyxCallControl} {
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: gw.example.com\r\n"+
				"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nTo=%2B1228")
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				code int
				eof  bool
				err  error
			}
			done := make(chan result, 1)
			go func() {
				br := bufio.NewReader(conn)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					done <- result{err: err}
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				_, err = br.ReadByte() // the server closes: EOF (or reset)
				done <- result{code: resp.StatusCode, eof: err != nil}
			}()
			select {
			case r := <-done:
				if r.err != nil || r.code != 403 || !r.eof {
					t.Fatalf("answer %+v, want 403 and the connection closed", r)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no answer and close within 20s: the server waits for the body of a refused request")
			}
		})
	}
}

// TestOwnListenerConnectionCap: on its own listener the webhook edge
// serves at most max_connections connections; the next one waits until
// one closes.
func TestOwnListenerConnectionCap(t *testing.T) {
	rg := newRig(t, func(c *Config, _ *Deps) { c.Listen = "127.0.0.1:0"; c.MaxConnections = 1 })
	if err := rg.h.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer rg.h.Close()
	addr := rg.h.Addr().String()
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	// The held connection is accepted: a request on it is answered.
	if _, err := io.WriteString(held, "GET "+PathTwilioVoice+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(held)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	done := make(chan error, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
		resp, err := client.Get("http://" + addr + PathTwilioVoice)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a second connection was served while one was open (err %v)", err)
	case <-time.After(300 * time.Millisecond):
	}
	held.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("request after the slot freed: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("request not served 20s after the open connection closed")
	}
}
