package store_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/store"
	"github.com/callgate/callgate/store/storetest"
)

// TestStickyWriteErrorRecovers: an IO error while JetStream writes a
// stream (here EFBIG, as EMFILE did under 20,000 held connections) makes
// nats-server refuse every later write to that stream, even once the
// cause is gone. The store notices (not ready), restarts the embedded
// JetStream and writes go through again without a process restart.
func TestStickyWriteErrorRecovers(t *testing.T) {
	var logs syncBuffer
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{}, dir, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Writable(); err != nil {
		t.Fatalf("fresh store not writable: %v", err)
	}
	val := make([]byte, 8<<10)
	restore := storetest.LimitFileSize(t, 64<<10)
	var failed error
	for i := 0; i < 64 && failed == nil; i++ {
		_, failed = st.Numbers.Put(ctx, fmt.Sprintf("k%d", i), val)
	}
	if failed == nil {
		restore()
		t.Fatal("no write failed with files limited to 64 KiB")
	}
	t.Logf("write error: %v", failed)

	// While the cause lasts the store says it cannot write (readyz uses
	// Writable) and leaves JetStream alone.
	testwait.CheckFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if st.Writable() == nil {
			return fmt.Errorf("store reports writable while writes fail")
		}
		return nil
	})
	if _, err := st.Numbers.Put(ctx, "during", []byte("x")); err == nil {
		t.Fatal("a write went through while the stream has its write error")
	}
	restore()

	// The cause is gone: writes go through again, without a restart.
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if _, err := st.Numbers.Put(ctx, "after", val); err != nil {
			return fmt.Errorf("write after the cause is gone: %w", err)
		}
		return st.Writable()
	})
	if st.Recoveries() == 0 {
		t.Fatal("writes work but no recovery was counted")
	}
	if e, err := st.Numbers.Get(ctx, "k0"); err != nil || len(e.Value()) != len(val) {
		t.Fatalf("data written before the fault: %v", err)
	}
	if !logs.Contains("critical write error") && !logs.Contains("Critical write error") {
		t.Errorf("the embedded server's write error was not logged:\n%s", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Contains(sub string) bool { return strings.Contains(s.String(), sub) }
