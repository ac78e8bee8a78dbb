package twilio_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/twilio"
	"github.com/callgate/callgate/provisioning/carrier/twilio/twiliofake"
)

// runFake starts a Twilio fake with opts and an adapter pointed at it.
func runFake(t *testing.T, opts twiliofake.Options) (*twiliofake.Server, *twilio.Carrier) {
	t.Helper()
	fk := twiliofake.MustNew(t, opts)
	c, err := twilio.New(twilio.Config{AccountSID: fk.AccountSID(), AuthToken: fk.AuthToken(), APIBase: fk.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return fk, c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// wantKind checks that err is a *carrier.Error of kind naming twilio.
func wantKind(t *testing.T, err, kind error) *carrier.Error {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v: want kind %v", err, kind)
	}
	var ce *carrier.Error
	if !errors.As(err, &ce) || ce.Carrier != "twilio" {
		t.Fatalf("error %v: want a *carrier.Error naming twilio", err)
	}
	if !strings.Contains(err.Error(), "twilio") {
		t.Fatalf("error %q does not name the carrier", err)
	}
	return ce
}

func TestValidateCredentials(t *testing.T) {
	fk, c := runFake(t, twiliofake.Options{})
	if err := c.ValidateCredentials(ctx(t)); err != nil {
		t.Fatal(err)
	}
	reqs := fk.Requests()
	if len(reqs) != 1 || reqs[0].Method != "GET" || reqs[0].Path != "/2010-04-01/Accounts/"+fk.AccountSID()+".json" {
		t.Fatalf("requests %+v", reqs)
	}
	// Always an edge with the region, never region alone.
	if reqs[0].Host != "api.ashburn.us1.twilio.com" {
		t.Fatalf("host %q, want api.ashburn.us1.twilio.com", reqs[0].Host)
	}

	bad, err := twilio.New(twilio.Config{AccountSID: fk.AccountSID(), AuthToken: "wrongtoken", APIBase: fk.URL()})
	if err != nil {
		t.Fatal(err)
	}
	err = bad.ValidateCredentials(ctx(t))
	ce := wantKind(t, err, carrier.ErrCredentialsRejected)
	if ce.Detail != "credentials rejected by Twilio" {
		t.Fatalf("detail %q", ce.Detail)
	}
	if strings.Contains(err.Error(), "wrongtoken") {
		t.Fatal("error leaks the auth token")
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg  twilio.Config
		want string
	}{
		{twilio.Config{AccountSID: "XX1", AuthToken: "abc"}, "account_sid"},
		{twilio.Config{AccountSID: twiliofake.DefaultAccountSID, AuthToken: "a/b"}, "auth_token"},
		{twilio.Config{AccountSID: twiliofake.DefaultAccountSID, AuthToken: "abc", APIBase: "ftp://x"}, "api_base"},
		{twilio.Config{AccountSID: twiliofake.DefaultAccountSID, AuthToken: "abc", Edge: "roaming"}, "edge"},
		{twilio.Config{AccountSID: twiliofake.DefaultAccountSID, AuthToken: "abc", Region: "us2"}, "region"},
		{twilio.Config{AccountSID: twiliofake.DefaultAccountSID, AuthToken: "abc", Pricing: carrier.Pricing{"shared": 3}}, "pricing.shared"},
	}
	for _, tc := range cases {
		_, err := twilio.New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestSearchPaging(t *testing.T) {
	inv := twiliofake.GenerateInventory("415", twiliofake.TypeLocal, 5)
	inv = append(inv, twiliofake.GenerateInventory("212", twiliofake.TypeLocal, 3)...)
	fk, c := runFake(t, twiliofake.Options{Inventory: inv})
	var got []string
	q := carrier.SearchQuery{Country: "US", AreaCode: "415", Limit: 2}
	pages := 0
	for {
		pg, err := c.Search(ctx(t), q)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, n := range pg.Numbers {
			if n.Carrier != "twilio" || n.Type != carrier.TypeLocal || n.MonthlyCost != 115 || n.Country != "US" || !n.Features.Voice {
				t.Fatalf("number %+v", n)
			}
			got = append(got, n.PhoneNumber)
		}
		if pg.NextPageToken == "" {
			break
		}
		q.PageToken = pg.NextPageToken
		if pages > 5 {
			t.Fatal("paging does not end")
		}
	}
	if pages != 3 || len(got) != 5 {
		t.Fatalf("pages %d numbers %v", pages, got)
	}
	for _, n := range got {
		if !strings.HasPrefix(n, "+1415") {
			t.Fatalf("area code filter: %s", n)
		}
	}
	for _, r := range fk.Requests() {
		if r.Query.Get("AreaCode") != "415" || r.Query.Get("PageSize") != "2" {
			t.Fatalf("request %+v", r)
		}
	}
	if len(fk.Writes()) != 0 {
		t.Fatal("search wrote to the account")
	}
}

func TestSearchTypesFeaturesAndPricing(t *testing.T) {
	inv := []twiliofake.Number{
		{PhoneNumber: "+18005550100", Type: twiliofake.TypeTollFree, Voice: true, SMS: true},
		{PhoneNumber: "+18005550101", Type: twiliofake.TypeTollFree, Voice: true},
		{PhoneNumber: "+14155550199", Type: twiliofake.TypeMobile, Voice: true, SMS: true, MMS: true},
	}
	fk, _ := runFake(t, twiliofake.Options{Inventory: inv})
	c, err := twilio.New(twilio.Config{AccountSID: fk.AccountSID(), AuthToken: fk.AuthToken(), APIBase: fk.URL(),
		Pricing: carrier.Pricing{carrier.TypeTollFree: 300}})
	if err != nil {
		t.Fatal(err)
	}
	pg, err := c.Search(ctx(t), carrier.SearchQuery{Country: "us", Type: carrier.TypeTollFree, Features: carrier.Features{SMS: true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Numbers) != 1 || pg.Numbers[0].PhoneNumber != "+18005550100" || pg.Numbers[0].MonthlyCost != 300 || pg.Numbers[0].Type != carrier.TypeTollFree {
		t.Fatalf("toll-free search: %+v", pg)
	}
	last := fk.Requests()[len(fk.Requests())-1]
	if !strings.HasSuffix(last.Path, "/AvailablePhoneNumbers/US/TollFree.json") || last.Query.Get("SmsEnabled") != "true" {
		t.Fatalf("request %+v", last)
	}
	pg, err = c.Search(ctx(t), carrier.SearchQuery{Country: "US", Type: carrier.TypeMobile})
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Numbers) != 1 || pg.Numbers[0].MonthlyCost != 115 || !pg.Numbers[0].Features.MMS {
		t.Fatalf("mobile search: %+v", pg)
	}
}

func TestSearchInvalid(t *testing.T) {
	fk, c := runFake(t, twiliofake.Options{})
	for _, q := range []carrier.SearchQuery{
		{Country: "US", AreaCode: "41a"},
		{Country: "US", AreaCode: "015"},
		{Country: "USA"},
		{Country: "US", Type: "shared_cost"},
		{Country: "US", Limit: 1000},
		{Country: "US", PageToken: "garbage"},
	} {
		_, err := c.Search(ctx(t), q)
		wantKind(t, err, carrier.ErrInvalidQuery)
	}
	if n := len(fk.Requests()); n != 0 {
		t.Fatalf("invalid searches reached Twilio %d times", n)
	}
	// Twilio refusing the area code (400) is an invalid query too.
	fk.FailNext(twiliofake.Failure{Status: 400, Code: 21452, Message: "AreaCode 555 is not valid"})
	_, err := c.Search(ctx(t), carrier.SearchQuery{Country: "US", AreaCode: "555"})
	wantKind(t, err, carrier.ErrInvalidQuery)
}

func TestBuyConfiguresWebhooks(t *testing.T) {
	fk, c := runFake(t, twiliofake.Options{Inventory: twiliofake.GenerateInventory("415", twiliofake.TypeLocal, 2)})
	cfg := carrier.NumberConfig{VoiceURL: "https://gw.example/webhooks/twilio/voice", VoiceMethod: "POST",
		SMSURL: "https://gw.example/webhooks/twilio/sms", SMSMethod: "POST", StatusCallback: "https://gw.example/webhooks/twilio/status"}
	on, err := c.Buy(ctx(t), "+14155550100", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if on.PhoneNumber != "+14155550100" || !strings.HasPrefix(on.CarrierID, "PN") || on.Config.VoiceURL != cfg.VoiceURL || on.Config.SMSURL != cfg.SMSURL {
		t.Fatalf("owned %+v", on)
	}
	w := fk.Writes()
	if len(w) != 1 || w[0].Path != "/2010-04-01/Accounts/"+fk.AccountSID()+"/IncomingPhoneNumbers.json" ||
		w[0].Form.Get("PhoneNumber") != "+14155550100" || w[0].Form.Get("VoiceUrl") != cfg.VoiceURL || w[0].Form.Get("SmsUrl") != cfg.SMSURL {
		t.Fatalf("writes %+v", w)
	}
	// Bought twice: no longer for sale.
	_, err = c.Buy(ctx(t), "+14155550100", cfg)
	wantKind(t, err, carrier.ErrNotAvailable)
	_, err = c.Buy(ctx(t), "+19995550000", cfg)
	wantKind(t, err, carrier.ErrNotAvailable)
	_, err = c.Buy(ctx(t), "14155550101", cfg)
	wantKind(t, err, carrier.ErrInvalidQuery)
}

func TestBuyFailureThenUndo(t *testing.T) {
	fk, c := runFake(t, twiliofake.Options{Inventory: twiliofake.GenerateInventory("415", twiliofake.TypeLocal, 1)})
	fk.FailNext(twiliofake.Failure{Method: "POST", Status: 503})
	_, err := c.Buy(ctx(t), "+14155550100", carrier.NumberConfig{})
	wantKind(t, err, carrier.ErrUnavailable)
	// The saga's undo: release; nothing was bought, so ErrNotFound.
	err = c.Release(ctx(t), "+14155550100")
	wantKind(t, err, carrier.ErrNotFound)
	if len(fk.Owned()) != 0 {
		t.Fatal("number bought despite the failure")
	}
}

func TestListOwnedPagingAndNoWrites(t *testing.T) {
	var owned []twiliofake.Number
	for i := 0; i < 2100; i++ {
		owned = append(owned, twiliofake.Number{PhoneNumber: "+1415" + pad7(i), Voice: true, SMS: i%2 == 0, VoiceURL: "https://old.example/voice"})
	}
	fk, c := runFake(t, twiliofake.Options{Owned: owned})
	got, err := c.ListOwned(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2100 {
		t.Fatalf("listed %d numbers", len(got))
	}
	if got[0].Config.VoiceURL != "https://old.example/voice" || !got[0].Features.Voice || !got[0].Features.SMS || got[1].Features.SMS {
		t.Fatalf("first numbers %+v %+v", got[0], got[1])
	}
	if n := len(fk.Requests()); n != 3 {
		t.Fatalf("%d requests for 3 pages", n)
	}
	if len(fk.Writes()) != 0 {
		t.Fatal("listing wrote to the account")
	}
}

func pad7(i int) string {
	s := "0000000" + itoa(i)
	return s[len(s)-7:]
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestConfigureRecordsPreviousAndRestores(t *testing.T) {
	before := twiliofake.Number{PhoneNumber: "+14155550123", Voice: true, SMS: true,
		VoiceURL: "https://customer.example/voice", VoiceMethod: "GET", SMSURL: "https://customer.example/sms", SMSMethod: "POST",
		StatusCallback: "https://customer.example/status", TrunkSID: "TK00000000000000000000000000000001"}
	fk, c := runFake(t, twiliofake.Options{Owned: []twiliofake.Number{before}})
	ours := carrier.NumberConfig{VoiceURL: "https://gw.example/webhooks/twilio/voice", VoiceMethod: "POST",
		SMSURL: "https://gw.example/webhooks/twilio/sms", SMSMethod: "POST"}
	prev, err := c.Configure(ctx(t), "+14155550123", ours)
	if err != nil {
		t.Fatal(err)
	}
	want := carrier.NumberConfig{VoiceURL: before.VoiceURL, VoiceMethod: "GET", SMSURL: before.SMSURL, SMSMethod: "POST",
		StatusCallback: before.StatusCallback, TrunkSID: before.TrunkSID}
	if prev != want {
		t.Fatalf("previous %+v\nwant %+v", prev, want)
	}
	now, _ := fk.OwnedNumber("+14155550123")
	if now.VoiceURL != ours.VoiceURL || now.SMSURL != ours.SMSURL || now.TrunkSID != "" || now.StatusCallback != "" {
		t.Fatalf("after configure %+v", now)
	}
	w := fk.Writes()
	if len(w) != 1 || w[0].Method != "POST" || !strings.HasSuffix(w[0].Path, "/IncomingPhoneNumbers/"+now.SID+".json") {
		t.Fatalf("writes %+v", w)
	}
	if _, ok := w[0].Form["TrunkSid"]; !ok {
		t.Fatal("trunk not cleared")
	}
	// Restore.
	if _, err := c.Configure(ctx(t), "+14155550123", prev); err != nil {
		t.Fatal(err)
	}
	after, _ := fk.OwnedNumber("+14155550123")
	if after.VoiceURL != before.VoiceURL || after.VoiceMethod != "GET" || after.SMSURL != before.SMSURL ||
		after.StatusCallback != before.StatusCallback || after.TrunkSID != before.TrunkSID {
		t.Fatalf("restored %+v\nwant %+v", after, before)
	}

	_, err = c.Configure(ctx(t), "+14155550999", ours)
	wantKind(t, err, carrier.ErrNotFound)
	_, err = c.Configure(ctx(t), "+14155550123", carrier.NumberConfig{VoiceURL: "not a url"})
	wantKind(t, err, carrier.ErrInvalidQuery)
}

func TestSetRegion(t *testing.T) {
	fk, c := runFake(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+14155550123", Voice: true}}})
	if err := c.SetRegion(ctx(t), "+14155550123", "ie1"); err != nil {
		t.Fatal(err)
	}
	n, _ := fk.OwnedNumber("+14155550123")
	if n.VoiceRegion != "ie1" {
		t.Fatalf("voice region %q", n.VoiceRegion)
	}
	w := fk.Writes()
	if len(w) != 1 || w[0].Path != "/v2/PhoneNumbers/+14155550123" || w[0].Form.Get("VoiceRegion") != "ie1" {
		t.Fatalf("writes %+v", w)
	}
	if w[0].Host != "routes.ashburn.us1.twilio.com" {
		t.Fatalf("routes host %q: must carry an edge", w[0].Host)
	}
	wantKind(t, c.SetRegion(ctx(t), "+14155550123", "eu1"), carrier.ErrInvalidQuery)
	wantKind(t, c.SetRegion(ctx(t), "+14155550999", "au1"), carrier.ErrNotFound)
}

func TestRelease(t *testing.T) {
	fk, c := runFake(t, twiliofake.Options{Owned: []twiliofake.Number{{PhoneNumber: "+14155550123"}, {PhoneNumber: "+14155550124"}}})
	if err := c.Release(ctx(t), "+14155550123"); err != nil {
		t.Fatal(err)
	}
	if got := twiliofake.SortedPhoneNumbers(fk.Owned()); len(got) != 1 || got[0] != "+14155550124" {
		t.Fatalf("owned after release %v", got)
	}
	w := fk.Writes()
	if len(w) != 1 || w[0].Method != "DELETE" || w[0].Status != http.StatusNoContent {
		t.Fatalf("writes %+v", w)
	}
	wantKind(t, c.Release(ctx(t), "+14155550123"), carrier.ErrNotFound)
}

func TestFailures(t *testing.T) {
	t.Run("context deadline", func(t *testing.T) {
		fk, c := runFake(t, twiliofake.Options{})
		fk.FailNext(twiliofake.Failure{Delay: 5 * time.Second})
		cx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := c.ValidateCredentials(cx)
		wantKind(t, err, carrier.ErrTimeout)
		if time.Since(start) > 3*time.Second {
			t.Fatal("the deadline was not honoured")
		}
	})
	t.Run("request timeout", func(t *testing.T) {
		fk := twiliofake.MustNew(t, twiliofake.Options{})
		c, err := twilio.New(twilio.Config{AccountSID: fk.AccountSID(), AuthToken: fk.AuthToken(), APIBase: fk.URL(), Timeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		fk.FailNext(twiliofake.Failure{Delay: 5 * time.Second})
		_, err = c.ListOwned(ctx(t))
		wantKind(t, err, carrier.ErrTimeout)
	})
	t.Run("5xx", func(t *testing.T) {
		fk, c := runFake(t, twiliofake.Options{})
		fk.FailNext(twiliofake.Failure{Status: 500})
		wantKind(t, c.ValidateCredentials(ctx(t)), carrier.ErrUnavailable)
	})
	t.Run("connection refused", func(t *testing.T) {
		fk, c := runFake(t, twiliofake.Options{})
		fk.Close()
		ce := wantKind(t, c.ValidateCredentials(ctx(t)), carrier.ErrUnavailable)
		if ce.Detail != "connection refused" {
			t.Fatalf("detail %q", ce.Detail)
		}
	})
	t.Run("proxy 502 page", func(t *testing.T) {
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("<html>bad gateway</html>"))
		}))
		defer proxy.Close()
		c, err := twilio.New(twilio.Config{AccountSID: twiliofake.DefaultAccountSID, AuthToken: "tok", APIBase: proxy.URL})
		if err != nil {
			t.Fatal(err)
		}
		wantKind(t, c.ValidateCredentials(ctx(t)), carrier.ErrUnavailable)
	})
	t.Run("canceled", func(t *testing.T) {
		_, c := runFake(t, twiliofake.Options{})
		cx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.ValidateCredentials(cx); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v", err)
		}
	})
}

func TestAPIBasePathPrefix(t *testing.T) {
	fk := twiliofake.MustNew(t, twiliofake.Options{})
	strip := httptest.NewServer(http.StripPrefix("/twilio", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A reverse proxy mounted under /twilio in front of the fake.
		pr, _ := http.NewRequestWithContext(r.Context(), r.Method, fk.URL()+r.URL.RequestURI(), r.Body)
		pr.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(pr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			_, _ = w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	})))
	defer strip.Close()
	c, err := twilio.New(twilio.Config{AccountSID: fk.AccountSID(), AuthToken: fk.AuthToken(), APIBase: strip.URL + "/twilio/"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ValidateCredentials(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestValidateSettingsWithoutCredentials(t *testing.T) {
	if err := (twilio.Config{APIBase: "http://127.0.0.1:8080", Edge: "dublin", Region: "ie1"}).ValidateSettings(); err != nil {
		t.Fatal(err)
	}
	if err := (twilio.Config{APIBase: "127.0.0.1:8080"}).ValidateSettings(); err == nil || !strings.Contains(err.Error(), "api_base") {
		t.Fatalf("error %v", err)
	}
}
