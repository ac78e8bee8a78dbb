package node

import (
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// startDebug serves net/http/pprof on cfg.DebugAddr (off when empty).
func (n *Node) startDebug() error {
	if n.cfg.DebugAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.cfg.DebugAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.closers = append(n.closers, func() { _ = srv.Close() })
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Warn("node: debug listener", "err", err)
		}
	}()
	n.log.Info("node: pprof on debug_addr", "addr", ln.Addr().String())
	return nil
}
