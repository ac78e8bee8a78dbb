package provisioning_test

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/callgate/callgate/provisioning"
)

// FuzzCheckHookURL: an accepted hook URL is https (or http to a loopback
// host), carries no user name, password, fragment, space or control
// character, is at most 2048 bytes, and is accepted again unchanged.
func FuzzCheckHookURL(f *testing.F) {
	for _, s := range []string{
		"https://hooks.example.com/route?x=1",
		"http://127.0.0.1:8080/hook",
		"http://[::1]/x",
		"http://localhost/x",
		"http://127.0.0.1.example.com/",
		"https://u:p@hooks.example.com/",
		"https://hooks.example.com/#f",
		"HTTPS://HOOKS.example.com",
		"https://%31%32%37.0.0.1/",
		"http://[::ffff:127.0.0.1]/",
		"https://hooks.example.com/\r\nX: y",
		"https:hooks.example.com",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := provisioning.CheckHookURL(raw)
		if err != nil {
			return
		}
		if len(out) > 2048*3 || strings.ContainsAny(out, " \r\n\t") {
			t.Fatalf("%q -> %q", raw, out)
		}
		u, err := url.Parse(out)
		if err != nil || u.User != nil || u.Fragment != "" || u.Host == "" {
			t.Fatalf("%q -> %q: %+v %v", raw, out, u, err)
		}
		switch u.Scheme {
		case "https":
		case "http":
			h := u.Hostname()
			a, err := netip.ParseAddr(h)
			if h != "localhost" && !strings.EqualFold(h, "localhost") && (err != nil || !a.Unmap().IsLoopback()) {
				t.Fatalf("%q -> %q: http to a host that is not loopback", raw, out)
			}
		default:
			t.Fatalf("%q -> %q: scheme %q", raw, out, u.Scheme)
		}
		if again, err := provisioning.CheckHookURL(out); err != nil || again != out {
			t.Fatalf("%q -> %q -> %q, %v: not stable", raw, out, again, err)
		}
	})
}
