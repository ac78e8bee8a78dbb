package store_test

import (
	"context"
	"testing"
	"time"

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
