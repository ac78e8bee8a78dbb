package console_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/callgate/callgate/config"
	"github.com/callgate/callgate/node"
	"github.com/callgate/callgate/node/nodetest"
	"github.com/callgate/callgate/provisioning"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// twilioOwned are the numbers on the Twilio fake's account, with the
// webhooks the customer's own application uses.
var twilioOwned = []twiliofake.Number{
	{PhoneNumber: "+14155550101", Voice: true, SMS: true, VoiceURL: "https://app.example.com/voice-1", SMSURL: "https://app.example.com/sms-1"},
	{PhoneNumber: "+14155550102", Voice: true, SMS: true, VoiceURL: "https://app.example.com/voice-2", SMSURL: "https://app.example.com/sms-2"},
}

// startGateway starts a real node (embedded NATS, sandbox carrier, SIP
// edge) whose Twilio API is the fake.
func startGateway(t *testing.T) (*node.Node, *twiliofake.Server, string) {
	t.Helper()
	fake := twiliofake.MustNew(t, twiliofake.Options{Owned: append([]twiliofake.Number(nil), twilioOwned...)})
	n := nodetest.Start(t, nodetest.Config(func(c *config.Config) {
		c.Carriers.Twilio.APIBase = fake.URL()
	}))
	return n, fake, "http://" + n.HTTPAddr()
}

func login(b *browser, key string) {
	b.t.Helper()
	b.open("/console/login")
	b.run("type key", chromedp.SendKeys("#api_key", key, chromedp.ByQuery))
	b.clickAndLoad("#login")
}

// TestConsoleGuide walks the guide in a real browser: log in (a bad key
// first), search area code 228 and see Mississippi numbers, Refresh for
// more, buy one through the confirmation, see it in the table, import two
// Twilio numbers "Outbound only" (the account's webhooks untouched), set
// the Twilio region, release, log out. No page logs a console error.
func TestConsoleGuide(t *testing.T) {
	n, fake, base := startGateway(t)
	svc := n.Service()
	ws := provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}
	ctx := context.Background()
	b := startBrowser(t, base, 1280, 900)

	// A bad API key: an error next to the field, no session.
	login(b, "cg_live_not-a-key")
	if got := b.text("#login-error"); !strings.Contains(got, "not valid") {
		t.Fatalf("bad key: error %q", got)
	}
	if p := b.path(); p != "/console/login" {
		t.Fatalf("bad key: at %s, want the login page", p)
	}
	b.onlyStatusErrors("bad key", 401)

	login(b, n.APIKey())
	if p := b.path(); p != "/console/numbers" {
		t.Fatalf("after login at %s", p)
	}
	b.noErrors("numbers page")

	// Search 228: Mississippi numbers with a monthly cost.
	b.open("/console/buy")
	b.run("search 228", chromedp.SendKeys("#area_code", "228", chromedp.ByQuery))
	b.clickAndLoad("#search")
	rows := b.count("#result-rows tr")
	if rows == 0 {
		t.Fatal("search 228: no results")
	}
	if txt := b.text("#result-rows"); !strings.Contains(txt, "Mississippi") || !strings.Contains(txt, "+1228") {
		t.Fatalf("search 228: results are not Mississippi numbers:\n%s", txt)
	}
	b.noErrors("buy results")

	// Refresh loads more inventory below (htmx, page token).
	b.run("refresh", chromedp.Click("#refresh-button", chromedp.ByQuery))
	b.waitFor("more rows", `document.querySelectorAll("#result-rows tr").length > `+itoa(rows))
	var distinct int
	b.eval(`new Set(Array.from(document.querySelectorAll("#result-rows tr td:first-child")).map(function(td){return td.textContent})).size`, &distinct)
	if total := b.count("#result-rows tr"); distinct != total {
		t.Fatalf("refresh: %d rows but %d distinct numbers", total, distinct)
	}
	b.noErrors("refresh")

	// Purchase: the confirmation shows price, balance before and after.
	before, err := svc.Balance(ctx, ws.Workspace)
	if err != nil {
		t.Fatal(err)
	}
	var number string
	b.eval(`document.querySelector("#result-rows tr td:first-child").textContent.trim()`, &number)
	b.clickAndLoad(`#result-rows tr:first-child a[role=button]`)
	dialog := b.text("#confirm-dialog")
	price := strings.TrimSuffix(b.text("#confirm-price"), " credits per month")
	for _, want := range []string{number, "Charged now for a full month, no proration", "Balance now", "Balance after"} {
		if !strings.Contains(dialog, want) {
			t.Fatalf("confirmation lacks %q:\n%s", want, dialog)
		}
	}
	if got := b.text("#confirm-before"); got != fmtCredits(before)+" credits" {
		t.Fatalf("balance before: %q, want %d", got, before)
	}
	b.noErrors("purchase dialog")
	b.clickAndLoad("#confirm-purchase")
	if p := b.path(); !strings.HasPrefix(p, "/console/numbers") {
		t.Fatalf("after purchase at %s", p)
	}
	if txt := b.text("#numbers-table"); !strings.Contains(txt, number) || !strings.Contains(txt, "Mississippi") {
		t.Fatalf("bought number not in the table:\n%s", txt)
	}
	after, _ := svc.Balance(ctx, ws.Workspace)
	bought, err := svc.GetNumber(ctx, ws, number)
	if err != nil {
		t.Fatalf("bought number: %v", err)
	}
	if after != before-bought.MonthlyCost || fmtCredits(bought.MonthlyCost) != price {
		t.Fatalf("balance %d -> %d for a number of %d credits (dialog said %s)", before, after, bought.MonthlyCost, price)
	}
	b.noErrors("numbers after purchase")

	// Import two numbers from the Twilio fake, "Outbound only".
	fake.ResetRequests()
	b.open("/console/import")
	b.run("credentials",
		chromedp.SendKeys("#int-name", "Main Twilio", chromedp.ByQuery),
		chromedp.SendKeys("#account_sid", fake.AccountSID(), chromedp.ByQuery),
		chromedp.SendKeys("#auth_token", fake.AuthToken(), chromedp.ByQuery))
	b.clickAndLoad("#connect")
	if !strings.HasPrefix(b.path(), "/console/import?integration=") {
		t.Fatalf("after saving the integration at %s", b.path())
	}
	b.noErrors("import list")
	listURL := b.path()
	var outbound bool
	b.eval(`document.querySelector('input[name=webhook_mode][value=outbound_only]').checked`, &outbound)
	if !outbound {
		t.Fatal(`"Outbound only" is not the default webhook mode`)
	}
	if w := b.text("#full-control-warning"); !strings.Contains(w, "Warning") {
		t.Fatalf("no warning before full control: %q", w)
	}
	b.run("select all", chromedp.Click("#select-all", chromedp.ByQuery))
	b.waitFor("both ticked", `document.querySelectorAll('input[name=phone_numbers]:checked').length === 2`)
	b.clickAndLoad("#import")
	if res := b.text("#import-results"); !strings.Contains(res, "Imported 2 of 2") {
		t.Fatalf("import results:\n%s", res)
	}
	b.noErrors("import results")
	for _, want := range twilioOwned {
		got, ok := fake.OwnedNumber(want.PhoneNumber)
		if !ok || got.VoiceURL != want.VoiceURL || got.SMSURL != want.SMSURL {
			t.Fatalf("outbound only changed %s at Twilio: %+v", want.PhoneNumber, got)
		}
	}
	if w := fake.Writes(); len(w) != 0 {
		t.Fatalf("outbound only wrote to the Twilio account: %+v", w)
	}
	// Already imported: the boxes are disabled now.
	b.open(listURL)
	if n := b.count("input[name=phone_numbers]:disabled"); n != 2 {
		t.Fatalf("%d disabled rows after the import, want 2", n)
	}

	// Set the Twilio voice region of an imported number.
	imported := twilioOwned[0].PhoneNumber
	b.open("/console/numbers")
	row := "#row-" + slug(imported)
	b.run("pick ie1", chromedp.SetValue(row+` select[name=voice_region]`, "ie1", chromedp.ByQuery))
	b.clickAndLoad(row + ` form[action$="/region"] button`)
	if f := b.text(".flash"); !strings.Contains(f, "voice region of "+imported) {
		t.Fatalf("region flash: %q", f)
	}
	if got, _ := svc.GetNumber(ctx, ws, imported); got.VoiceRegion != "ie1" {
		t.Fatalf("voice region %q, want ie1", got.VoiceRegion)
	}
	b.noErrors("region")

	// Filter by carrier: htmx swaps the table in place, the URL follows.
	var marked bool
	b.eval(`window.__cg_stay = true`, &marked)
	b.run("filter twilio", chromedp.SetValue("#f-carrier", "twilio", chromedp.ByQuery), chromedp.Click("#filter", chromedp.ByQuery))
	b.waitFor("filtered table", `document.querySelectorAll("#numbers-table tbody tr").length === 2 && location.search.indexOf("carrier=twilio") >= 0`)
	var stayed bool
	b.eval(`window.__cg_stay === true`, &stayed)
	if !stayed || strings.Contains(b.text("#numbers-table"), number) {
		t.Fatalf("filter: page reloaded (%v) or sandbox number still listed", !stayed)
	}
	b.noErrors("filter")
	b.open("/console/numbers")

	// Release the purchased number: the dialog says no refund.
	b.clickAndLoad("#row-" + slug(number) + ` a[href*="release="]`)
	if d := b.text("#release-dialog"); !strings.Contains(d, "No refund") {
		t.Fatalf("release dialog:\n%s", d)
	}
	b.noErrors("release dialog")
	b.clickAndLoad("#release-confirm")
	if f := b.text(".flash"); !strings.Contains(f, "Released "+number) {
		t.Fatalf("release flash: %q", f)
	}
	if strings.Contains(b.text("#numbers-table"), number) {
		t.Fatal("released number still listed")
	}
	if _, err := svc.GetNumber(ctx, ws, number); err == nil {
		t.Fatal("released number still in the workspace")
	}
	if bal, _ := svc.Balance(ctx, ws.Workspace); bal != after {
		t.Fatalf("release changed the balance: %d -> %d (no refund)", after, bal)
	}
	b.noErrors("after release")

	// Log out: the session is gone; pages lead to the login again.
	b.clickAndLoad("#logout")
	if p := b.path(); p != "/console/login" {
		t.Fatalf("after logout at %s", p)
	}
	b.open("/console/numbers")
	if p := b.path(); p != "/console/login" {
		t.Fatalf("after logout /console/numbers is at %s", p)
	}
	b.noErrors("logout")
}

// TestConsoleFieldErrors: a wrong value shows the provisioning message
// next to the field, with the field marked invalid, and saves nothing.
func TestConsoleFieldErrors(t *testing.T) {
	n, _, base := startGateway(t)
	b := startBrowser(t, base, 1280, 900)
	login(b, n.APIKey())

	b.open("/console/agents")
	b.run("agent form",
		chromedp.SendKeys("#agent-name", "Support", chromedp.ByQuery),
		chromedp.SendKeys("#agent-endpoints", "us-east http://not-sip.example.com", chromedp.ByQuery))
	b.clickAndLoad("#agent-save")
	if e := b.text("#agent-endpoints-error"); !strings.Contains(e, "line 1, uri") {
		t.Fatalf("endpoint error: %q", e)
	}
	var invalid string
	b.eval(`document.querySelector("#agent-endpoints").getAttribute("aria-invalid")`, &invalid)
	if invalid != "true" {
		t.Fatal("endpoints field not marked invalid")
	}
	var kept string
	b.eval(`document.querySelector("#agent-name").value`, &kept)
	if kept != "Support" {
		t.Fatalf("the form lost its values: name %q", kept)
	}
	if as, _ := n.Service().ListAgents(context.Background(), provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}); len(as) != 0 {
		t.Fatalf("a failed form saved an agent: %+v", as)
	}
	b.onlyStatusErrors("agent error", 400)

	b.open("/console/buy?country=USA&area_code=228")
	if e := b.text("#country-error"); !strings.Contains(e, "ISO 3166") {
		t.Fatalf("country error: %q", e)
	}
	b.onlyStatusErrors("country error", 400)
}

// TestConsoleKeyboard: with Tab alone, every link, button and field of
// every page can be reached, dialogs included.
func TestConsoleKeyboard(t *testing.T) {
	n, _, base := startGateway(t)
	svc := n.Service()
	p := provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}
	ctx := context.Background()
	if _, err := svc.CreateAgent(ctx, p, provisioning.AgentInput{ID: "support", Name: "Support",
		Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:bot@127.0.0.1:5999"}}}); err != nil {
		t.Fatal(err)
	}
	page, err := svc.Search(ctx, p, provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: searchQuery("US", "228")})
	if err != nil || len(page.Numbers) == 0 {
		t.Fatalf("search: %v", err)
	}
	num, err := svc.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: page.Numbers[0].PhoneNumber, Carrier: "sandbox", AgentID: "support"}, "")
	if err != nil {
		t.Fatal(err)
	}
	b := startBrowser(t, base, 1280, 900)
	login(b, n.APIKey())
	pages := []string{
		"/console/numbers",
		"/console/numbers?release=" + strings.ReplaceAll(num.PhoneNumber, "+", "%2B"),
		"/console/buy?country=US&area_code=228",
		"/console/buy?country=US&area_code=228&confirm=%2B12285550000&cost=100",
		"/console/import",
		"/console/agents",
		"/console/agents?delete=support",
		"/console/agents/support",
		"/console/forwarding",
		"/console/credits",
		"/console/calls",
	}
	check := func(pg string) {
		b.open(pg)
		if missing := b.unreachable(); len(missing) > 0 {
			t.Errorf("%s: not reachable with Tab: %v", pg, missing)
		}
		b.noErrors(pg)
	}
	for _, pg := range pages {
		check(pg)
	}
	b.clickAndLoad("#logout")
	check("/console/login")
	login(b, n.AdminKey())
	check("/console/admin")
	check("/console/admin/audit")
}

func itoa(n int) string { return strconv.Itoa(n) }

// fmtCredits formats as the pages do: 1,000,000.
func fmtCredits(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// slug is a number's row id suffix, as the numbers page writes it.
func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}

func searchQuery(country, area string) carrier.SearchQuery {
	return carrier.SearchQuery{Country: country, AreaCode: area, Limit: 5}
}
