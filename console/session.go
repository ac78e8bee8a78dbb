package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/store"
)

// BucketSessions is the NATS KV bucket of console sessions. An entry is
// kept under the SHA-256 of the session token (the token itself is only
// in the browser's cookie) and expires with the bucket's max age.
const BucketSessions = "callgate_console_sessions"

const (
	sessionCookie = "callgate_session"
	loginCookie   = "callgate_login" // the login form's CSRF token, before a session exists
)

// session is one logged-in browser.
type session struct {
	Workspace string    `json:"workspace,omitempty"`
	Admin     bool      `json:"admin,omitempty"`
	CSRF      string    `json:"csrf"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	// KeyID is a prefix of the API key's hash (audit records), never the key.
	KeyID string `json:"key_id"`
	key   string
}

func (s *session) principal() provisioning.Principal {
	return provisioning.Principal{Workspace: s.Workspace, Admin: s.Admin}
}

type sessions struct {
	kv  jetstream.KeyValue
	ttl time.Duration
	now func() time.Time
}

func openSessions(ctx context.Context, st *store.Store, ttl time.Duration, now func() time.Time) (*sessions, error) {
	replicas := 1
	if !st.Embedded() {
		if info, err := st.Workspaces.Status(ctx); err == nil {
			if s, ok := info.(*jetstream.KeyValueBucketStatus); ok {
				replicas = s.StreamInfo().Config.Replicas
			}
		}
	}
	kv, err := st.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BucketSessions,
		Description: "callgate console sessions (key: SHA-256 of the session token)",
		History:     1,
		TTL:         ttl,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("console: sessions bucket: %w", err)
	}
	return &sessions{kv: kv, ttl: ttl, now: now}, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tokenKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// create stores a new session and returns its token.
func (ss *sessions) create(ctx context.Context, p provisioning.Principal, keyID string) (string, *session, error) {
	token := randomHex(32)
	now := ss.now().UTC()
	s := &session{Workspace: p.Workspace, Admin: p.Admin, CSRF: randomHex(24), Created: now, Expires: now.Add(ss.ttl), KeyID: keyID}
	b, _ := json.Marshal(s)
	if _, err := ss.kv.Create(ctx, tokenKey(token), b); err != nil {
		return "", nil, fmt.Errorf("console: save session: %w", err)
	}
	s.key = tokenKey(token)
	return token, s, nil
}

// fromRequest returns the request's live session, or nil.
func (ss *sessions) fromRequest(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || len(ck.Value) != 64 {
		return nil
	}
	e, err := ss.kv.Get(r.Context(), tokenKey(ck.Value))
	if err != nil {
		return nil
	}
	var s session
	if json.Unmarshal(e.Value(), &s) != nil || !ss.now().Before(s.Expires) {
		return nil
	}
	s.key = e.Key()
	return &s
}

func (ss *sessions) delete(ctx context.Context, s *session) error {
	if err := ss.kv.Purge(ctx, s.key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("console: delete session: %w", err)
	}
	return nil
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.opts.SecureCookies,
	})
}

type sessionKey struct{}

func sessionOf(r *http.Request) *session {
	s, _ := r.Context().Value(sessionKey{}).(*session)
	return s
}

func validCSRF(r *http.Request, want string) bool {
	got := r.PostFormValue("csrf")
	return want != "" && len(got) == len(want) && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// user serves h for a logged-in session: the admin pages for the admin
// key, the others for a workspace key. A POST needs the session's CSRF
// token. Without a session, a page redirects to the login.
func (c *Console) user(admin bool, h func(w http.ResponseWriter, r *http.Request, s *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.sessions.fromRequest(r)
		if s == nil {
			if r.Method != http.MethodGet {
				c.renderStatus(w, r, http.StatusForbidden, "Session expired", "Log in again; nothing was changed.")
				return
			}
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !validCSRF(r, s.CSRF) {
			c.renderStatus(w, r, http.StatusForbidden, "Forbidden", "The form's security token is missing or wrong; reload the page and try again. Nothing was changed.")
			return
		}
		if admin != s.Admin && r.URL.Path != Prefix+"logout" {
			if s.Admin {
				http.Redirect(w, r, Prefix+"admin", http.StatusSeeOther)
			} else {
				c.renderStatus(w, r, http.StatusForbidden, "Forbidden", "This page needs the admin key.")
			}
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)), s)
	})
}

type loginView struct {
	CSRF  string
	Error string
	Key   string
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if s := c.sessions.fromRequest(r); s != nil {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	c.renderLogin(w, r, http.StatusOK, "")
}

func (c *Console) renderLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	token := randomHex(24)
	c.setCookie(w, loginCookie, token, 3600)
	c.render(w, r, status, "login", nil, loginView{CSRF: token, Error: msg})
}

// login checks the login form's CSRF token (a cookie set with the form),
// then the key through provisioning.Service.Authenticate, as the API does.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(loginCookie)
	if err != nil || !validCSRF(r, ck.Value) {
		c.renderStatus(w, r, http.StatusForbidden, "Forbidden", "The login form's security token is missing or wrong; open the login page again.")
		return
	}
	src := sourceOf(r)
	if wait, ok := c.limiter.allowed(src); !ok {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		c.renderLogin(w, r, http.StatusTooManyRequests, fmt.Sprintf("Too many failed logins from your address; try again in %d seconds.", int(wait.Seconds())+1))
		return
	}
	key := r.PostFormValue("api_key")
	p, err := c.svc.Authenticate(r.Context(), trimKey(key))
	if err != nil {
		if errors.Is(err, provisioning.ErrForbidden) {
			c.limiter.fail(src)
			c.auditAuthFailed(r, key)
			c.renderLogin(w, r, http.StatusUnauthorized, "That API key is not valid. Paste the key from data/api-key (or data/admin-key).")
			return
		}
		c.renderLogin(w, r, http.StatusServiceUnavailable, "The key could not be checked right now; retry. ("+err.Error()+")")
		return
	}
	token, _, err := c.sessions.create(r.Context(), p, keyID(trimKey(key)))
	if err != nil {
		c.log.Warn("console: login", "err", err)
		c.renderLogin(w, r, http.StatusServiceUnavailable, "The session could not be saved (state store unavailable); retry.")
		return
	}
	c.setCookie(w, loginCookie, "", -1)
	c.setCookie(w, sessionCookie, token, int(c.opts.SessionTTL.Seconds()))
	if p.Admin {
		http.Redirect(w, r, Prefix+"admin", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, Prefix+"numbers", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	if err := c.sessions.delete(r.Context(), s); err != nil {
		c.log.Warn("console: logout", "err", err)
		c.renderStatus(w, r, http.StatusServiceUnavailable, "Logout failed", "The session could not be deleted (state store unavailable); retry.")
		return
	}
	c.setCookie(w, sessionCookie, "", -1)
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

func trimKey(k string) string {
	for len(k) > 0 && (k[0] == ' ' || k[0] == '\n' || k[0] == '\r' || k[0] == '\t') {
		k = k[1:]
	}
	for len(k) > 0 && (k[len(k)-1] == ' ' || k[len(k)-1] == '\n' || k[len(k)-1] == '\r' || k[len(k)-1] == '\t') {
		k = k[:len(k)-1]
	}
	return k
}

// keyID identifies an API key in audit records as the API does: a prefix
// of its hash.
func keyID(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:8])
}
