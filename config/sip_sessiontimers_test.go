package config

import (
	"strings"
	"testing"
	"time"
)

// TestSIPSessionTimerKeys: sip.session_timers decodes from the file,
// min_se defaults to RFC 4028's 90 s, default_interval to off, and values
// below the RFC minimum (or a default interval below min_se) are reported
// by key.
func TestSIPSessionTimerKeys(t *testing.T) {
	c, err := Load(write(t, "sip:\n  session_timers:\n    min_se: 120s\n    default_interval: 30m\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.SIP.SessionTimers.MinSE != 120*time.Second || c.SIP.SessionTimers.DefaultInterval != 30*time.Minute {
		t.Fatalf("sip.session_timers not applied: %+v", c.SIP.SessionTimers)
	}
	d, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if d.SIP.SessionTimers.MinSE != 90*time.Second || d.SIP.SessionTimers.DefaultInterval != 0 {
		t.Fatalf("sip.session_timers defaults: %+v", d.SIP.SessionTimers)
	}
	_, err = Load(write(t, "sip:\n  session_timers:\n    min_se: 30s\n    default_interval: 60s\n"), noEnv)
	for _, key := range []string{"sip.session_timers.min_se:", "sip.session_timers.default_interval:"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}
