package config

import (
	"strings"
	"testing"
	"time"
)

// The audit stream's and the call history's limits come from
// nats.audit.* / nats.history.* or the environment, and a bad value is an
// error naming its key or variable.
func TestStreamLimits(t *testing.T) {
	for _, s := range []struct {
		key, env string
		of       func(Config) (time.Duration, int64)
	}{
		{"audit", "CALLGATE_AUDIT", func(c Config) (time.Duration, int64) { return c.NATS.Audit.MaxAge, c.NATS.Audit.MaxBytes }},
		{"history", "CALLGATE_HISTORY", func(c Config) (time.Duration, int64) { return c.NATS.History.MaxAge, c.NATS.History.MaxBytes }},
	} {
		t.Run(s.key, func(t *testing.T) {
			p := write(t, "nats:\n  "+s.key+":\n    max_age: 168h\n    max_bytes: 134217728\n")
			c, err := Load(p, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			if age, size := s.of(c); age != 168*time.Hour || size != 128<<20 {
				t.Fatalf("file: %v %d", age, size)
			}
			env := map[string]string{s.env + "_MAX_AGE": "48h", s.env + "_MAX_BYTES": "2097152"}
			c, err = Load(p, func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if age, size := s.of(c); age != 48*time.Hour || size != 2<<20 {
				t.Fatalf("env: %v %d", age, size)
			}
			for k, v := range map[string]string{s.env + "_MAX_BYTES": "lots", s.env + "_MAX_AGE": "forever"} {
				if _, err := Load("", func(x string) string {
					if x == k {
						return v
					}
					return ""
				}); err == nil || !strings.Contains(err.Error(), k) {
					t.Errorf("%s=%s: %v", k, v, err)
				}
			}
			p = write(t, "nats:\n  "+s.key+":\n    max_bytes: 10\n")
			if _, err := Load(p, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "nats."+s.key+".max_bytes") {
				t.Errorf("max_bytes 10: %v", err)
			}
		})
	}
}
