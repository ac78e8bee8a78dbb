package config

import (
	"strings"
	"testing"
)

// TestRuntimeSection: the garbage collector target is read from the file
// and the environment, and bad values are refused naming their key.
func TestRuntimeSection(t *testing.T) {
	c, err := Load(write(t, "runtime:\n  gc_percent: 400\n  memory_limit_mb: 256\n  max_procs: 1\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Runtime.GCPercent != 400 || c.Runtime.MemoryLimitMB != 256 || c.Runtime.MaxProcs != 1 {
		t.Fatalf("runtime = %+v, want gc_percent 400, memory_limit_mb 256, max_procs 1", c.Runtime)
	}
	env := map[string]string{"CALLGATE_GC_PERCENT": "-1", "CALLGATE_MEMORY_LIMIT_MB": "300", "CALLGATE_MAX_PROCS": "2"}
	c, err = Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Runtime.GCPercent != -1 || c.Runtime.MemoryLimitMB != 300 || c.Runtime.MaxProcs != 2 {
		t.Fatalf("runtime from the environment = %+v", c.Runtime)
	}
	for _, tc := range []struct{ yaml, key string }{
		{"runtime:\n  gc_percent: -5\n", "runtime.gc_percent"},
		{"runtime:\n  gc_percent: -1\n", "runtime.gc_percent"}, // off needs a memory limit
		{"runtime:\n  memory_limit_mb: -1\n", "runtime.memory_limit_mb"},
		{"runtime:\n  max_procs: -1\n", "runtime.max_procs"},
		{"runtime:\n  max_procs: 10000\n", "runtime.max_procs"},
	} {
		if _, err := Load(write(t, tc.yaml), noEnv); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: want an error naming %s, got %v", tc.yaml, tc.key, err)
		}
	}
}
