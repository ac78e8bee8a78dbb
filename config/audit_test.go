package config

import (
	"strings"
	"testing"
	"time"
)

// The audit stream's limits come from nats.audit.* or the environment,
// and a bad value is an error naming its key.
func TestAuditLimits(t *testing.T) {
	p := write(t, "nats:\n  audit:\n    max_age: 720h\n    max_bytes: 1073741824\n")
	c, err := Load(p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.Audit.MaxAge != 720*time.Hour || c.NATS.Audit.MaxBytes != 1<<30 {
		t.Fatalf("file: %+v", c.NATS.Audit)
	}
	env := map[string]string{"CALLGATE_AUDIT_MAX_AGE": "48h", "CALLGATE_AUDIT_MAX_BYTES": "2097152"}
	c, err = Load(p, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.Audit.MaxAge != 48*time.Hour || c.NATS.Audit.MaxBytes != 2<<20 {
		t.Fatalf("env: %+v", c.NATS.Audit)
	}
	for k, v := range map[string]string{"CALLGATE_AUDIT_MAX_BYTES": "lots", "CALLGATE_AUDIT_MAX_AGE": "forever"} {
		if _, err := Load("", func(x string) string {
			if x == k {
				return v
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
	p = write(t, "nats:\n  audit:\n    max_bytes: 10\n")
	if _, err := Load(p, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "nats.audit.max_bytes") {
		t.Errorf("max_bytes 10: %v", err)
	}
}
