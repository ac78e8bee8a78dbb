package netguard

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestClientRefusesLoopbackUnlessAllowed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }))
	defer srv.Close()

	c, err := Client(nil, Guard{What: "routing hook URL", Key: "webhook.messaging.allow_networks"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Get(srv.URL)
	re, ok := IsRefused(err)
	if !ok {
		t.Fatalf("loopback not refused: %v", err)
	}
	if re.Reason != "loopback" || !strings.Contains(err.Error(), "routing hook URL resolves to 127.0.0.1") ||
		!strings.Contains(err.Error(), "webhook.messaging.allow_networks") {
		t.Errorf("error %q does not say what, where and how to allow it", err)
	}

	c, _ = Client(nil, Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("allowed loopback: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// The default client follows no redirect: a public URL cannot bounce a
// request to an internal one.
func TestClientDoesNotFollowRedirects(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://10.0.0.1/", http.StatusFound)
	}))
	defer srv.Close()
	c, _ := Client(nil, Guard{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("status %d: redirect followed", resp.StatusCode)
	}
}

func TestClientRefusesUnguardableTransport(t *testing.T) {
	_, err := Client(&http.Client{Transport: http.NewFileTransport(http.Dir("."))}, Guard{})
	if !errors.Is(err, ErrTransport) {
		t.Errorf("err %v, want ErrTransport", err)
	}
}
