package config

import (
	"strings"
	"testing"
	"time"
)

// TestSIPDNSKeys: sip.dns decodes from the file, has a default timeout,
// and a bad server or timeout is reported by key.
func TestSIPDNSKeys(t *testing.T) {
	c, err := Load(write(t, "sip:\n  dns:\n    server: 127.0.0.1:5353\n    timeout: 750ms\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.SIP.DNS.Server != "127.0.0.1:5353" || c.SIP.DNS.Timeout != 750*time.Millisecond {
		t.Fatalf("sip.dns not applied: %+v", c.SIP.DNS)
	}
	d, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if d.SIP.DNS.Server != "" || d.SIP.DNS.Timeout <= 0 {
		t.Fatalf("sip.dns defaults: %+v", d.SIP.DNS)
	}
	_, err = Load(write(t, "sip:\n  dns:\n    server: dns.example.com\n    timeout: -1s\n"), noEnv)
	for _, key := range []string{"sip.dns.server:", "sip.dns.timeout:"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}
