package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/callgate/callgate/internal/testwait"
)

// browserTimeout bounds one browser step (a navigation, a click and
// what it loads). CI is a loaded 2-core machine: generous.
const browserTimeout = 60 * time.Second

// chromiumPath finds Debian's chromium (`make deps` installs it), or
// CALLGATE_CHROMIUM. Under CI (CI set) a missing browser fails the test;
// elsewhere it skips it.
func chromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CALLGATE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: run `make deps` (apt-get install chromium)")
	}
	t.Skip("chromium is not installed (make deps); the browser tests run under CI")
	return ""
}

// browser is a headless chromium with its own temporary profile, killed
// when the test ends. It collects console errors, uncaught exceptions
// and browser log errors (CSP violations are reported there).
type browser struct {
	t    testing.TB
	ctx  context.Context
	base string

	mu   sync.Mutex
	errs []string
}

func startBrowser(t testing.TB, base string, width, height int) *browser {
	t.Helper()
	exe := chromiumPath(t)
	// Not t.TempDir: chromium's helper processes may still write into the
	// profile for a moment after the browser exits, and TempDir's cleanup
	// fails the test on a directory that is not empty yet.
	profile, err := os.MkdirTemp("", "callgate-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(profile),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(width, height),
		chromedp.Flag("disable-dev-shm-usage", true),
		// Only loopback: every other host fails to resolve.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"),
		chromedp.Flag("proxy-server", "direct://"),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx, base: base}
	t.Cleanup(func() {
		cancel()
		acancel() // waits for the browser process to exit
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := os.RemoveAll(profile)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Logf("chromium profile %s left behind: %v", profile, err)
				return
			}
			time.Sleep(100 * time.Millisecond) // a helper process still writing: try again
		}
	})
	chromedp.ListenTarget(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError || ev.Type == runtime.APITypeWarning || ev.Type == runtime.APITypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.addErr("console." + string(ev.Type) + ": " + strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.addErr("exception: " + msg)
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.LevelError || ev.Entry.Level == cdplog.LevelWarning {
				b.addErr("log." + string(ev.Entry.Source) + ": " + ev.Entry.Text + " " + ev.Entry.URL)
			}
		}
	})
	// The first Run starts the browser: its lifetime is that of ctx.
	if err := chromedp.Run(ctx, cdplog.Enable(), runtime.Enable()); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return b
}

func (b *browser) addErr(s string) {
	b.mu.Lock()
	b.errs = append(b.errs, s)
	b.mu.Unlock()
}

// takeErrors returns and clears the errors seen so far.
func (b *browser) takeErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.errs
	b.errs = nil
	return e
}

// noErrors fails the test if the page logged any error or warning.
func (b *browser) noErrors(where string) {
	b.t.Helper()
	if errs := b.takeErrors(); len(errs) > 0 {
		b.t.Errorf("%s: browser console errors:\n  %s", where, strings.Join(errs, "\n  "))
	}
}

// onlyStatusErrors accepts the browser's "failed to load resource" notes
// for the given HTTP statuses (a form answered 400 or 401 on purpose) and
// fails on anything else.
func (b *browser) onlyStatusErrors(where string, codes ...int) {
	b.t.Helper()
	for _, e := range b.takeErrors() {
		ok := false
		for _, c := range codes {
			if strings.Contains(e, fmt.Sprintf("the server responded with a status of %d", c)) {
				ok = true
			}
		}
		if !ok {
			b.t.Errorf("%s: browser console error: %s", where, e)
		}
	}
}

// run runs actions with the step deadline.
func (b *browser) run(what string, actions ...chromedp.Action) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.run("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitReady("body"))
}

// text returns the text of the first element matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	var s string
	b.run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery, chromedp.NodeVisible))
	return s
}

func (b *browser) eval(js string, out any) {
	b.t.Helper()
	b.run("eval "+js, chromedp.Evaluate(js, out))
}

// waitFor polls a JavaScript condition until it is true.
func (b *browser) waitFor(what, js string) {
	b.t.Helper()
	testwait.CheckFor(b.t, browserTimeout, 50*time.Millisecond, func() error {
		var ok bool
		ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
		defer cancel()
		if err := chromedp.Run(ctx, chromedp.Evaluate(js, &ok)); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s: %s is false", what, js)
		}
		return nil
	})
}

// path is the current URL's path and query.
func (b *browser) path() string {
	var loc string
	b.eval(`location.pathname + location.search`, &loc)
	return loc
}

// clickAndLoad clicks sel and waits for the page it loads.
func (b *browser) clickAndLoad(sel string) {
	b.t.Helper()
	var before string
	b.eval(`window.__cg_page = (window.__cg_page || 0) + 1; String(window.__cg_page)`, &before)
	b.run("click "+sel, chromedp.Click(sel, chromedp.ByQuery, chromedp.NodeVisible))
	// A navigation replaces window, and with it the marker.
	b.waitFor("page after "+sel, `window.__cg_page === undefined && document.readyState === "complete"`)
}

// unreachable presses Tab through the page and returns the page's
// actions (links, buttons, fields) that were never focused.
func (b *browser) unreachable() []string {
	b.t.Helper()
	var n int
	b.eval(`(function(){
		var els = Array.from(document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea'))
			.filter(function(e){ return !e.disabled && e.offsetParent !== null; });
		els.forEach(function(e, i){ e.setAttribute('data-kb', String(i)); });
		window.__kb_seen = {};
		document.addEventListener('focusin', function(ev){ var k = ev.target.getAttribute && ev.target.getAttribute('data-kb'); if (k) { window.__kb_seen[k] = true; } });
		if (document.activeElement) { document.activeElement.blur(); }
		return els.length;
	})()`, &n)
	acts := []chromedp.Action{}
	for i := 0; i < n+5; i++ {
		acts = append(acts, chromedp.KeyEvent(kb.Tab))
	}
	b.run("tab through the page", acts...)
	var missing []string
	// A radio group is one Tab stop (arrow keys move inside it): it is
	// reached when any of its radios is.
	b.eval(`Array.from(document.querySelectorAll('[data-kb]')).filter(function(e){
			if (window.__kb_seen[e.getAttribute('data-kb')]) { return false; }
			if (e.type === 'radio') {
				return !Array.from(document.querySelectorAll('input[type=radio][data-kb]')).some(function(r){ return r.name === e.name && window.__kb_seen[r.getAttribute('data-kb')]; });
			}
			return true; })
		.map(function(e){ return e.tagName + ' ' + (e.id || e.name || e.getAttribute('aria-label') || e.textContent.trim().slice(0, 40)); })`, &missing)
	return missing
}

// count is how many elements match sel.
func (b *browser) count(sel string) int {
	var nodes []*cdp.Node
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Run(ctx, chromedp.Nodes(sel, &nodes, chromedp.ByQueryAll, chromedp.AtLeast(0))); err != nil {
		b.t.Fatalf("count %s: %v", sel, err)
	}
	return len(nodes)
}
