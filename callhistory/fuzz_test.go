package callhistory

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/gateway/calls"
	"github.com/callgate/callgate/store"
)

// FuzzParseCursor: any string is refused with ErrBadCursor or parsed into
// a cursor that prints back to a cursor parsing to the same position.
func FuzzParseCursor(f *testing.F) {
	f.Add(cursor{t: time.Date(2026, 11, 3, 12, 0, 0, 5, time.UTC), id: "a84b4c76e66710@pbx.example.com"}.String())
	f.Add("")
	f.Add("YzE6MTIzOg")
	f.Add("not base64!")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCursor(s)
		if err != nil {
			if err != ErrBadCursor {
				t.Fatalf("error %v is not ErrBadCursor", err)
			}
			return
		}
		again, err := parseCursor(c.String())
		if err != nil || !again.t.Equal(c.t) || again.id != c.id {
			t.Fatalf("%q: %+v printed and parsed back as %+v, %v", s, c, again, err)
		}
	})
}

// FuzzSubject: a call's subject is the prefix, the workspace and the
// call id's key, for any call id.
func FuzzSubject(f *testing.F) {
	f.Add("acme", "a84b4c76e66710@pbx.example.com")
	f.Add("ws-1", "")
	f.Add("w", strings.Repeat("x", 200))
	f.Fuzz(func(t *testing.T, ws, id string) {
		if got, want := Subject(ws, id), store.HistorySubjectPrefix+ws+"."+CallKey(id); got != want {
			t.Fatalf("Subject(%q, %q) = %q, want %q", ws, id, got, want)
		}
	})
}

// FuzzDecode: any stored message is read without a panic as lines, one
// event each; every event handed on has a call id and comes with its
// line number, in order; and events encoded one per line (a batch) read
// back as themselves.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"kind":"started","call_id":"a@pbx","time":"2026-11-03T12:00:00Z","number":"+12025550100"}`))
	f.Add([]byte(`{"kind":"started","call_id":"a@pbx","time":"2026-11-03T12:00:00Z","number":"+1"}` + "\n" +
		`{"kind":"ended","call_id":"a@pbx","time":"2026-11-03T12:00:09Z","number":"+1","status":200}`))
	f.Add([]byte("{}\n\nnot json\n"))
	f.Add([]byte{})
	r := NewReader(nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Fuzz(func(t *testing.T, data []byte) {
		last := -1
		var got []calls.Event
		n := r.decode(1, data, func(idx int, e storedEvent) {
			if e.CallID == "" || idx <= last || idx >= bytes.Count(data, []byte("\n"))+1 {
				t.Fatalf("event %+v at line %d after line %d", e, idx, last)
			}
			last = idx
			got = append(got, e.Event)
		})
		if lines := len(bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))); len(data) > 0 && n != lines {
			t.Fatalf("%d lines read of %d", n, lines)
		}
		// What was read, encoded again one per line, reads back the same.
		var batch []byte
		for i := range got {
			got[i].Media = nil
			e, err := calls.Encode(&got[i])
			if err != nil {
				return // a value encoding/json would not write (e.g. a time out of range)
			}
			if i > 0 {
				batch = append(batch, '\n')
			}
			batch = append(batch, e...)
		}
		var again []calls.Event
		r.decode(1, batch, func(_ int, e storedEvent) { e.Media = nil; again = append(again, e.Event) })
		if len(again) != len(got) {
			t.Fatalf("%d events encoded one per line read back as %d", len(got), len(again))
		}
		for i := range got {
			a, _ := calls.Encode(&got[i])
			b, _ := calls.Encode(&again[i])
			if !bytes.Equal(a, b) {
				t.Fatalf("event %d read back as\n%s\nwas\n%s", i, b, a)
			}
		}
	})
}
