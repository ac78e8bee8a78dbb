package console

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode"
)

func TestParseEndpoints(t *testing.T) {
	got := parseEndpoints("us-east sip:a@127.0.0.1:5060\n\n# comment\r\n  eu-west   sip:b@example.com;transport=tcp  \nsip:c@127.0.0.1\n")
	want := []string{"us-east sip:a@127.0.0.1:5060", "eu-west sip:b@example.com;transport=tcp", "default sip:c@127.0.0.1"}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, ep := range got {
		if ep.Region+" "+ep.URI != want[i] {
			t.Errorf("line %d: %q, want %q", i, ep.Region+" "+ep.URI, want[i])
		}
	}
}

// FuzzParseEndpoints: any text gives at most 65 endpoints, each with a
// region and a URI that are non-empty and trimmed, and the region one word.
func FuzzParseEndpoints(f *testing.F) {
	f.Add("us-east sip:bot@127.0.0.1:5060")
	f.Add("sip:bot@127.0.0.1\n# c\n\neu sip:x@y")
	f.Fuzz(func(t *testing.T, s string) {
		eps := parseEndpoints(s)
		if len(eps) > 65 {
			t.Fatalf("%d endpoints", len(eps))
		}
		for _, ep := range eps {
			if ep.Region == "" || ep.URI == "" || strings.TrimSpace(ep.URI) != ep.URI || strings.IndexFunc(ep.Region, unicode.IsSpace) >= 0 {
				t.Fatalf("endpoint %+v from %q", ep, s)
			}
		}
	})
}

func TestLoginLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLoginLimiter(3, time.Minute, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if _, ok := l.allowed("1.2.3.4"); !ok {
			t.Fatalf("refused after %d failures", i)
		}
		l.fail("1.2.3.4")
	}
	if wait, ok := l.allowed("1.2.3.4"); ok || wait != time.Minute {
		t.Fatalf("after 3 failures: ok=%v wait=%s", ok, wait)
	}
	if _, ok := l.allowed("5.6.7.8"); !ok {
		t.Fatal("another source refused")
	}
	now = now.Add(time.Minute)
	if _, ok := l.allowed("1.2.3.4"); !ok {
		t.Fatal("still refused after the window")
	}
	// A full table of live sources refuses new ones (fails closed) until
	// entries expire.
	for i := 0; len(l.m) < maxSources; i++ {
		l.fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
	}
	if _, ok := l.allowed("9.9.9.9"); ok {
		t.Fatal("a new source allowed with the table full")
	}
	now = now.Add(time.Minute)
	if _, ok := l.allowed("9.9.9.9"); !ok || len(l.m) != 0 {
		t.Fatalf("expired entries not swept: %d left", len(l.m))
	}
}

func TestSourceOf(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:5000":           "127.0.0.1",
		"[::ffff:10.0.0.1]:1":      "10.0.0.1",
		"[2001:db8:1:2:3::4]:443":  "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::]:80": "2001:db8:1:2::/64",
	} {
		r := httptestRequest(addr)
		if got := sourceOf(r); got != want {
			t.Errorf("%s: %s, want %s", addr, got, want)
		}
	}
}

func httptestRequest(remote string) *http.Request {
	r, _ := http.NewRequest("GET", "http://127.0.0.1/", nil)
	r.RemoteAddr = remote
	return r
}
