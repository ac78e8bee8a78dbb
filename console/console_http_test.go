package console_test

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callgate/callgate/audit"
	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/console"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// client is a browser without JavaScript: a cookie jar, no redirects
// followed unless asked.
type client struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(method, path string, form url.Values) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf reads the CSRF token of the page at path.
func (c *client) csrf(path string) string {
	c.t.Helper()
	_, body := c.do("GET", path, nil)
	m := csrfField.FindStringSubmatch(body)
	if m == nil {
		c.t.Fatalf("no CSRF token on %s", path)
	}
	return m[1]
}

// login logs in with key and returns the response.
func (c *client) login(key string) *http.Response {
	c.t.Helper()
	tok := c.csrf("/console/login")
	resp, _ := c.do("POST", "/console/login", url.Values{"csrf": {tok}, "api_key": {key}})
	return resp
}

func (c *client) mustLogin(key string) {
	c.t.Helper()
	if resp := c.login(key); resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("login: %d", resp.StatusCode)
	}
}

func startNode(t *testing.T, mutate func(*config.Config)) (*node.Node, string) {
	n := nodetest.Start(t, nodetest.Config(mutate))
	return n, "http://" + n.HTTPAddr()
}

func buyOne(t *testing.T, n *node.Node, p provisioning.Principal) provisioning.Number {
	t.Helper()
	ctx := context.Background()
	page, err := n.Service().Search(ctx, p, provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: searchQuery("US", "228")})
	if err != nil || len(page.Numbers) == 0 {
		t.Fatalf("search: %v", err)
	}
	num, err := n.Service().Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: page.Numbers[0].PhoneNumber, Carrier: "sandbox"}, "")
	if err != nil {
		t.Fatal(err)
	}
	return num
}

// TestSessionCookieAndKV: the session lives in NATS KV under the hash of
// the token; the cookie is HttpOnly, SameSite=Strict, Secure for an https
// public_url; logout deletes the KV entry and the old cookie stops working.
func TestSessionCookieAndKV(t *testing.T) {
	for _, tc := range []struct {
		public string
		secure bool
	}{{"", false}, {"https://gw.example.com", true}} {
		n, base := startNode(t, func(c *config.Config) { c.PublicURL = tc.public })
		c := newClient(t, base)
		resp := c.login(n.APIKey())
		var sess *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "callgate_session" {
				sess = ck
			}
		}
		if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteStrictMode || sess.Secure != tc.secure || sess.Path != "/console/" {
			t.Fatalf("public_url %q: session cookie %+v", tc.public, sess)
		}
		kv, err := n.Store().JS.KeyValue(context.Background(), console.BucketSessions)
		if err != nil {
			t.Fatal(err)
		}
		keys, _ := kv.ListKeys(context.Background())
		var stored []string
		for k := range keys.Keys() {
			stored = append(stored, k)
		}
		if len(stored) != 1 || stored[0] == sess.Value || len(stored[0]) != 64 {
			t.Fatalf("sessions in KV: %v (token %s)", stored, sess.Value)
		}
		if r, _ := c.do("GET", "/console/numbers", nil); r.StatusCode != 200 {
			t.Fatalf("numbers with a session: %d", r.StatusCode)
		}
		tok := c.csrf("/console/numbers")
		if r, _ := c.do("POST", "/console/logout", url.Values{"csrf": {tok}}); r.StatusCode != http.StatusSeeOther {
			t.Fatalf("logout: %d", r.StatusCode)
		}
		if _, err := kv.Get(context.Background(), stored[0]); err != jetstream.ErrKeyNotFound {
			t.Fatalf("session still in KV after logout: %v", err)
		}
		// The old cookie, replayed, is refused.
		old := newClient(t, base)
		u, _ := url.Parse(base + "/console/")
		old.hc.Jar.SetCookies(u, []*http.Cookie{{Name: "callgate_session", Value: sess.Value, Path: "/console/"}})
		if r, _ := old.do("GET", "/console/numbers", nil); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/console/login" {
			t.Fatalf("replayed cookie after logout: %d %s", r.StatusCode, r.Header.Get("Location"))
		}
	}
}

// TestCSRF: a POST without the session's token (or with another
// session's) is 403 and changes nothing; so is a login without the login
// form's token.
func TestCSRF(t *testing.T) {
	n, base := startNode(t, nil)
	p := provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}
	num := buyOne(t, n, p)
	c := newClient(t, base)
	c.mustLogin(n.APIKey())
	other := newClient(t, base)
	other.mustLogin(n.APIKey())
	otherTok := other.csrf("/console/numbers")
	path := "/console/numbers/" + num.PhoneNumber + "/release"
	for name, form := range map[string]url.Values{
		"no token":              {},
		"empty token":           {"csrf": {""}},
		"another session's":     {"csrf": {otherTok}},
		"wrong token, same len": {"csrf": {strings.Repeat("0", len(otherTok))}},
	} {
		if r, body := c.do("POST", path, form); r.StatusCode != http.StatusForbidden || !strings.Contains(body, "security token") {
			t.Fatalf("%s: %d", name, r.StatusCode)
		}
	}
	if _, err := n.Service().GetNumber(context.Background(), p, num.PhoneNumber); err != nil {
		t.Fatalf("a POST without CSRF token released the number: %v", err)
	}
	// With the token it works (the check is not refusing everything).
	tok := c.csrf("/console/numbers")
	if r, _ := c.do("POST", path, url.Values{"csrf": {tok}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("release with the token: %d", r.StatusCode)
	}
	// Login without the login form's token.
	fresh := newClient(t, base)
	if r, _ := fresh.do("POST", "/console/login", url.Values{"api_key": {n.APIKey()}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("login without a token: %d", r.StatusCode)
	}
	// A cross-site POST is refused even with the token.
	req, _ := http.NewRequest("POST", base+"/console/logout", strings.NewReader("csrf="+tok))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	u, _ := url.Parse(base + "/console/")
	for _, ck := range c.hc.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d", resp.StatusCode)
	}
}

// TestLoginRateLimit: after 5 failed logins a source is refused with 429
// and Retry-After, even with the right key; the failures are audited.
func TestLoginRateLimit(t *testing.T) {
	n, base := startNode(t, nil)
	c := newClient(t, base)
	for i := 0; i < 5; i++ {
		if r := c.login("cg_live_wrong"); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad key %d: %d", i, r.StatusCode)
		}
	}
	r := c.login(n.APIKey())
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("6th login: %d Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	for _, ck := range r.Cookies() {
		if ck.Name == "callgate_session" && ck.Value != "" {
			t.Fatal("a rate-limited login got a session")
		}
	}
	al := audit.New(n.Store(), audit.Options{})
	page, err := al.List(context.Background(), audit.Query{Action: audit.ActionAuthFailed})
	if err != nil || len(page.Records) == 0 {
		t.Fatalf("failed logins not audited: %v %+v", err, page)
	}
}

// TestPagesHeadersAndNoJS: every page is readable without JavaScript
// (the data is in the HTML), is sent with the strict CSP, and holds no
// inline script or style.
func TestPagesHeadersAndNoJS(t *testing.T) {
	n, base := startNode(t, nil)
	p := provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}
	num := buyOne(t, n, p)
	c := newClient(t, base)
	if r, body := c.do("GET", "/console/login", nil); r.Header.Get("Content-Security-Policy") != console.CSP || !strings.Contains(body, `name="api_key"`) {
		t.Fatalf("login page: %d %q", r.StatusCode, r.Header.Get("Content-Security-Policy"))
	}
	c.mustLogin(n.APIKey())
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>`)
	for path, want := range map[string]string{
		"/console/numbers":                      num.PhoneNumber,
		"/console/buy?country=US&area_code=228": "Mississippi",
		"/console/import":                       "Connect a carrier account",
		"/console/agents":                       "New agent",
		"/console/forwarding":                   "*72",
		"/console/credits":                      "purchase",
		"/console/calls":                        "Calls in progress",
	} {
		r, body := c.do("GET", path, nil)
		if r.StatusCode != 200 || !strings.Contains(html.UnescapeString(body), want) {
			t.Errorf("%s: %d, want %q in the HTML", path, r.StatusCode, want)
		}
		if r.Header.Get("Content-Security-Policy") != console.CSP || r.Header.Get("X-Frame-Options") != "DENY" || r.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: headers %v", path, r.Header)
		}
		for _, tag := range inlineScript.FindAllString(body, -1) {
			if !strings.Contains(tag, ` src="/console/static/`) {
				t.Errorf("%s: inline script %s", path, tag)
			}
		}
		if strings.Contains(body, " style=") || strings.Contains(body, "<style") || strings.Contains(body, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
			t.Errorf("%s: inline style or event handler", path)
		}
	}
	// The vendored assets are served, with their licences.
	for _, path := range []string{"/console/static/vendor/htmx/htmx.min.js", "/console/static/vendor/htmx/LICENSE",
		"/console/static/vendor/pico/pico.min.css", "/console/static/vendor/pico/LICENSE.md"} {
		if r, body := c.do("GET", path, nil); r.StatusCode != 200 || len(body) < 100 {
			t.Errorf("%s: %d (%d bytes)", path, r.StatusCode, len(body))
		}
	}
	// A form body over the cap is refused.
	tok := c.csrf("/console/agents")
	big := url.Values{"csrf": {tok}, "name": {strings.Repeat("x", 100<<10)}}
	if r, _ := c.do("POST", "/console/agents", big); r.StatusCode != http.StatusBadRequest {
		t.Errorf("oversize form: %d", r.StatusCode)
	}
}

// TestWorkspaceIsolation: a session acts only in its own workspace, and
// the admin pages need the admin key.
func TestWorkspaceIsolation(t *testing.T) {
	n, base := startNode(t, nil)
	ctx := context.Background()
	a := provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}
	num := buyOne(t, n, a)
	_, keyB, err := n.Service().CreateWorkspace(ctx, "other", "Other", 1000)
	if err != nil {
		t.Fatal(err)
	}
	b := newClient(t, base)
	b.mustLogin(keyB)
	if _, body := b.do("GET", "/console/numbers", nil); strings.Contains(html.UnescapeString(body), num.PhoneNumber) {
		t.Fatal("workspace B sees A's number")
	}
	tok := b.csrf("/console/numbers")
	if r, _ := b.do("POST", "/console/numbers/"+num.PhoneNumber+"/release", url.Values{"csrf": {tok}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("B releasing A's number: %d", r.StatusCode)
	}
	if _, err := n.Service().GetNumber(ctx, a, num.PhoneNumber); err != nil {
		t.Fatalf("A's number gone: %v", err)
	}
	if r, _ := b.do("GET", "/console/admin", nil); r.StatusCode != http.StatusForbidden {
		t.Fatalf("workspace key on the admin page: %d", r.StatusCode)
	}
	// The admin key opens the admin view: workspaces, top-ups, audit log.
	adm := newClient(t, base)
	if r := adm.login(n.AdminKey()); r.Header.Get("Location") != "/console/admin" {
		t.Fatalf("admin login goes to %q", r.Header.Get("Location"))
	}
	_, body := adm.do("GET", "/console/admin", nil)
	if !strings.Contains(body, "<code>other</code>") || !strings.Contains(body, "<code>"+a.Workspace+"</code>") {
		t.Fatalf("admin view lacks the workspaces:\n%s", body)
	}
	tok = adm.csrf("/console/admin")
	key := csrfIdem(body)
	if r, _ := adm.do("POST", "/console/admin/topup", url.Values{"csrf": {tok}, "workspace": {"other"}, "amount": {"250"}, "reason": {"test"}, "idempotency_key": {key}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("top-up: %d", r.StatusCode)
	}
	// The same form sent twice adds the credits once.
	adm.do("POST", "/console/admin/topup", url.Values{"csrf": {tok}, "workspace": {"other"}, "amount": {"250"}, "reason": {"test"}, "idempotency_key": {key}})
	if bal, _ := n.Service().Balance(ctx, "other"); bal != 1250 {
		t.Fatalf("balance after a top-up sent twice: %d, want 1250", bal)
	}
	if r, body := adm.do("POST", "/console/admin/topup", url.Values{"csrf": {tok}, "workspace": {"other"}, "amount": {"lots"}}); r.StatusCode != 400 || !strings.Contains(body, "topup-amount-error") {
		t.Fatalf("bad amount: %d", r.StatusCode)
	}
	_, body = adm.do("GET", "/console/admin/audit?workspace=other", nil)
	if !strings.Contains(body, audit.ActionCreditsTopUp) {
		t.Fatalf("audit page lacks the top-up:\n%s", body)
	}
	if r, _ := adm.do("GET", "/console/numbers", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("admin on a workspace page: %d", r.StatusCode)
	}
}

var idemField = regexp.MustCompile(`name="idempotency_key" value="([0-9a-f]+)"`)

func csrfIdem(body string) string {
	m := idemField.FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestPurchaseErrorsInDialog: a 402 (credits short) and a 409 (number
// taken meanwhile) are shown in the purchase dialog, and nothing is charged.
func TestPurchaseErrorsInDialog(t *testing.T) {
	n, base := startNode(t, nil)
	ctx := context.Background()
	_, keyPoor, err := n.Service().CreateWorkspace(ctx, "poor", "Poor", 0)
	if err != nil {
		t.Fatal(err)
	}
	rich := provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}
	taken := buyOne(t, n, rich)
	page, err := n.Service().Search(ctx, rich, provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: searchQuery("US", "228")})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, base)
	c.mustLogin(keyPoor)
	tok := c.csrf("/console/buy")
	form := func(number string) url.Values {
		return url.Values{"csrf": {tok}, "phone_number": {number}, "source": {"sandbox"}, "country": {"US"}, "area_code": {"228"},
			"cost": {"100"}, "idempotency_key": {"k-" + number}}
	}
	r, body := c.do("POST", "/console/buy", form(page.Numbers[0].PhoneNumber))
	body = html.UnescapeString(body)
	if r.StatusCode != http.StatusPaymentRequired || !strings.Contains(body, `id="confirm-dialog"`) || !strings.Contains(body, `id="purchase-error"`) ||
		!strings.Contains(body, "Insufficient credits") || !strings.Contains(body, "nothing was charged") {
		t.Fatalf("402: %d\n%s", r.StatusCode, body)
	}
	if ns, _ := n.Service().ListNumbers(ctx, provisioning.Principal{Workspace: "poor"}); len(ns) != 0 {
		t.Fatalf("a refused purchase left numbers: %+v", ns)
	}
	if _, err := n.Service().TopUp(ctx, "poor", 500, "test"); err != nil {
		t.Fatal(err)
	}
	r, body = c.do("POST", "/console/buy", form(taken.PhoneNumber))
	body = html.UnescapeString(body)
	if r.StatusCode != http.StatusConflict || !strings.Contains(body, `id="purchase-error"`) || !strings.Contains(body, "Conflict") {
		t.Fatalf("409: %d\n%s", r.StatusCode, body)
	}
	if bal, _ := n.Service().Balance(ctx, "poor"); bal != 500 {
		t.Fatalf("balance after a refused purchase: %d, want 500", bal)
	}
}

// TestImportBadCredentials: rejected credentials are shown next to the
// form and save nothing; the secret is not echoed back.
func TestImportBadCredentials(t *testing.T) {
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: append([]twiliofake.Number(nil), twilioOwned...)})
	n, base := startNode(t, func(c *config.Config) { c.Carriers.Twilio.APIBase = fake.URL() })
	c := newClient(t, base)
	c.mustLogin(n.APIKey())
	tok := c.csrf("/console/import")
	r, body := c.do("POST", "/console/integrations", url.Values{"csrf": {tok}, "carrier": {"twilio"}, "name": {"acme"},
		"account_sid": {fake.AccountSID()}, "auth_token": {"wrongtoken123456"}})
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="credentials-error"`) || !strings.Contains(body, "credentials rejected by Twilio") {
		t.Fatalf("bad credentials: %d\n%s", r.StatusCode, body)
	}
	if strings.Contains(body, "wrongtoken123456") {
		t.Fatal("the auth token was echoed in the page")
	}
	if its, _ := n.Service().ListIntegrations(context.Background(), provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}); len(its) != 0 {
		t.Fatalf("rejected credentials were saved: %+v", its)
	}
	// A missing field is named.
	r, body = c.do("POST", "/console/integrations", url.Values{"csrf": {tok}, "carrier": {"twilio"}, "name": {"acme"}})
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, "required for twilio") {
		t.Fatalf("missing credentials: %d", r.StatusCode)
	}
}
