package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/console"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/store/storetest"
)

// TestSessionExpires: a session is refused once its time is up (the KV
// bucket's max age removes the entry as well).
func TestSessionExpires(t *testing.T) {
	st := storetest.OpenEmbedded(t)
	svc := provisioning.New(st, provisioning.Options{Sandbox: true})
	_, key, err := svc.CreateWorkspace(context.Background(), "ws", "WS", 100)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c, err := console.New(context.Background(), console.Options{Service: svc, SessionTTL: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	defer srv.Close()
	cl := newClient(t, srv.URL)
	cl.mustLogin(key)
	if r, _ := cl.do("GET", "/console/numbers", nil); r.StatusCode != http.StatusOK {
		t.Fatalf("fresh session: %d", r.StatusCode)
	}
	mu.Lock()
	now = now.Add(time.Hour + time.Second)
	mu.Unlock()
	if r, _ := cl.do("GET", "/console/numbers", nil); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/console/login" {
		t.Fatalf("expired session: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
}
