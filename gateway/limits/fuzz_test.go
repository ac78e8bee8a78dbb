package limits

import "testing"

// FuzzDecodeReport: any bytes on the subject decode to a report with
// sane counts or are refused; never a panic or a negative count.
func FuzzDecodeReport(f *testing.F) {
	f.Add([]byte(`{"node":"n1","ws":{"w":{"c":3,"oc":1,"r":2,"or":1}}}`))
	f.Add([]byte(`{"node":"n1","closing":true}`))
	f.Add([]byte(`{"node":"n1","ws":{"w":{"c":-5}}}`))
	f.Add([]byte(`{"node":"","ws":{}}`))
	f.Add([]byte(`{"node":"n1","ws":{"w":{"c":1e300}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := decodeReport(b)
		if !ok {
			return
		}
		if r.Node == "" {
			t.Fatal("accepted a report without a node")
		}
		for ws, k := range r.WS {
			if k.Conc < 0 || k.OutConc < 0 || k.Recent < 0 || k.OutRec < 0 ||
				k.Conc > maxCount || k.OutConc > maxCount || k.Recent > maxCount || k.OutRec > maxCount {
				t.Fatalf("accepted counts %+v of %q", k, ws)
			}
		}
	})
}
