package callhistory

import (
	"strings"
	"testing"
	"time"

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
