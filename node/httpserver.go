package node

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/callgate/callgate/config"
)

// newHTTPServer builds the server for http_addr: every read and write has
// a deadline (a client that sends its headers or body a byte at a time is
// cut off), and at most cfg.MaxConnections connections are open at once
// (further ones wait in the accept queue), so slow clients cannot use up
// the process's file descriptors, which the embedded NATS store needs.
// It returns the listener to serve on.
func newHTTPServer(ln net.Listener, cfg config.HTTP, h http.Handler, log *slog.Logger, reg prometheus.Registerer) (*http.Server, net.Listener) {
	open := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "callgate", Subsystem: "http", Name: "connections",
		Help: "Open client connections to the HTTP server (API, webhooks, metrics, health).",
	})
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "callgate", Subsystem: "http", Name: "connections_max",
		Help: "Cap on open HTTP connections (http.max_connections); new ones wait to be accepted while it is reached.",
	})
	limit.Set(float64(cfg.MaxConnections))
	reg.MustRegister(open, limit)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Inc()
			case http.StateHijacked, http.StateClosed:
				open.Dec()
			}
		},
	}
	return srv, netutil.LimitListener(ln, cfg.MaxConnections)
}
