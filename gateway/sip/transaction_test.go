package sip

import (
	"strings"
	"testing"
	"time"
)

// TestInviteRetransmittedUntilInviteTimeout: an endpoint that never
// answers gets the forwarded INVITE again on UDP (Timer A: T1, then 2*T1
// later, the same message), until invite_timeout (Timer F) moves the call
// on: here to no endpoint, so the caller gets 503, and the silent
// endpoint hears no more of it. A response stops both timers: an
// endpoint that answers 180 gets the INVITE once.
func TestInviteRetransmittedUntilInviteTimeout(t *testing.T) {
	dead, ep := rawAgent(t) // never answers
	e := runEdge(t, buildTable(ep), func(c *Config) { c.InviteTimeout = 2 * time.Second }, nil)
	caller := newRaw(t, "127.0.0.1", net_(e))
	start := time.Now()
	caller.send(caller.invite(e, numPurchased, "retx-1", ""))
	var got []string
	var at []time.Duration
	for {
		m := dead.read(1500 * time.Millisecond) // copies come at most 2*T1 apart
		if m == "" {
			break
		}
		got = append(got, m)
		at = append(at, time.Since(start))
	}
	// sent at 0, T1 and 3*T1; Timer F at 2 s (a late timer may fold the
	// third into F on a loaded machine, never add one)
	if len(got) < 2 || len(got) > 3 {
		t.Fatalf("the silent endpoint got %d copies at %v, want 3 (0, T1, 3*T1)", len(got), at)
	}
	for i, m := range got {
		if m != got[0] {
			t.Errorf("copy %d differs from the first:\n%s\n%s", i, m, got[0])
		}
	}
	if gap := at[1] - at[0]; gap < t1-100*time.Millisecond {
		t.Errorf("first retransmission %v after the INVITE, want T1 (%v)", gap, t1)
	}
	if len(got) == 3 && at[2]-at[1] < 2*t1-100*time.Millisecond {
		t.Errorf("second retransmission %v after the first, want 2*T1", at[2]-at[1])
	}
	if m := caller.readFinal(4 * time.Second); !strings.HasPrefix(m, "SIP/2.0 503") {
		t.Fatalf("caller got %q, want 503 after invite_timeout", statusLine(m))
	}
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("503 after %v, before invite_timeout (2s)", el)
	}
	if m := dead.read(time.Second); m != "" {
		t.Errorf("after invite_timeout the endpoint got %q", statusLine(m))
	}

	// an endpoint that rings: the 180 stops Timer A
	ringing, ep2 := rawAgent(t)
	e2 := runEdge(t, buildTable(ep2), nil, nil)
	caller2 := newRaw(t, "127.0.0.1", net_(e2))
	caller2.send(caller2.invite(e2, numPurchased, "retx-2", ""))
	inv := ringing.read(3 * time.Second)
	if !strings.HasPrefix(inv, "INVITE ") {
		t.Fatalf("endpoint got %q", statusLine(inv))
	}
	ringing.replyTo(inv, 180, "Ringing", "", "")
	if m := ringing.read(1500 * time.Millisecond); m != "" {
		t.Errorf("after its 180 the endpoint got %q", statusLine(m))
	}
}
