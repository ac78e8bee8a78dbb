package webhook

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/callgate/callgate/internal/testlog"
	"github.com/callgate/callgate/phone"
)

func TestInternalAddress(t *testing.T) {
	for _, tc := range []struct {
		addr     string
		internal bool
	}{
		{"127.0.0.1", true},
		{"127.255.0.9", true},
		{"10.0.0.5", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"172.32.0.1", false},
		{"192.168.1.1", true},
		{"169.254.169.254", true},
		{"100.64.0.1", true},
		{"100.127.255.255", true},
		{"100.128.0.1", false},
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"255.255.255.255", true},
		{"8.8.8.8", false},
		{"93.184.216.34", false},
		{"::", true},
		{"::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"fc00::1", true},
		{"fd12:3456::1", true},
		{"ff02::1", true},
		{"ff05::2", true},
		{"2001:4860:4860::8888", false},
		{"::ffff:127.0.0.1", true},
		{"::ffff:10.0.0.5", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:100.64.0.1", true},
		{"::ffff:0.0.0.0", true},
		{"::ffff:8.8.8.8", false},
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := internalReason(a) != ""; got != tc.internal {
			t.Errorf("%s: internal = %v, want %v (%q)", tc.addr, got, tc.internal, internalReason(a))
		}
	}
}

func TestAddressGuardAllowNetworks(t *testing.T) {
	g := addressGuard{allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}}
	for addr, ok := range map[string]bool{
		"127.0.0.1:80":          true,
		"[::ffff:127.0.0.1]:80": true, // mapped form of an allowed address
		"[fd00::5]:443":         true,
		"10.0.0.5:80":           false,
		"[::1]:80":              false, // ::1 is not in 127.0.0.0/8
		"8.8.8.8:443":           true,
	} {
		err := g.check(addr)
		if (err == nil) != ok {
			t.Errorf("%s: err = %v, want allowed %v", addr, err, ok)
		}
		if err != nil {
			if _, refused := isRefused(err); !refused {
				t.Errorf("%s: %v is not a refusal", addr, err)
			}
		}
	}
	err := addressGuard{}.check("10.0.0.5:80")
	want := "messaging URL resolves to 10.0.0.5, an internal address"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "webhook.messaging.allow_networks") {
		t.Errorf("error %v, want it to contain %q and name the key", err, want)
	}
}

func TestGuardedClientNeverUsesProxy(t *testing.T) {
	base := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment}}
	c, err := guardedClient(base, addressGuard{})
	if err != nil {
		t.Fatal(err)
	}
	if tr := c.Transport.(*http.Transport); tr.Proxy != nil || tr.DialContext == nil {
		t.Error("guarded transport uses a proxy or has no guarded dialer")
	}
	if base.Transport.(*http.Transport).Proxy == nil {
		t.Error("the caller's transport was modified")
	}
	if _, err := guardedClient(&http.Client{Transport: roundTripFunc(nil)}, addressGuard{}); err == nil {
		t.Error("a transport that cannot be guarded was accepted")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// syncBuffer is a log sink several goroutines write to.
type syncBuffer = testlog.Buffer

func TestMessageDeliveryToLoopbackRefusedByDefault(t *testing.T) {
	var logs syncBuffer
	rg := newRig(t, func(c *Config, d *Deps) {
		c.Messaging.AllowNetworks = nil // the default
		d.Log = slog.New(slog.NewTextHandler(&logs, nil))
	})
	p := url.Values{"MessageSid": {"SM77"}, "From": {"+14155550100"}, "To": {numMain}, "Body": {"secret body text"}}
	if w := rg.do(twilioRequest(PathTwilioSMS, p, testToken)); w.Code != 200 {
		t.Fatalf("webhook answered %d", w.Code)
	}
	checkFor(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(rg.h.Metrics().Deliveries.WithLabelValues(OutcomeRefused)) == 1
	})
	rg.agent.none(t, 300*time.Millisecond)
	for _, o := range []string{OutcomeOK, OutcomeFailed} {
		if v := testutil.ToFloat64(rg.h.Metrics().Deliveries.WithLabelValues(o)); v != 0 {
			t.Errorf("%s = %v, want 0", o, v)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "message delivery refused"); n != 1 {
		t.Errorf("refusal logged %d times:\n%s", n, out)
	}
	for _, want := range []string{"level=WARN", "carrier=twilio", "id=SM77", "resolves to 127.0.0.1, an internal address",
		"webhook.messaging.allow_networks", "to=" + phone.Mask(numMain)} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret body text") || strings.Contains(out, numMain) {
		t.Errorf("log leaks the body or the full number:\n%s", out)
	}
}

func TestMessageDeliveryAllowNetworks(t *testing.T) {
	rg := newRig(t, func(c *Config, _ *Deps) { c.Messaging.AllowNetworks = []string{"127.0.0.0/8"} })
	p := url.Values{"MessageSid": {"SM78"}, "From": {"+14155550100"}, "To": {numMain}, "Body": {"hi"}}
	rg.do(twilioRequest(PathTwilioSMS, p, testToken))
	if d := rg.agent.next(t); d.Path != "/inbound" {
		t.Errorf("delivered to %s", d.Path)
	}
	checkFor(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(rg.h.Metrics().Deliveries.WithLabelValues(OutcomeOK)) == 1
	})
}

// An allowed server that redirects to an internal address outside the
// allowed networks: the redirect's connection is refused.
func TestMessageDeliveryRedirectToInternalRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("127.0.0.2 not routed to loopback here: %v", err)
	}
	rg := newRig(t, func(c *Config, d *Deps) {
		c.Messaging.AllowNetworks = []string{"127.0.0.2/32"}
		d.HTTPClient = &http.Client{} // follows redirects
	})
	hits := make(chan string, 8)
	first := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- r.URL.Path
		http.Redirect(w, r, rg.agent.srv.URL+"/inbound", http.StatusTemporaryRedirect)
	})}}
	first.Start()
	t.Cleanup(first.Close)
	rg.table.Store(buildTestSnapshot(first.URL + "/hop"))

	p := url.Values{"MessageSid": {"SM79"}, "From": {"+14155550100"}, "To": {numMain}, "Body": {"hi"}}
	rg.do(twilioRequest(PathTwilioSMS, p, testToken))
	checkFor(t, 5*time.Second, func() bool {
		return testutil.ToFloat64(rg.h.Metrics().Deliveries.WithLabelValues(OutcomeRefused)) == 1
	})
	if got := <-hits; got != "/hop" {
		t.Errorf("first server got %s", got)
	}
	rg.agent.none(t, 300*time.Millisecond)
	if len(hits) != 0 {
		t.Errorf("refused delivery was retried (%d more hits)", len(hits))
	}
}

func TestConfigValidateAllowNetworks(t *testing.T) {
	c := Config{PublicURL: testPublicURL, Messaging: MessagingConfig{AllowNetworks: []string{"10.0.0.0/8", "10.0.0.300/8", "fd00::/8", "nope"}}}
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"messaging.allow_networks[1]:", "messaging.allow_networks[3]:"} {
		if !strings.Contains(err.Error(), "webhook: "+key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
	if strings.Contains(err.Error(), "allow_networks[0]") || strings.Contains(err.Error(), "allow_networks[2]") {
		t.Errorf("valid entries reported: %v", err)
	}
	c.Messaging.AllowNetworks = []string{"127.0.0.0/8", "::1/128", "10.1.2.3/8"}
	if err := c.Validate(); err != nil {
		t.Errorf("valid networks refused: %v", err)
	}
}
