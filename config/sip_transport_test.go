package config

import (
	"strings"
	"testing"
	"time"
)

// TestSIPTransportKeys: the SIP transport settings decode from the file
// and a bad one is reported with its key.
func TestSIPTransportKeys(t *testing.T) {
	c, err := Load(write(t, "sip:\n  message_timeout: 7s\n  max_connections: 100\n  max_connections_per_source: 5\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.SIP.MessageTimeout != 7*time.Second || c.SIP.MaxConnections != 100 || c.SIP.MaxConnectionsPerSource != 5 {
		t.Fatalf("sip transport settings not applied: %+v", c.SIP)
	}
	d, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if d.SIP.MessageTimeout <= 0 || d.SIP.MaxConnections <= 0 || d.SIP.MaxConnectionsPerSource <= 0 {
		t.Fatalf("no default caps: %+v", d.SIP)
	}
	_, err = Load(write(t, "sip:\n  tls_ca_file: /nonexistent/ca.pem\n  tls_client_key: k.pem\n  max_connections: -1\n"), noEnv)
	for _, key := range []string{"sip.tls_ca_file:", "sip.tls_client_cert:", "sip.max_connections:"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}
