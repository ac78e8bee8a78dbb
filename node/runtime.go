package node

import (
	"log/slog"
	"runtime"
	"runtime/debug"

	"github.com/callgate/callgate/config"
)

// applyRuntime sets the garbage collector's target and the threads that
// run Go code from the `runtime:` section (config/runtime.go); zero values
// leave GOGC, GOMEMLIMIT and GOMAXPROCS (or Go's defaults) in force. It
// runs before the listeners start: the SIP edge's read loops and the media
// relay's workers are counted from GOMAXPROCS when they start.
func applyRuntime(r config.Runtime, log *slog.Logger) {
	if r.GCPercent != 0 {
		debug.SetGCPercent(r.GCPercent)
	}
	if r.MemoryLimitMB > 0 {
		debug.SetMemoryLimit(int64(r.MemoryLimitMB) << 20)
	}
	if r.GCPercent != 0 || r.MemoryLimitMB > 0 {
		log.Info("node: garbage collector target", "gc_percent", r.GCPercent, "memory_limit_mb", r.MemoryLimitMB)
	}
	if r.MaxProcs > 0 {
		prev := runtime.GOMAXPROCS(r.MaxProcs)
		log.Info("node: threads running Go code", "max_procs", r.MaxProcs, "was", prev)
	}
}
