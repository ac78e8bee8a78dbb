// Package console serves callgate's web console under /console/: pages
// rendered on the server with html/template, htmx for partial updates and
// Pico CSS for the look (both vendored under static/vendor with their
// licences, refreshed by `make vendor-web`). Every page calls the same
// provisioning.Service functions as the API handlers, so a rule lives in
// one place; a form that fails shows the provisioning error next to the
// field it names.
//
// Security: a login with an API key opens a server-side session kept in
// NATS KV (bucket callgate_console_sessions, expiring); the cookie is
// HttpOnly, SameSite=Strict and Secure when public_url is https; every
// POST carries the session's CSRF token (403 without it); pages are sent
// with a Content-Security-Policy that allows only this origin's scripts
// and styles (no inline script or style); failed logins are limited per
// source address.
package console

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/provisioning"
)

//go:embed static
var staticFS embed.FS

//go:embed templates
var templateFS embed.FS

// EndpointHealth is what the SIP prober knows of one agent endpoint.
type EndpointHealth struct {
	Region string
	URI    string
	Up     bool
	Probed bool
	RTT    time.Duration
}

// Options configure the console.
type Options struct {
	Service *provisioning.Service
	// Audit records the audited operations done in the console, as the
	// API does for its own (nil: not recorded).
	Audit *audit.Log
	// Health lists the prober's endpoint states (nil: health unknown).
	Health func() []EndpointHealth
	// Calls reads the call history for the Calls page and the business
	// lines' test status (nil: no call history).
	Calls *callhistory.Reader
	// ActiveCalls is a workspace's calls in progress on every node, and
	// whether the count is known (nil: unknown).
	ActiveCalls func(workspace string) (int64, bool)
	Log         *slog.Logger
	// SecureCookies marks the session cookie Secure (public_url is https).
	SecureCookies bool
	// SessionTTL is how long a session lasts (default 12h).
	SessionTTL time.Duration
	// Timeout bounds each request (default 30s).
	Timeout time.Duration
	// LoginFailures is how many failed logins one source may make per
	// LoginWindow before it is refused with 429 (defaults 5 per minute).
	LoginFailures int
	LoginWindow   time.Duration
	Now           func() time.Time
}

// Console is the /console/ handler.
type Console struct {
	opts     Options
	svc      *provisioning.Service
	log      *slog.Logger
	mux      *http.ServeMux
	pages    *pages
	sessions *sessions
	limiter  *loginLimiter
	static   http.Handler
}

// Prefix is where the console is mounted.
const Prefix = "/console/"

// maxForm caps a form body.
const maxForm = 64 << 10

// CSP is the Content-Security-Policy of every console response: scripts,
// styles and forms from this origin only, no inline script or style, no
// framing. Pico's icons are data: URIs in its stylesheet.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; object-src 'none'"

// New builds the console; it creates the sessions bucket if needed.
func New(ctx context.Context, o Options) (*Console, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 12 * time.Hour
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.LoginFailures <= 0 {
		o.LoginFailures = 5
	}
	if o.LoginWindow <= 0 {
		o.LoginWindow = time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ss, err := openSessions(ctx, o.Service.Store(), o.SessionTTL, o.Now)
	if err != nil {
		return nil, err
	}
	pg, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(staticFS, "static")
	c := &Console{
		opts: o, svc: o.Service, log: o.Log, mux: http.NewServeMux(), pages: pg, sessions: ss,
		limiter: newLoginLimiter(o.LoginFailures, o.LoginWindow, o.Now),
		static:  http.StripPrefix(Prefix+"static/", http.FileServerFS(sub)),
	}
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	m := c.mux
	m.HandleFunc("GET /console/static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		c.static.ServeHTTP(w, r)
	})
	m.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		if s := c.sessions.fromRequest(r); s != nil && s.Admin {
			http.Redirect(w, r, Prefix+"admin", http.StatusSeeOther)
			return
		}
		http.Redirect(w, r, Prefix+"numbers", http.StatusSeeOther)
	})
	m.HandleFunc("GET /console/login", c.loginPage)
	m.HandleFunc("POST /console/login", c.login)
	m.Handle("POST /console/logout", c.user(false, c.logout))

	m.Handle("GET /console/numbers", c.user(false, c.numbersPage))
	m.Handle("POST /console/numbers/{number}/agent", c.user(false, c.assignAgent))
	m.Handle("POST /console/numbers/{number}/region", c.user(false, c.setRegion))
	m.Handle("POST /console/numbers/{number}/release", c.user(false, c.release))

	m.Handle("GET /console/buy", c.user(false, c.buyPage))
	m.Handle("GET /console/buy/more", c.user(false, c.buyMore))
	m.Handle("POST /console/buy", c.user(false, c.purchase))

	m.Handle("GET /console/import", c.user(false, c.importPage))
	m.Handle("POST /console/integrations", c.user(false, c.createIntegration))
	m.Handle("POST /console/import", c.user(false, c.doImport))

	m.Handle("GET /console/agents", c.user(false, c.agentsPage))
	m.Handle("POST /console/agents", c.user(false, c.createAgent))
	m.Handle("GET /console/agents/{id}", c.user(false, c.agentPage))
	m.Handle("POST /console/agents/{id}", c.user(false, c.updateAgent))
	m.Handle("POST /console/agents/{id}/delete", c.user(false, c.deleteAgent))

	m.Handle("GET /console/forwarding", c.user(false, c.forwardingPage))
	m.Handle("POST /console/forwarding", c.user(false, c.createForwarding))
	m.Handle("POST /console/forwarding/{number}/delete", c.user(false, c.deleteForwarding))

	m.Handle("GET /console/credits", c.user(false, c.creditsPage))

	m.Handle("GET /console/calls", c.user(false, c.callsPage))
	m.Handle("GET /console/calls/{id}", c.user(false, c.callPage))

	m.Handle("GET /console/admin", c.user(true, c.adminPage))
	m.Handle("POST /console/admin/workspaces", c.user(true, c.createWorkspace))
	m.Handle("POST /console/admin/topup", c.user(true, c.topUp))
	m.Handle("GET /console/admin/audit", c.user(true, c.auditPage))

	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.renderStatus(w, r, http.StatusNotFound, "Not found", "There is no console page at "+r.URL.Path+".")
	})
}

// ServeHTTP implements http.Handler: security headers, a deadline and a
// body cap on every request, and a recovered panic is a 500 page.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Prefix+"static/") {
		h.Set("Cache-Control", "no-store")
	}
	defer func() {
		if v := recover(); v != nil {
			c.log.Error("console: panic", "path", r.URL.Path, "panic", v)
			http.Error(w, "internal error; it was logged", http.StatusInternalServerError)
		}
	}()
	ctx, cancel := context.WithTimeout(r.Context(), c.opts.Timeout)
	defer cancel()
	r = r.WithContext(ctx)
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil {
			c.renderStatus(w, r, http.StatusBadRequest, "Bad form", "The form could not be read (at most 64 KiB).")
			return
		}
		// A cross-site POST is refused before anything else (the CSRF
		// token is checked too, per handler).
		if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" {
			c.renderStatus(w, r, http.StatusForbidden, "Forbidden", "Cross-site form posts are refused.")
			return
		}
	}
	c.mux.ServeHTTP(w, r)
}
