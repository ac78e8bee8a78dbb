package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/store"
)

// Each workspace's call history stream takes the configured limits (and
// the defaults for zero values); History finds it, and says nil for a
// workspace with no stream.
func TestHistoryStreamPerWorkspace(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{History: store.HistoryConfig{MaxAge: 48 * time.Hour}}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if s, err := st.History(ctx, "acme"); s != nil || err != nil {
		t.Fatalf("before any call: %v, %v", s, err)
	}
	if err := st.EnsureHistory(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureHistory(ctx, "acme"); err != nil {
		t.Fatalf("again: %v", err)
	}
	s, err := st.History(ctx, "acme")
	if err != nil || s == nil {
		t.Fatalf("history stream: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.Name != "CALLGATE_HISTORY_acme" || len(c.Subjects) != 1 || c.Subjects[0] != "callgate.history.acme.*" ||
		c.MaxAge != 48*time.Hour || c.MaxBytes != store.DefaultHistoryMaxBytes || !c.DenyDelete || !c.DenyPurge {
		t.Errorf("stream config: %+v", c)
	}
	// Another workspace's subjects are not this stream's.
	if _, err := st.JS.Publish(ctx, "callgate.history.beta.x", []byte("{}")); err == nil {
		t.Error("a publish to a workspace without a stream was stored")
	}
}

// A new history stream on one node is in async persist mode; a stream
// made before that keeps its mode (nats-server refuses to change it) and
// still takes the configured limits. Events acknowledged in async mode
// are all there after the node is stopped cleanly and started again.
func TestHistoryStreamPersistMode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.Config{History: store.HistoryConfig{MaxAge: 48 * time.Hour}}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.JS.CreateStream(ctx, jetstream.StreamConfig{
		Name:     store.HistoryStreamName("old"),
		Subjects: []string{store.HistorySubjectPrefix + "old.*"},
		Storage:  jetstream.FileStorage,
	}); err != nil {
		t.Fatal(err)
	}
	for _, ws := range []string{"old", "acme"} {
		if err := st.EnsureHistory(ctx, ws); err != nil {
			t.Fatalf("%s: %v", ws, err)
		}
	}
	mode := func(ws string) jetstream.StreamConfig {
		t.Helper()
		s, err := st.JS.Stream(ctx, store.HistoryStreamName(ws))
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config
	}
	if c := mode("acme"); c.PersistMode != jetstream.AsyncPersistMode {
		t.Errorf("new stream: persist mode %v, want async", c.PersistMode)
	}
	if c := mode("old"); c.PersistMode != jetstream.DefaultPersistMode || c.MaxAge != 48*time.Hour || !c.DenyDelete {
		t.Errorf("existing stream: persist mode %v, max_age %s, deny_delete %v; want default, 48h, true", c.PersistMode, c.MaxAge, c.DenyDelete)
	}
	const n = 500
	for i := range n {
		if _, err := st.JS.Publish(ctx, fmt.Sprintf("%sacme.call%d", store.HistorySubjectPrefix, i), []byte(`{"kind":"ended"}`)); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	st.Close()

	st, err = store.Open(ctx, store.Config{}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := st.History(ctx, "acme")
	if err != nil || s == nil {
		t.Fatalf("history after restart: %v, %v", s, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Errorf("after a clean restart the stream holds %d events, want %d", info.State.Msgs, n)
	}
}
