package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/node"
)

func versionString() string { return "callgate " + node.Version }

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfgPath := fs.String("config", os.Getenv("CALLGATE_CONFIG"), "YAML config file (env CALLGATE_CONFIG)")
	check := fs.Bool("check", false, "validate the config and exit (dry run)")
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, "Usage: callgate serve [--config FILE] [--check]\n\n")
		fmt.Fprint(w, "Runs the gateway. With no config file it uses the embedded defaults: an embedded\n")
		fmt.Fprint(w, "NATS server with JetStream under ./data, the HTTP API on 127.0.0.1:8080, the sandbox\n")
		fmt.Fprint(w, "carrier, and on first start a workspace 'default' with 1000 credits.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(w, "\nSettings (YAML key, environment override, default). The environment overrides the\n")
		fmt.Fprint(w, "file; durations are written 30s, 5m, 1h; key[].x is key x of each element of a list.\n")
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		for _, s := range config.Settings() {
			env := s.Env
			if env == "" {
				env = "-"
			}
			def := s.Default
			if def == "" {
				def = `""`
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Key, env, def, s.Help)
		}
		tw.Flush()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	cfg, err := config.Load(*cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	if *check {
		fmt.Println("config OK")
		return nil
	}
	log := newLogger(cfg.Log)
	slog.SetDefault(log) // libraries logging through slog.Default or log (sipgo) write the same format
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.Start(ctx, cfg, node.Options{Log: log})
	if err != nil {
		return err
	}
	log.Info("callgate: serving", "version", node.Version, "http", n.HTTPAddr(), "region", cfg.Region,
		"nats", natsDesc(cfg), "data_dir", cfg.DataDir, "api", "http://"+n.HTTPAddr(),
		"api_key_file", filepath.Join(cfg.DataDir, "api-key"), "admin_key_file", filepath.Join(cfg.DataDir, "admin-key"))
	<-ctx.Done()
	log.Info("callgate: shutting down", "drain_timeout", cfg.ShutdownTimeout)
	dctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	n.Drain(dctx)
	cancel()
	n.Close()
	log.Info("callgate: stopped")
	return nil
}

func natsDesc(c config.Config) string {
	if c.NATS.URL != "" {
		return "external"
	}
	if c.NATS.Listen != "" {
		return "embedded, listening on " + c.NATS.Listen
	}
	return "embedded (in-process)"
}

func newLogger(c config.Log) *slog.Logger {
	var lvl slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationString}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// durationString writes durations as Go duration strings ("30s"): the
// JSON handler would write nanoseconds as a bare number.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}
