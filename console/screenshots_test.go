package console_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/emiago/sipgo/sip"

	"github.com/callgate/callgate/callhistory"
	"github.com/callgate/callgate/internal/testwait"
	"github.com/callgate/callgate/provisioning"
)

// TestScreenshots writes a PNG of every console page, at 1280 px and at
// a 390 px phone width, into $CALLGATE_SCREENSHOTS (`make screenshots`:
// docs/console/). Without the variable it does nothing. Each PNG is
// checked to decode at the width asked for.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("CALLGATE_SCREENSHOTS")
	if dir == "" {
		t.Skip("set CALLGATE_SCREENSHOTS=<dir> (make screenshots)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n, fake, base := startGateway(t)
	svc := n.Service()
	ctx := context.Background()
	p := provisioning.Principal{Workspace: n.Config().Bootstrap.Workspace}

	// A workspace that looks used: agents, bought and imported numbers,
	// a business line, ledger entries.
	if _, err := svc.CreateAgent(ctx, p, provisioning.AgentInput{ID: "support", Name: "Support line", Media: "relay",
		MessagingURL: "https://agent.example.com/sms",
		Endpoints:    []provisioning.Endpoint{{Region: "us-east", URI: "sip:support@127.0.0.1:5999"}, {Region: "eu-west", URI: "sip:support@127.0.0.2:5999"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateAgent(ctx, p, provisioning.AgentInput{ID: "sales", Name: "Sales",
		Endpoints: []provisioning.Endpoint{{Region: "us-east", URI: "sip:sales@127.0.0.1:5998"}}}); err != nil {
		t.Fatal(err)
	}
	page, err := svc.Search(ctx, p, provisioning.SearchRequest{Carrier: "sandbox", SearchQuery: searchQuery("US", "228")})
	if err != nil {
		t.Fatal(err)
	}
	var bought []string
	for i, an := range page.Numbers[:3] {
		agent := []string{"support", "sales", ""}[i]
		num, err := svc.Purchase(ctx, p, provisioning.PurchaseRequest{PhoneNumber: an.PhoneNumber, Carrier: "sandbox", AgentID: agent}, "")
		if err != nil {
			t.Fatal(err)
		}
		bought = append(bought, num.PhoneNumber)
	}
	it, err := svc.CreateIntegration(ctx, p, provisioning.IntegrationInput{Name: "Main Twilio", Carrier: "twilio",
		Credentials: map[string]string{"account_sid": fake.AccountSID(), "auth_token": fake.AuthToken()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Import(ctx, p, it.ID, provisioning.ImportRequest{PhoneNumbers: []string{twilioOwned[0].PhoneNumber}, AgentID: "support"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateForwarding(ctx, p, "+12025550123", bought[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.TopUp(ctx, p.Workspace, 5000, "invoice 1042"); err != nil {
		t.Fatal(err)
	}
	// Calls through the SIP edge for the Calls page: answered, busy and
	// forwarded from the business line.
	carrierUA := newSipUA(t, 200)
	desk := routedNumber(t, n, p, "desk", newSipUA(t, 200).uri())
	busy := routedNumber(t, n, p, "busy", newSipUA(t, 486).uri())
	if _, err := svc.CreateForwarding(ctx, p, "+12025550188", desk); err != nil {
		t.Fatal(err)
	}
	var busyCall string
	var ids []string
	for i, num := range []string{desk, busy, desk, desk} {
		var hdrs []sip.Header
		if i == 3 {
			hdrs = append(hdrs, sip.NewHeader("Diversion", "<sip:+12025550188@carrier.example>;reason=unconditional"))
		}
		id, _ := carrierUA.call(t, n.SIP().UDPAddr(), num, hdrs...)
		ids = append(ids, id)
		if num == busy {
			busyCall = id
		}
	}
	hist := callhistory.NewReader(n.Store(), nil)
	testwait.CheckFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, id := range ids {
			if c, err := hist.Get(ctx, p.Workspace, id); err != nil || c.Outcome == callhistory.OutcomeInProgress {
				return fmt.Errorf("call %s not ended in the history yet: %v", id, err)
			}
		}
		return nil
	})

	esc := func(s string) string { return strings.ReplaceAll(s, "+", "%2B") }
	workspacePages := []struct{ name, path string }{
		{"numbers", "/console/numbers"},
		{"numbers-release", "/console/numbers?release=" + esc(bought[2])},
		{"buy", "/console/buy?country=US&area_code=228"},
		{"buy-confirm", "/console/buy?country=US&area_code=228&confirm=" + esc(page.Numbers[4].PhoneNumber) + "&cost=100&locality=Biloxi&region=Mississippi&ntype=local"},
		{"import", "/console/import"},
		{"import-numbers", "/console/import?integration=" + it.ID},
		{"agents", "/console/agents"},
		{"agent-edit", "/console/agents/support"},
		{"forwarding", "/console/forwarding"},
		{"credits", "/console/credits"},
		{"calls", "/console/calls"},
		{"call", "/console/calls/" + url.PathEscape(busyCall)},
	}
	adminPages := []struct{ name, path string }{
		{"admin", "/console/admin"},
		{"audit", "/console/admin/audit"},
	}
	for _, size := range []struct {
		suffix string
		w, h   int64
		mobile bool
	}{{"desktop", 1280, 900, false}, {"phone", 390, 844, true}} {
		b := startBrowser(t, base, int(size.w), int(size.h))
		b.run("viewport", emulation.SetDeviceMetricsOverride(size.w, size.h, 1, size.mobile))
		shoot := func(name, path string) {
			b.open(path)
			var buf []byte
			if strings.HasSuffix(name, "-confirm") || strings.HasSuffix(name, "-release") {
				// A dialog covers the viewport: shoot what the user sees.
				b.run("screenshot "+name, chromedp.CaptureScreenshot(&buf))
			} else {
				b.run("screenshot "+name, chromedp.FullScreenshot(&buf, 100))
			}
			img, err := png.Decode(bytes.NewReader(buf))
			if err != nil {
				t.Fatalf("%s: not a PNG: %v", name, err)
			}
			if w := img.Bounds().Dx(); w != int(size.w) {
				t.Fatalf("%s: %d px wide, want %d", name, w, size.w)
			}
			if err := os.WriteFile(filepath.Join(dir, name+"-"+size.suffix+".png"), buf, 0o644); err != nil {
				t.Fatal(err)
			}
			b.noErrors(name)
		}
		shoot("login", "/console/login")
		login(b, n.APIKey())
		for _, pg := range workspacePages {
			shoot(pg.name, pg.path)
		}
		b.clickAndLoad("#logout")
		login(b, n.AdminKey())
		for _, pg := range adminPages {
			shoot(pg.name, pg.path)
		}
	}
}
