package node

import (
	"log/slog"
	"math"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/callgate/callgate/config"
)

// TestApplyRuntime: the runtime section sets the garbage collector's
// target, memory limit and GOMAXPROCS; zero values leave them alone.
func TestApplyRuntime(t *testing.T) {
	prevGC := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	prevProcs := runtime.GOMAXPROCS(3)
	t.Cleanup(func() {
		debug.SetGCPercent(prevGC)
		debug.SetMemoryLimit(prevLimit)
		runtime.GOMAXPROCS(prevProcs)
	})
	log := slog.New(slog.DiscardHandler)
	applyRuntime(config.Runtime{}, log)
	if gc, limit := debug.SetGCPercent(100), debug.SetMemoryLimit(-1); gc != 100 || limit != math.MaxInt64 {
		t.Fatalf("zero runtime section changed the GC: gc_percent %d, limit %d", gc, limit)
	}
	if p := runtime.GOMAXPROCS(0); p != 3 {
		t.Fatalf("zero runtime section changed GOMAXPROCS: %d, want 3", p)
	}
	applyRuntime(config.Runtime{GCPercent: 400, MemoryLimitMB: 256, MaxProcs: 1}, log)
	if p := runtime.GOMAXPROCS(0); p != 1 {
		t.Errorf("GOMAXPROCS = %d, want 1", p)
	}
	if gc := debug.SetGCPercent(100); gc != 400 {
		t.Errorf("gc_percent = %d, want 400", gc)
	}
	if limit := debug.SetMemoryLimit(-1); limit != 256<<20 {
		t.Errorf("memory limit = %d, want %d", limit, 256<<20)
	}
}
