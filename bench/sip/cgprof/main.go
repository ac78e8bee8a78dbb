// Command cgprof is `callgate serve` with CPU and heap profiles for
// bench/sip/run.sh --profile: the same config loading and node as the real
// binary, plus a CPU profile from SIGUSR1 to SIGUSR2 (the load window) and a
// heap profile written at SIGUSR2. callgate has no pprof endpoint; this build
// exists so that the benchmark can be profiled without one.
//
//	cgprof serve --config FILE --cpuprofile cpu.pprof --memprofile heap.pprof
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/node"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cgprof:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 || args[0] != "serve" {
		return errors.New("usage: cgprof serve --config FILE [--cpuprofile F] [--memprofile F]")
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", os.Getenv("CALLGATE_CONFIG"), "YAML config file")
	cpuPath := fs.String("cpuprofile", "", "CPU profile written from SIGUSR1 to SIGUSR2")
	memPath := fs.String("memprofile", "", "heap profile written at SIGUSR2")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	lvl := slog.LevelInfo
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(ctx, cfg, node.Options{Log: log})
	if err != nil {
		return err
	}
	log.Info("cgprof: serving", "http", n.HTTPAddr())

	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	var cpu *os.File
	stopCPU := func() {
		if cpu != nil {
			pprof.StopCPUProfile()
			cpu.Close()
			cpu = nil
			log.Info("cgprof: CPU profile written", "file", *cpuPath)
		}
	}
	defer stopCPU()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case s := <-sig:
			switch {
			case s == syscall.SIGUSR1 && *cpuPath != "" && cpu == nil:
				f, err := os.Create(*cpuPath)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					f.Close()
					return err
				}
				cpu = f
				log.Info("cgprof: CPU profile started")
			case s == syscall.SIGUSR2:
				stopCPU()
				if *memPath != "" {
					runtime.GC()
					if f, err := os.Create(*memPath); err == nil {
						_ = pprof.WriteHeapProfile(f)
						f.Close()
					}
				}
			}
		}
	}
	dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	n.Drain(dctx)
	cancel()
	n.Close()
	return nil
}
