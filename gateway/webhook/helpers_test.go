package webhook

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/routing"
	"github.com/callgate/callgate/store/storetest"
)

const (
	testPublicURL = "https://gw.example.com"
	testToken     = "tok0123456789abcdef"
	testTelnyxAPI = "KEYtelnyx0123"

	numMain      = "+12282001234" // twilio, imported, assigned to a1, voice region us-east
	numUnassign  = "+12282001235" // twilio, no agent
	numSuspended = "+12282001236" // twilio, suspended
	numSandbox   = "+12282001237" // sandbox: no integration
	numNoEP      = "+12282001238" // assigned to an agent without endpoints
	numTelnyx    = "+13125550100" // telnyx integration, assigned to a1
	numBusiness  = "+16015550123" // business line forwarding to numMain
	numTxUnasg   = "+13125550101" // telnyx, no agent
	numBusiness2 = "+16015550124" // business line forwarding to numTelnyx
	numRelay     = "+12282001239" // twilio, agent a3 in media relay mode
	numTxRelay   = "+13125550102" // telnyx, agent a3 in media relay mode
)

var testNow = time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)

// telnyxTestKey is RFC 8032 test 1's key pair (the field-notes vector).
func telnyxTestKey(t testing.TB) ed25519.PrivateKey {
	seed, err := hex.DecodeString(txVecSeed)
	if err != nil {
		t.Fatal(err)
	}
	return ed25519.NewKeyFromSeed(seed)
}

// buildTestSnapshot builds the routing snapshot the tests route with,
// through the real routing.Builder.
func buildTestSnapshot(messagingURL string) *routing.Snapshot {
	b := routing.NewBuilder()
	b.AddAgent(routing.Agent{ID: "a1", Workspace: "w1", Name: "Reception", MessagingURL: messagingURL,
		Endpoints: []routing.Endpoint{
			{Region: "eu-west", URI: "sip:bot@127.0.0.2:5090;transport=udp"},
			{Region: "us-east", URI: "sip:bot@127.0.0.1:5090;transport=udp"},
		}})
	b.AddAgent(routing.Agent{ID: "a2", Workspace: "w1", Name: "No endpoints"})
	b.AddAgent(routing.Agent{ID: "a3", Workspace: "w1", Name: "Relayed", Media: "relay",
		Endpoints: []routing.Endpoint{{Region: "us-east", URI: "sip:relay@127.0.0.1:5092"}, {Region: "eu-west", URI: "sip:relay@127.0.0.2:5092"}}})
	b.AddNumber(routing.Number{E164: numRelay, Workspace: "w1", Carrier: "twilio", Origin: routing.OriginImported,
		Status: routing.StatusActive, AgentID: "a3", IntegrationID: "int-tw"})
	b.AddNumber(routing.Number{E164: numTxRelay, Workspace: "w1", Carrier: "telnyx", Origin: routing.OriginImported,
		Status: routing.StatusActive, AgentID: "a3", IntegrationID: "int-tx"})
	b.AddIntegration(routing.Integration{ID: "int-tw", Workspace: "w1", Carrier: "twilio", AccountID: "AC123", AuthToken: testToken})
	b.AddIntegration(routing.Integration{ID: "int-tx", Workspace: "w1", Carrier: "telnyx", PublicKey: txVecKey})
	tw := func(e164, agent, status string) routing.Number {
		return routing.Number{E164: e164, Workspace: "w1", Carrier: "twilio", Origin: routing.OriginImported,
			Status: status, AgentID: agent, VoiceRegion: "us-east", IntegrationID: "int-tw"}
	}
	b.AddNumber(tw(numMain, "a1", routing.StatusActive))
	b.AddNumber(tw(numUnassign, "", routing.StatusActive))
	b.AddNumber(tw(numSuspended, "a1", routing.StatusSuspended))
	b.AddNumber(tw(numNoEP, "a2", routing.StatusActive))
	b.AddNumber(routing.Number{E164: numSandbox, Workspace: "w1", Carrier: "sandbox", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1"})
	b.AddNumber(routing.Number{E164: numTelnyx, Workspace: "w1", Carrier: "telnyx", Origin: routing.OriginPurchased,
		Status: routing.StatusActive, AgentID: "a1", IntegrationID: "int-tx"})
	b.AddNumber(routing.Number{E164: numTxUnasg, Workspace: "w1", Carrier: "telnyx", Origin: routing.OriginImported,
		Status: routing.StatusActive, IntegrationID: "int-tx"})
	b.AddForward(routing.Forward{Workspace: "w1", BusinessNumber: numBusiness, GatewayNumber: numMain})
	b.AddForward(routing.Forward{Workspace: "w1", BusinessNumber: numBusiness2, GatewayNumber: numTelnyx})
	return b.Build()
}

// runNATS starts an embedded nats-server on a loopback port.
func runNATS(t testing.TB) (*server.Server, *nats.Conn) {
	t.Helper()
	s := storetest.RunServer(t)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return s, nc
}

// subscribe collects messages on subject.
func subscribe(t testing.TB, nc *nats.Conn, subject string) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	return ch
}

func recv(t testing.TB, ch chan *nats.Msg) *nats.Msg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no NATS message within 5s")
		return nil
	}
}

func noMessage(t testing.TB, ch chan *nats.Msg, nc *nats.Conn) {
	t.Helper()
	nc.Flush()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message on %s: %s", m.Subject, m.Data)
	case <-time.After(50 * time.Millisecond):
	}
}

// rig is a handler wired to real peers: embedded NATS, an httptest agent
// messaging URL and an httptest Telnyx Call Control API.
type rig struct {
	h     *Handler
	table *routing.Table
	nc    *nats.Conn
	reg   *prometheus.Registry
	agent *recorder // the agent's messaging URL
	telx  *recorder // the Telnyx API
}

type recorded struct {
	Method, Path, Auth, ContentType string
	Body                            []byte
}

// recorder is an httptest server that records requests and answers with
// the status its function returns.
type recorder struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	got    chan recorded
	status func(n int) int // answer to the n-th request; may block (not under mu)
}

func newRecorder(t testing.TB) *recorder {
	rc := &recorder{got: make(chan recorded, 64), status: func(int) int { return 200 }}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec := recorded{Method: r.Method, Path: r.URL.EscapedPath(), Auth: r.Header.Get("Authorization"),
			ContentType: r.Header.Get("Content-Type"), Body: b}
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, rec)
		n := len(rc.reqs)
		status := rc.status
		rc.mu.Unlock()
		st := status(n)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(st)
		if st >= 400 {
			io.WriteString(w, `{"errors":[{"code":"90018","title":"Call has already ended","detail":"This call is no longer active"}]}`)
		} else {
			io.WriteString(w, `{"data":{"result":"ok"}}`)
		}
		select {
		case rc.got <- rec:
		default:
		}
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *recorder) next(t testing.TB) recorded {
	t.Helper()
	select {
	case r := <-rc.got:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no request within 5s")
		return recorded{}
	}
}

func (rc *recorder) none(t testing.TB, wait time.Duration) {
	t.Helper()
	select {
	case r := <-rc.got:
		t.Fatalf("unexpected request %s %s %s", r.Method, r.Path, r.Body)
	case <-time.After(wait):
	}
}

type rigOption func(*Config, *Deps)

func newRig(t testing.TB, opts ...rigOption) *rig {
	t.Helper()
	_, nc := runNATS(t)
	rg := &rig{table: &routing.Table{}, nc: nc, reg: prometheus.NewRegistry(), agent: newRecorder(t), telx: newRecorder(t)}
	rg.table.Store(buildTestSnapshot(rg.agent.srv.URL + "/inbound"))
	cfg := Config{
		PublicURL: testPublicURL,
		Region:    "us-east",
		Twilio:    TwilioConfig{Edges: map[string]string{"us-east": "ashburn", "eu-west": "dublin"}},
		// The agent's messaging URL is a loopback server: internal, so
		// allowed explicitly.
		Messaging: MessagingConfig{Timeout: 2 * time.Second, AllowNetworks: []string{"127.0.0.0/8"}},
	}
	deps := Deps{
		Table:      rg.table,
		Events:     &calls.NATSPublisher{NC: nc, Region: "us-east"},
		Messages:   nc,
		HTTPClient: rg.agent.srv.Client(),
		CallControl: &TelnyxCallControl{APIBase: rg.telx.srv.URL, Client: rg.telx.srv.Client(),
			APIKey: func(_ context.Context, id string) (string, error) {
				if id != "int-tx" {
					return "", errors.New("unknown integration")
				}
				return testTelnyxAPI, nil
			}},
		Registerer: rg.reg,
		Now:        func() time.Time { return testNow },
	}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	h, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	rg.h = h
	return rg
}

// twilioRequest builds a POST signed with token as Twilio signs it.
func twilioRequest(path string, params url.Values, token string) *http.Request {
	body := params.Encode()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		r.Header.Set("X-Twilio-Signature", TwilioSignature(token, testPublicURL+path, params))
	}
	return r
}

// telnyxRequest builds a POST signed with priv at ts.
func telnyxRequest(t testing.TB, path, contentType string, body []byte, ts time.Time, priv ed25519.PrivateKey) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
	r.Header.Set("Content-Type", contentType)
	if priv != nil {
		tss := strconv.FormatInt(ts.Unix(), 10)
		r.Header.Set("Telnyx-Timestamp", tss)
		r.Header.Set("Telnyx-Signature-Ed25519", signTelnyx(priv, tss, body))
	}
	return r
}

func (rg *rig) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	rg.h.Routes().ServeHTTP(w, r)
	return w
}

func voiceParams(to string) url.Values {
	return url.Values{
		"AccountSid": {"AC123"},
		"CallSid":    {"CA0001"},
		"From":       {"+14155550100"},
		"To":         {to},
		"Called":     {to},
		"CallStatus": {"ringing"},
		"Direction":  {"inbound"},
	}
}

func decodeEvent(t testing.TB, data []byte) calls.Event {
	t.Helper()
	var e calls.Event
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatalf("event %s: %v", data, err)
	}
	return e
}
