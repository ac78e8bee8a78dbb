package testwait_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
)

// fakeT records a failure instead of ending the test.
type fakeT struct {
	testing.TB
	mu     sync.Mutex
	failed string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.failed = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	panic(fatal{})
}

type fatal struct{}

func run(f *fakeT, timeout time.Duration, fn func() error) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatal); !ok {
				panic(r)
			}
		}
	}()
	testwait.CheckFor(f, timeout, time.Millisecond, fn)
}

func TestCheckForReturnsOnceTheConditionHolds(t *testing.T) {
	f := &fakeT{TB: t}
	calls := 0
	run(f, 10*time.Second, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if f.failed != "" || calls != 3 {
		t.Fatalf("failed %q after %d calls, want success on the 3rd", f.failed, calls)
	}
}

func TestCheckForFailsWithTheLastError(t *testing.T) {
	f := &fakeT{TB: t}
	calls := 0
	run(f, 20*time.Millisecond, func() error {
		calls++
		return errors.New("still down")
	})
	if !strings.Contains(f.failed, "still down") {
		t.Fatalf("failure %q does not name the last error", f.failed)
	}
	if calls < 2 {
		t.Fatalf("fn called %d times, want at least once before and once after the deadline", calls)
	}
}

func TestCheckForCallsFnEvenWithNoTime(t *testing.T) {
	f := &fakeT{TB: t}
	called := false
	run(f, 0, func() error { called = true; return nil })
	if !called || f.failed != "" {
		t.Fatalf("called %v, failed %q: a condition that holds must pass with a zero timeout", called, f.failed)
	}
}
