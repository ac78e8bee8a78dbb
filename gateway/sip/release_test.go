package sip

import (
	"testing"
	"time"
)

// TestReleaseQueues: a call's release runs once it is due, in due order
// per delay, not before; a release scheduled again replaces the earlier
// (the stale entry does nothing); delays without a queue are refused.
func TestReleaseQueues(t *testing.T) {
	s := &Server{}
	a, b := &call{s: s, upBranch: "a"}, &call{s: s, upBranch: "b"}
	s.serverTx.put("a", a)
	s.serverTx.put("b", b)
	var r releaseQueues
	if r.push(time.Second, a, 1) {
		t.Fatal("a delay without a queue was queued")
	}
	now := time.Now().UnixNano()
	a.mu.Lock()
	a.releaseAt = now + 10
	r.push(linger, a, a.releaseAt)
	a.mu.Unlock()
	b.mu.Lock()
	b.releaseAt = now + 20
	r.push(timerH, b, b.releaseAt)
	b.mu.Unlock()
	if got := r.due(now, nil); len(got) != 0 {
		t.Fatalf("due before time: %d", len(got))
	}
	// a scheduled again: the first entry is stale
	a.mu.Lock()
	a.releaseAt = now + 30
	r.push(linger, a, a.releaseAt)
	a.mu.Unlock()
	got := r.due(now+25, nil)
	if len(got) != 2 || got[0].c != a || got[1].c != b {
		t.Fatalf("due at +25: %+v", got)
	}
	for _, e := range got {
		e.c.releaseDue(e.at)
	}
	if _, ok := s.serverTx.get("a"); !ok {
		t.Error("a released by its stale entry")
	}
	if _, ok := s.serverTx.get("b"); ok {
		t.Error("b not released")
	}
	got = r.due(now+30, nil)
	if len(got) != 1 || got[0].c != a {
		t.Fatalf("due at +30: %+v", got)
	}
	got[0].c.releaseDue(got[0].at)
	if _, ok := s.serverTx.get("a"); ok {
		t.Error("a not released")
	}
	if got := r.due(now+1e12, nil); len(got) != 0 {
		t.Fatalf("left in the queues: %d", len(got))
	}
}
