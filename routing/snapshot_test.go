package routing

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
		k  uint64
	}{
		{"+12282001234", true, 12282001234},
		{"12282001234", true, 12282001234},
		{"+999999999999999", true, 999999999999999},
		{"+1234567890123456", false, 0},
		{"+012", false, 0},
		{"", false, 0},
		{"+", false, 0},
		{"+12a", false, 0},
	} {
		k, ok := Key(tc.in)
		if ok != tc.ok || k != tc.k {
			t.Errorf("Key(%q) = %d, %v; want %d, %v", tc.in, k, ok, tc.k, tc.ok)
		}
	}
}

func testSnapshot() *Snapshot {
	b := NewBuilder()
	b.AddAgent(Agent{ID: "a1", Workspace: "w", Endpoints: []Endpoint{
		{Region: "eu", URI: "sip:a@127.0.0.1:5091"},
		{Region: "us", URI: "sip:a@127.0.0.1:5092"},
		{Region: "ap", URI: "sip:a@127.0.0.1:5093"},
	}})
	b.AddNumber(Number{E164: "+12282001234", Workspace: "w", Carrier: "twilio", Origin: OriginPurchased, Status: StatusActive, AgentID: "a1"})
	b.AddNumber(Number{E164: "+12282001235", Workspace: "w", Status: StatusActive})
	b.AddNumber(Number{E164: "not-a-number", Workspace: "w"})
	b.AddForward(Forward{Workspace: "w", BusinessNumber: "+14155550100", GatewayNumber: "+12282001234"})
	return b.Build()
}

func TestSnapshotLookup(t *testing.T) {
	s := testSnapshot()
	if s.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (invalid number skipped)", s.Len())
	}
	r, ok := s.Lookup("+12282001234")
	if !ok || r.Agent == nil || r.Agent.ID != "a1" || r.Number.Carrier != "twilio" {
		t.Fatalf("Lookup = %+v, %v", r, ok)
	}
	if r, ok := s.Lookup("+12282001235"); !ok || r.Agent != nil {
		t.Fatalf("unassigned Lookup = %+v, %v", r, ok)
	}
	if _, ok := s.Lookup("12282001234"); ok {
		t.Fatal("Lookup without + must miss (not E.164)")
	}
	if _, ok := s.Lookup("+19999999999"); ok {
		t.Fatal("unknown number found")
	}
	if f, ok := s.ForwardFrom("+14155550100"); !ok || f.GatewayNumber != "+12282001234" {
		t.Fatalf("ForwardFrom = %+v, %v", f, ok)
	}
	var nilSnap *Snapshot
	if _, ok := nilSnap.Lookup("+12282001234"); ok {
		t.Fatal("nil snapshot lookup")
	}
}

type fakeHealth map[string]struct {
	rtt time.Duration
	up  bool
}

func (h fakeHealth) Endpoint(uri string) (time.Duration, bool, bool) {
	v, ok := h[uri]
	return v.rtt, v.up, ok
}

func TestCandidatesOrder(t *testing.T) {
	s := testSnapshot()
	r, _ := s.Lookup("+12282001234")
	got := Candidates(r, nil)
	want := []string{"ap", "eu", "us"}
	for i, ep := range got {
		if ep.Region != want[i] {
			t.Fatalf("no health: order %v", got)
		}
	}
	h := fakeHealth{
		"sip:a@127.0.0.1:5091": {30 * time.Millisecond, true},
		"sip:a@127.0.0.1:5092": {10 * time.Millisecond, true},
		"sip:a@127.0.0.1:5093": {5 * time.Millisecond, false},
	}
	got = Candidates(r, h)
	if len(got) != 2 || got[0].Region != "us" || got[1].Region != "eu" {
		t.Fatalf("with health: %v", got)
	}
	rr := *r
	rr.Number.VoiceRegion = "eu"
	got = Candidates(&rr, h)
	if len(got) != 2 || got[0].Region != "eu" {
		t.Fatalf("voice region first: %v", got)
	}
	rr.Number.VoiceRegion = "ap" // down: not preferred
	got = Candidates(&rr, h)
	if len(got) != 2 || got[0].Region != "us" {
		t.Fatalf("down voice region: %v", got)
	}
}

func bigSnapshot(n int) *Snapshot {
	b := NewBuilder()
	b.AddAgent(Agent{ID: "a1", Workspace: "w", Endpoints: []Endpoint{
		{Region: "eu", URI: "sip:a@127.0.0.1:5091"},
		{Region: "us", URI: "sip:a@127.0.0.1:5092"},
	}})
	for i := 0; i < n; i++ {
		b.AddNumber(Number{
			E164: "+1228" + strconv.Itoa(2000000+i), Workspace: "w",
			Carrier: "twilio", Origin: OriginPurchased, Status: StatusActive, AgentID: "a1",
		})
	}
	return b.Build()
}

// TestSnapshotMemory1M reports the heap held by a 1,000,000-number
// snapshot (issue 3: under 300 MB). Skipped with -short.
func TestSnapshotMemory1M(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 1M-number table")
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	s := bigSnapshot(1_000_000)
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("1M-number snapshot holds %.1f MB of heap", float64(held)/1e6)
	if held > 300e6 {
		t.Errorf("1M-number snapshot holds %d bytes, want < 300 MB", held)
	}
	runtime.KeepAlive(s)
}

// BenchmarkRoutingDecision1M is one data-plane routing decision over a
// 1,000,000-number table: number lookup and endpoint ordering.
func BenchmarkRoutingDecision1M(b *testing.B) {
	s := bigSnapshot(1_000_000)
	h := fakeHealth{
		"sip:a@127.0.0.1:5091": {30 * time.Millisecond, true},
		"sip:a@127.0.0.1:5092": {10 * time.Millisecond, true},
	}
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "+1228" + strconv.Itoa(2000000+(i*977)%1_000_000)
	}
	var buf [8]Endpoint
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, ok := s.Lookup(keys[i&1023])
		if !ok {
			b.Fatal("miss")
		}
		c := AppendCandidates(buf[:0], r, h)
		if len(c) != 2 {
			b.Fatalf("candidates %v for %+v", c, r)
		}
	}
}

// WithNumbers derives the next snapshot from an overlay: adds, replaces
// and removals (of table and of overlay entries) read back right, the
// count follows, the snapshot it came from is unchanged, and a derived
// snapshot equals a full Build of the same state.
func TestWithNumbers(t *testing.T) {
	s0 := testSnapshot()
	s1 := s0.WithNumbers([]Number{
		{E164: "+12282001236", Workspace: "w", Status: StatusActive, AgentID: "a1"},    // new
		{E164: "+12282001235", Workspace: "w", Status: StatusSuspended, AgentID: "a1"}, // replaced
		{E164: "bogus", Workspace: "w"},                                                // ignored
	}, []string{"+12282001234", "+19999999999", "junk"}) // removed; unknown; invalid
	if s1.Len() != 2 || s1.Overlay() != 3 {
		t.Fatalf("Len %d Overlay %d, want 2 and 3", s1.Len(), s1.Overlay())
	}
	if _, ok := s1.Lookup("+12282001234"); ok {
		t.Fatal("removed number still routes")
	}
	if r, ok := s1.Lookup("+12282001236"); !ok || r.Agent == nil || r.Agent.ID != "a1" {
		t.Fatalf("added number: %+v %v", r, ok)
	}
	if r, ok := s1.Lookup("+12282001235"); !ok || r.Number.Status != StatusSuspended || r.Agent == nil {
		t.Fatalf("replaced number: %+v %v", r, ok)
	}
	// the snapshot it came from is untouched
	if r, ok := s0.Lookup("+12282001234"); !ok || s0.Len() != 2 || s0.Overlay() != 0 {
		t.Fatalf("s0 changed: %+v %v len %d", r, ok, s0.Len())
	}
	if r, _ := s0.Lookup("+12282001235"); r.Number.Status != StatusActive {
		t.Fatal("s0's route changed")
	}
	if _, ok := s0.Lookup("+12282001236"); ok {
		t.Fatal("s0 sees a number added later")
	}
	// removing an overlay-only number drops it from the overlay; re-adding
	// a removed table number brings it back
	s2 := s1.WithNumbers([]Number{{E164: "+12282001234", Workspace: "w", Status: StatusActive}}, []string{"+12282001236"})
	if s2.Len() != 2 || s2.Overlay() != 2 {
		t.Fatalf("s2 Len %d Overlay %d, want 2 and 2", s2.Len(), s2.Overlay())
	}
	if _, ok := s2.Lookup("+12282001236"); ok {
		t.Fatal("number added then removed still routes")
	}
	if r, ok := s2.Lookup("+12282001234"); !ok || r.Agent != nil {
		t.Fatalf("re-added number: %+v %v", r, ok)
	}
	// the same state built in full routes the same
	b := NewBuilder()
	b.AddAgent(Agent{ID: "a1", Workspace: "w"})
	b.AddNumber(Number{E164: "+12282001234", Workspace: "w", Status: StatusActive})
	b.AddNumber(Number{E164: "+12282001235", Workspace: "w", Status: StatusSuspended, AgentID: "a1"})
	full := b.Build()
	for _, e := range []string{"+12282001234", "+12282001235", "+12282001236", "+19999999999"} {
		r1, ok1 := s2.Lookup(e)
		r2, ok2 := full.Lookup(e)
		if ok1 != ok2 || ok1 && (r1.Number != r2.Number || (r1.Agent == nil) != (r2.Agent == nil)) {
			t.Errorf("%s: derived %+v %v, built %+v %v", e, r1, ok1, r2, ok2)
		}
	}
	// forwards and integrations are replaced whole, numbers kept
	s3 := s2.WithForwards(nil).WithIntegrations([]Integration{{ID: "i1", Carrier: "twilio"}})
	if _, ok := s3.ForwardFrom("+14155550100"); ok {
		t.Fatal("forward kept after WithForwards(nil)")
	}
	if _, ok := s2.ForwardFrom("+14155550100"); !ok {
		t.Fatal("s2 lost its forward")
	}
	if i, ok := s3.Integration("i1"); !ok || i.Carrier != "twilio" || s3.Len() != 2 {
		t.Fatalf("integration %+v %v len %d", i, ok, s3.Len())
	}
}

// BenchmarkWithNumbers1M is one purchase on a 1,000,000-number snapshot
// whose overlay already holds 1,000 changes: what a node does per routing
// update instead of a full Build (BenchmarkBuild1M).
func BenchmarkWithNumbers1M(b *testing.B) {
	s := bigSnapshot(1_000_000)
	var ups []Number
	for i := 0; i < 1000; i++ {
		ups = append(ups, Number{E164: "+1229" + strconv.Itoa(2000000+i), Workspace: "w", Status: StatusActive, AgentID: "a1"})
	}
	s = s.WithNumbers(ups, nil)
	n := []Number{{E164: "+13302000000", Workspace: "w", Status: StatusActive, AgentID: "a1"}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if next := s.WithNumbers(n, nil); next.Len() != 1_001_001 {
			b.Fatal(next.Len())
		}
	}
}

// BenchmarkBuild1M is a full build of a 1,000,000-number snapshot.
func BenchmarkBuild1M(b *testing.B) {
	bl := NewBuilder()
	bl.AddAgent(Agent{ID: "a1", Workspace: "w", Endpoints: []Endpoint{{Region: "eu", URI: "sip:a@127.0.0.1:5091"}}})
	for i := 0; i < 1_000_000; i++ {
		bl.AddNumber(Number{E164: "+1228" + strconv.Itoa(2000000+i), Workspace: "w", Carrier: "twilio",
			Origin: OriginPurchased, Status: StatusActive, AgentID: "a1"})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bl.Build()
	}
}
