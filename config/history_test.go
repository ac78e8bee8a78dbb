package config

import (
	"strings"
	"testing"
	"time"
)

// The call history's limits come from nats.history.* or the environment,
// and a bad value is an error naming its key or variable.
func TestHistoryLimits(t *testing.T) {
	p := write(t, "nats:\n  history:\n    max_age: 168h\n    max_bytes: 134217728\n")
	c, err := Load(p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.History.MaxAge != 168*time.Hour || c.NATS.History.MaxBytes != 128<<20 {
		t.Fatalf("file: %+v", c.NATS.History)
	}
	env := map[string]string{"CALLGATE_HISTORY_MAX_AGE": "48h", "CALLGATE_HISTORY_MAX_BYTES": "2097152"}
	c, err = Load(p, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.NATS.History.MaxAge != 48*time.Hour || c.NATS.History.MaxBytes != 2<<20 {
		t.Fatalf("env: %+v", c.NATS.History)
	}
	for k, v := range map[string]string{"CALLGATE_HISTORY_MAX_BYTES": "lots", "CALLGATE_HISTORY_MAX_AGE": "30s"} {
		if _, err := Load("", func(x string) string {
			if x == k {
				return v
			}
			return ""
		}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
	p = write(t, "nats:\n  history:\n    max_bytes: 10\n")
	if _, err := Load(p, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "nats.history.max_bytes") {
		t.Errorf("max_bytes 10: %v", err)
	}
}
