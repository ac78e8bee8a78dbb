// Package testwait waits in tests for something that happens in the
// background (a listener, a watcher, a delivery) by polling for it, as
// nats-server's checkFor does, instead of sleeping a fixed time.
package testwait

import (
	"testing"
	"time"
)

// CheckFor calls fn until it returns nil, every `every`, and fails the
// test with fn's last error if it has not returned nil when timeout has
// passed. fn is always called at least once, and once more after the
// deadline, so a slow machine never fails a condition that holds.
func CheckFor(t testing.TB, timeout, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(every)
	}
}
