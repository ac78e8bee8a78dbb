package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/callgate/callgate/provisioning"
)

// pageNames are the templates under templates/, each rendered inside layout.html.
var pageNames = []string{"login", "status", "numbers", "buy", "import", "agents", "agent", "forwarding", "credits", "calls", "call", "admin", "audit"}

type pages struct {
	t map[string]*template.Template
}

var funcs = template.FuncMap{
	"carrierTitle": func(c string) string {
		switch c {
		case "twilio":
			return "Twilio"
		case "telnyx":
			return "Telnyx"
		case "sandbox":
			return "Sandbox"
		}
		return c
	},
	"carrierLabel": func(n provisioning.Number) string {
		name := map[string]string{"twilio": "Twilio", "telnyx": "Telnyx", "sandbox": "Sandbox"}[n.Carrier]
		if name == "" {
			name = n.Carrier
		}
		if n.Origin == "imported" {
			return "Imported (" + name + ")"
		}
		return name
	},
	"typeTitle": func(t string) string {
		return map[string]string{"local": "Local", "mobile": "Mobile", "toll_free": "Toll-free", "national": "National"}[t]
	},
	"date": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02")
	},
	"datetime": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"credits": func(n int64) string {
		s := fmt.Sprint(n)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		var b strings.Builder
		for i, ch := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(ch)
		}
		if neg {
			return "−" + b.String()
		}
		return b.String()
	},
	"features": func(voice, sms, mms bool) string {
		var f []string
		if voice {
			f = append(f, "Voice")
		}
		if sms {
			f = append(f, "SMS")
		}
		if mms {
			f = append(f, "MMS")
		}
		if len(f) == 0 {
			return "—"
		}
		return strings.Join(f, ", ")
	},
	"ms":   func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
	"list": func(s ...string) []string { return s },
	"ferr": func(e *formError, field string) string { return e.Field(field) },
	"oob":  func(v view) view { v.OOB = true; return v },
	"agentFormView": func(v view, f agentForm, action string, isNew bool) agentFormView {
		return agentFormView{Form: f, Action: action, CSRF: v.CSRF(), New: isNew}
	},
	"sub": func(a, b int64) int64 { return a - b },
	"add": func(a, b int) int { return a + b },
	"slug": func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' {
				return r
			}
			return '-'
		}, strings.ToLower(s))
	},
}

func parsePages() (*pages, error) {
	p := &pages{t: map[string]*template.Template{}}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		p.t[name] = t
	}
	return p, nil
}

// view is what the layout renders.
type view struct {
	Title string
	Nav   string
	S     *session
	Err   *formError
	Flash string
	Data  any
	// OOB marks a fragment sent out of band (htmx hx-swap-oob).
	OOB bool
}

// CSRF is the session's token for the forms.
func (v view) CSRF() string {
	if v.S == nil {
		return ""
	}
	return v.S.CSRF
}

var titles = map[string]string{
	"login": "Log in", "status": "", "numbers": "Numbers", "buy": "Buy numbers", "import": "Import numbers",
	"agents": "Agents", "agent": "Edit agent", "forwarding": "Forwarding", "credits": "Credits",
	"calls": "Calls", "call": "Call",
	"admin": "Workspaces", "audit": "Audit log",
}

// render writes a whole page, or only the template named by frag.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, fe *formError, data any) {
	c.renderView(w, r, status, page, "layout", view{Title: titles[page], Nav: page, S: sessionOf(r), Err: fe, Flash: flashOf(r), Data: data})
}

func (c *Console) renderView(w http.ResponseWriter, r *http.Request, status int, page, tmpl string, v view) {
	var buf bytes.Buffer
	if err := c.pages.t[page].ExecuteTemplate(&buf, tmpl, v); err != nil {
		c.log.Error("console: render", "page", page, "err", err)
		http.Error(w, "internal error; it was logged", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type statusView struct {
	Heading, Message string
}

func (c *Console) renderStatus(w http.ResponseWriter, r *http.Request, status int, heading, msg string) {
	v := view{Title: heading, Nav: "status", S: sessionOf(r), Data: statusView{heading, msg}}
	c.renderView(w, r, status, "status", "layout", v)
}

// flashes are the messages a page shows after a redirect (done=key,
// with the subject in n): fixed texts, so that a link cannot make the
// console say something it did not.
var flashes = map[string]string{
	"purchased":   "Bought %s. It was charged for a full month.",
	"released":    "Released %s. No refund is made for the rest of the month.",
	"assigned":    "Updated the agent of %s.",
	"region":      "Set the voice region of %s.",
	"agent":       "Saved agent %s.",
	"deleted":     "Deleted agent %s.",
	"forwarding":  "Registered business line %s.",
	"unforward":   "Removed business line %s.",
	"integration": "Saved integration %s; its credentials were checked with the carrier.",
	"topup":       "Added credits to workspace %s.",
}

var flashArg = regexp.MustCompile(`^[+0-9A-Za-z_-]{1,64}$`)

// flashOf is the message for the request's done= and n= parameters.
func flashOf(r *http.Request) string {
	f, ok := flashes[r.URL.Query().Get("done")]
	n := r.URL.Query().Get("n")
	if !ok || !flashArg.MatchString(n) {
		return ""
	}
	return fmt.Sprintf(f, n)
}

// seeOther redirects after a successful POST, with a message for the next page.
func seeOther(w http.ResponseWriter, r *http.Request, path, flash, subject string) {
	if flash != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + url.Values{"done": {flash}, "n": {subject}}.Encode()
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}

type agentFormView struct {
	Form   agentForm
	Action string
	CSRF   string
	New    bool
}
