package config

import (
	"fmt"
	"time"
)

// HTTP tunes the HTTP server on http_addr (API, webhooks, /metrics,
// /healthz, /readyz) against slow and idle clients.
type HTTP struct {
	// MaxConnections caps open client connections; beyond it new
	// connections wait in the kernel's accept queue until one closes.
	MaxConnections int `yaml:"max_connections" env:"CALLGATE_HTTP_MAX_CONNECTIONS" help:"open HTTP connections at most; more wait to be accepted"`
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout" env:"CALLGATE_HTTP_READ_HEADER_TIMEOUT" help:"time a client has to send a request's headers"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration `yaml:"read_timeout" env:"CALLGATE_HTTP_READ_TIMEOUT" help:"time a client has to send a whole request (headers and body)"`
	// WriteTimeout bounds a request from the end of its headers to the
	// end of the response (must exceed the API's 30 s request bound).
	WriteTimeout time.Duration `yaml:"write_timeout" env:"CALLGATE_HTTP_WRITE_TIMEOUT" help:"time to answer a request (above the API's 30s request bound)"`
	// IdleTimeout closes a keep-alive connection with no request.
	IdleTimeout time.Duration `yaml:"idle_timeout" env:"CALLGATE_HTTP_IDLE_TIMEOUT" help:"idle keep-alive connections are closed after this"`
}

// DefaultHTTP returns the HTTP server defaults.
func DefaultHTTP() HTTP {
	return HTTP{
		MaxConnections:    4096,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      45 * time.Second,
		IdleTimeout:       60 * time.Second,
	}
}

func (h HTTP) validate() []error {
	var errs []error
	if h.MaxConnections < 1 || h.MaxConnections > 1_000_000 {
		errs = append(errs, fmt.Errorf("http.max_connections: %d is out of range 1..1000000", h.MaxConnections))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"http.read_header_timeout", h.ReadHeaderTimeout},
		{"http.read_timeout", h.ReadTimeout},
		{"http.write_timeout", h.WriteTimeout},
		{"http.idle_timeout", h.IdleTimeout},
	} {
		if d.v <= 0 || d.v > time.Hour {
			errs = append(errs, fmt.Errorf("%s: %s must be above 0 and at most 1h", d.key, d.v))
		}
	}
	if h.ReadHeaderTimeout > 0 && h.ReadTimeout > 0 && h.ReadHeaderTimeout > h.ReadTimeout {
		errs = append(errs, fmt.Errorf("http.read_header_timeout: %s is above http.read_timeout (%s)", h.ReadHeaderTimeout, h.ReadTimeout))
	}
	return errs
}
