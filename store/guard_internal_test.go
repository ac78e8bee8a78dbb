package store

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// lostReads answers "not found" to every get, as nats-server does when it
// fails to load a message (an IO error is folded into a 404).
type lostReads struct{ jetstream.KeyValue }

func (lostReads) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, jetstream.ErrKeyNotFound
}

// TestNotFoundIsConfirmed: a get that says "not found" for a key the
// stream holds is a store failure (ErrUnavailable, a 503 upstream), not a
// missing key (a 401 for an API key, a 404 elsewhere).
func TestNotFoundIsConfirmed(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, Config{}, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.APIKeys.Put(ctx, "present", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.APIKeys.Put(ctx, "deleted", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := st.APIKeys.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	real := st.APIKeys.(guardedKV)
	lying := guardedKV{KeyValue: lostReads{real.KeyValue}, nc: real.nc, stream: real.stream}
	tests := []struct {
		key  string
		want error
	}{
		{"present", ErrUnavailable},
		{"absent", jetstream.ErrKeyNotFound},
		{"deleted", jetstream.ErrKeyNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			_, err := lying.Get(ctx, tc.key)
			if !errors.Is(err, tc.want) {
				t.Fatalf("get %q whose read was lost: %v, want %v", tc.key, err, tc.want)
			}
			if tc.want == ErrUnavailable && errors.Is(err, jetstream.ErrKeyNotFound) {
				t.Fatalf("a lost read is also reported as not found: %v", err)
			}
		})
	}
	// The real bucket still reads and misses as before.
	if _, err := st.APIKeys.Get(ctx, "present"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.APIKeys.Get(ctx, "deleted"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
}
