package config

import (
	"fmt"
	"strconv"
	"time"
)

// HTTP tunes the HTTP server on http_addr (API, webhooks, /metrics,
// /healthz, /readyz) against slow and idle clients.
type HTTP struct {
	// MaxConnections caps open client connections; beyond it new
	// connections wait in the kernel's accept queue until one closes.
	MaxConnections int `yaml:"max_connections"`
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// WriteTimeout bounds a request from the end of its headers to the
	// end of the response (must exceed the API's 30 s request bound).
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// IdleTimeout closes a keep-alive connection with no request.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
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

func httpSettings() []Setting {
	d := DefaultHTTP()
	return []Setting{
		{"http.max_connections", "CALLGATE_HTTP_MAX_CONNECTIONS", strconv.Itoa(d.MaxConnections), "open HTTP connections at most; more wait to be accepted"},
		{"http.read_header_timeout", "CALLGATE_HTTP_READ_HEADER_TIMEOUT", d.ReadHeaderTimeout.String(), "time a client has to send a request's headers"},
		{"http.read_timeout", "CALLGATE_HTTP_READ_TIMEOUT", d.ReadTimeout.String(), "time a client has to send a whole request (headers and body)"},
		{"http.write_timeout", "CALLGATE_HTTP_WRITE_TIMEOUT", d.WriteTimeout.String(), "time to answer a request (above the API's 30s request bound)"},
		{"http.idle_timeout", "CALLGATE_HTTP_IDLE_TIMEOUT", d.IdleTimeout.String(), "idle keep-alive connections are closed after this"},
	}
}

func (h *HTTP) applyEnv(env func(string) string) []error {
	var errs []error
	dur := func(k string, dst *time.Duration) {
		if v := env(k); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration (e.g. 30s, 1m)", k, v))
				return
			}
			*dst = d
		}
	}
	if v := env("CALLGATE_HTTP_MAX_CONNECTIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("CALLGATE_HTTP_MAX_CONNECTIONS: %q is not an integer", v))
		} else {
			h.MaxConnections = n
		}
	}
	dur("CALLGATE_HTTP_READ_HEADER_TIMEOUT", &h.ReadHeaderTimeout)
	dur("CALLGATE_HTTP_READ_TIMEOUT", &h.ReadTimeout)
	dur("CALLGATE_HTTP_WRITE_TIMEOUT", &h.WriteTimeout)
	dur("CALLGATE_HTTP_IDLE_TIMEOUT", &h.IdleTimeout)
	return errs
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
