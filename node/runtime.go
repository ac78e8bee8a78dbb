package node

import (
	"log/slog"
	"runtime/debug"

	"github.com/callgate/callgate/config"
)

// applyRuntime sets the garbage collector's target from the `runtime:`
// section (config/runtime.go); zero values leave GOGC and GOMEMLIMIT (or
// Go's defaults) in force.
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
}
