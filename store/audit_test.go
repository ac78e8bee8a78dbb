package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/store"
)

// TestAuditStreamBounded: the audit stream is created with the configured
// age and size limits (the defaults when unset), drops the oldest records
// first, and a restart with new limits applies them.
func TestAuditStreamBounded(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Audit.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := info.Config
	if c.MaxAge != store.DefaultAuditMaxAge || c.MaxBytes != store.DefaultAuditMaxBytes || c.Discard.String() != "DiscardOld" {
		t.Errorf("default audit stream: max_age %s max_bytes %d discard %s", c.MaxAge, c.MaxBytes, c.Discard)
	}
	st.Close()
	st, err = store.Open(ctx, store.Config{Audit: store.AuditConfig{MaxAge: time.Hour, MaxBytes: 1 << 20}}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// 3 MiB of records into a 1 MiB stream: it keeps under 1 MiB, the newest.
	rec := []byte(`{"action":"auth.failed","detail":"` + strings.Repeat("x", 4000) + `"}`)
	var last uint64
	for i := 0; i < 768; i++ {
		ack, err := st.JS.Publish(ctx, store.AuditSubjectPrefix+"_.auth.failed", rec)
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	info, err = st.Audit.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != time.Hour || info.Config.MaxBytes != 1<<20 {
		t.Errorf("limits after restart: max_age %s max_bytes %d", info.Config.MaxAge, info.Config.MaxBytes)
	}
	if info.State.Bytes > 1<<20 || info.State.LastSeq != last || info.State.FirstSeq <= 1 {
		t.Errorf("stream state %+v: want at most 1 MiB ending at seq %d", info.State, last)
	}
}

func TestAuditConfigValidated(t *testing.T) {
	for _, c := range []store.AuditConfig{{MaxAge: -time.Second}, {MaxAge: time.Second}, {MaxBytes: -1}, {MaxBytes: 1000}} {
		errs := (store.Config{Audit: c}).Validate()
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), "nats.audit.max_") {
			t.Errorf("%+v: %v, want one error naming nats.audit.max_age or max_bytes", c, errs)
		}
	}
	if errs := (store.Config{Audit: store.AuditConfig{MaxAge: time.Minute, MaxBytes: 1 << 20}}).Validate(); len(errs) != 0 {
		t.Errorf("valid limits refused: %v", errs)
	}
}
