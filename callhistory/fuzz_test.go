package callhistory

import (
	"testing"
	"time"
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
