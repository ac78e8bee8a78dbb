package usage

import (
	"testing"
	"time"
)

// FuzzDecodeReport: any bytes on the subject decode to a report of sane
// running calls or are refused; never a panic, a negative price or cost.
func FuzzDecodeReport(f *testing.F) {
	f.Add([]byte(`{"node":"n1","ws":{"w":[{"p":2,"a":1767225600000},{"p":5,"a":1767225600000,"m":3}]}}`))
	f.Add([]byte(`{"node":"n1","closing":true}`))
	f.Add([]byte(`{"node":"n1","ws":{"w":[{"p":-1,"a":0}]}}`))
	f.Add([]byte(`{"node":"n1","ws":{"w":[{"p":1,"a":-9223372036854775808}]}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := decodeReport(b)
		if !ok {
			return
		}
		for _, runs := range r.WS {
			for _, x := range runs {
				if x.P < 0 || x.M < 0 {
					t.Fatalf("accepted %+v", x)
				}
				if c := x.cost(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); c < 0 {
					t.Fatalf("run %+v costs %d", x, c)
				}
			}
		}
	})
}
