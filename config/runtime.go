package config

import "fmt"

// Runtime tunes the Go runtime of the process (issue 15): the garbage
// collector's target and how many threads run Go code at once. Garbage
// collection is a large share of the SIP edge's CPU per call; a higher
// gc_percent collects less often, and memory_limit_mb bounds what that
// costs in memory (the collector works harder near it). max_procs caps
// the threads: a node whose load fits in fewer CPUs than it has spends
// less per call with fewer (no idle thread to wake for each goroutine made
// ready, no work to steal), at the price of that cap on its throughput.
type Runtime struct {
	GCPercent     int `yaml:"gc_percent" env:"CALLGATE_GC_PERCENT" default:"(GOGC, else 100)" help:"heap growth over the live heap, in percent, before a garbage collection (Go's GOGC); 0 = GOGC or 100; -1 = collect only near memory_limit_mb"`
	MemoryLimitMB int `yaml:"memory_limit_mb" env:"CALLGATE_MEMORY_LIMIT_MB" default:"(GOMEMLIMIT, else none)" help:"soft memory limit of the process in MiB (Go's GOMEMLIMIT): the collector runs more often near it; 0 = GOMEMLIMIT or none"`
	MaxProcs      int `yaml:"max_procs" env:"CALLGATE_MAX_PROCS" default:"(GOMAXPROCS, else the CPUs the process may use)" help:"threads running Go code at once (Go's GOMAXPROCS): the SIP read loops and the media relay's workers are as many unless set; 0 = GOMAXPROCS or the CPUs the process may use"`
}

// maxProcsLimit bounds runtime.max_procs: far above any machine's CPUs,
// low enough that a typo (10000) is refused rather than obeyed.
const maxProcsLimit = 1024

func (r Runtime) validate() []error {
	var errs []error
	if r.GCPercent < -1 || r.GCPercent > 10000 {
		errs = append(errs, fmt.Errorf("runtime.gc_percent: %d must be -1 (off), 0 (default) or 1 to 10000", r.GCPercent))
	}
	if r.MemoryLimitMB < 0 {
		errs = append(errs, fmt.Errorf("runtime.memory_limit_mb: %d must not be negative", r.MemoryLimitMB))
	}
	if r.GCPercent == -1 && r.MemoryLimitMB == 0 {
		errs = append(errs, fmt.Errorf("runtime.gc_percent: -1 (collect only near the memory limit) needs runtime.memory_limit_mb"))
	}
	if r.MaxProcs < 0 || r.MaxProcs > maxProcsLimit {
		errs = append(errs, fmt.Errorf("runtime.max_procs: %d must be 0 (the CPUs the process may use) or 1 to %d", r.MaxProcs, maxProcsLimit))
	}
	return errs
}
