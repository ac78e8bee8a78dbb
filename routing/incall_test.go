package routing

import (
	"testing"
	"time"
)

func TestSIPHeadersAllowed(t *testing.T) {
	def := SIPHeaders{}
	for name, want := range map[string]bool{"X-Customer": true, "x-a": true, "User-to-User": true, "user-to-user": true, "P-Asserted-Identity": false, "X": false, "Contact": false} {
		if got := def.Allowed(name); got != want {
			t.Errorf("default Allowed(%q) = %v, want %v", name, got, want)
		}
	}
	h := SIPHeaders{Allow: []string{"X-Acme-*", "Diversion"}, Keep: []string{"x-acme-ticket"}}
	for name, want := range map[string]bool{"X-Acme-Ticket": true, "X-Other": false, "diversion": true, "User-to-User": false} {
		if got := h.Allowed(name); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", name, got, want)
		}
	}
	if !h.Kept("X-Acme-Ticket") || h.Kept("X-Acme-Other") || def.Kept("X-Customer") {
		t.Error("Kept matches the keep list only")
	}
	if (SIPHeaders{Allow: []string{}}).Allowed("X-A") {
		t.Error("an empty (not nil) allow-list passes nothing")
	}
}

func TestAgentMediaTimeout(t *testing.T) {
	if got := AgentMediaTimeout(nil, 30*time.Second); got != 30*time.Second {
		t.Errorf("nil agent: %v", got)
	}
	if got := AgentMediaTimeout(&Agent{MediaTimeout: 5 * time.Second}, 30*time.Second); got != 5*time.Second {
		t.Errorf("agent's own: %v", got)
	}
}
