package telnyx_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/callgate/callgate/provisioning/carrier/telnyx"
	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
)

const (
	connID = "1684641123236054244"
	msgID  = "400174af-0a13-4e28-b4f5-000000000001"
)

// runFake starts a Telnyx fake with opts and an adapter pointed at it.
func runFake(t *testing.T, opts telnyxfake.Options, mod ...func(*telnyx.Config)) (*telnyxfake.Server, *telnyx.Carrier) {
	t.Helper()
	fk := telnyxfake.MustNew(t, opts)
	cfg := telnyx.Config{APIKey: fk.APIKey(), APIBase: fk.URL(), ConnectionID: connID, MessagingProfileID: msgID}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := telnyx.New(cfg)
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

func wantKind(t *testing.T, err, kind error) *carrier.Error {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("error %v: want kind %v", err, kind)
	}
	var ce *carrier.Error
	if !errors.As(err, &ce) || ce.Carrier != "telnyx" || !strings.Contains(err.Error(), "telnyx") {
		t.Fatalf("error %v: want a *carrier.Error naming telnyx", err)
	}
	return ce
}

func TestValidateCredentials(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{})
	if err := c.ValidateCredentials(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if r := fk.Requests(); len(r) != 1 || r[0].Method != "GET" || r[0].Path != "/v2/balance" {
		t.Fatalf("requests %+v", r)
	}
	bad, _ := telnyx.New(telnyx.Config{APIKey: "KEYwrong", APIBase: fk.URL()})
	err := bad.ValidateCredentials(ctx(t))
	ce := wantKind(t, err, carrier.ErrCredentialsRejected)
	if ce.Detail != "credentials rejected by Telnyx" || strings.Contains(err.Error(), "KEYwrong") {
		t.Fatalf("error %q", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  telnyx.Config
		want string
	}{
		{telnyx.Config{}, "api_key"},
		{telnyx.Config{APIKey: "a b"}, "api_key"},
		{telnyx.Config{APIKey: "k", APIBase: "api.telnyx.com"}, "api_base"},
		{telnyx.Config{APIKey: "k", OrderWait: -1}, "order_wait"},
		{telnyx.Config{APIKey: "k", Pricing: carrier.Pricing{carrier.TypeLocal: -1}}, "pricing.local"},
	} {
		if _, err := telnyx.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestSearch(t *testing.T) {
	inv := telnyxfake.GenerateInventory("312", "local", 5)
	inv = append(inv, telnyxfake.Number{PhoneNumber: "+13125550999", Features: []string{"voice"}})
	inv = append(inv, telnyxfake.GenerateInventory("888", "toll_free", 2)...)
	fk, c := runFake(t, telnyxfake.Options{Inventory: inv})
	pg, err := c.Search(ctx(t), carrier.SearchQuery{Country: "US", AreaCode: "312", Features: carrier.Features{SMS: true}, Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Numbers) != 3 || pg.NextPageToken != "" {
		t.Fatalf("page %+v", pg)
	}
	n := pg.Numbers[0]
	if n.Carrier != "telnyx" || n.Region != "IL" || n.Locality != "CHICAGO" || n.Country != "US" || n.MonthlyCost != 115 ||
		!n.Features.Voice || !n.Features.SMS || !n.Features.MMS || n.Type != carrier.TypeLocal {
		t.Fatalf("number %+v", n)
	}
	q := fk.Requests()[0].Query
	if q.Get("filter[country_code]") != "US" || q.Get("filter[national_destination_code]") != "312" ||
		q.Get("filter[phone_number_type]") != "local" || q.Get("filter[features][]") != "sms" || q.Get("filter[limit]") != "3" {
		t.Fatalf("query %v", q)
	}
	pg, err = c.Search(ctx(t), carrier.SearchQuery{Country: "US", Type: carrier.TypeTollFree})
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Numbers) != 2 || pg.Numbers[0].MonthlyCost != 215 {
		t.Fatalf("toll-free %+v", pg)
	}
	if len(fk.Writes()) != 0 {
		t.Fatal("search wrote to the account")
	}
}

func TestSearchInvalid(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{})
	for _, q := range []carrier.SearchQuery{
		{Country: "US", AreaCode: "31"},
		{Country: "US", AreaCode: "112"},
		{Country: "GB", AreaCode: "20x"},
		{Country: ""},
		{Country: "US", Type: "shared"},
		{Country: "US", Limit: 101},
		{Country: "US", PageToken: "x"},
	} {
		wantKind(t, func() error { _, err := c.Search(ctx(t), q); return err }(), carrier.ErrInvalidQuery)
	}
	if len(fk.Requests()) != 0 {
		t.Fatal("invalid searches reached Telnyx")
	}
	// Telnyx refusing a filter (400) is an invalid query.
	fk.FailNext(telnyxfake.Failure{Status: 400, Code: "10015", Title: "Bad Request"})
	_, err := c.Search(ctx(t), carrier.SearchQuery{Country: "US", AreaCode: "555"})
	ce := wantKind(t, err, carrier.ErrInvalidQuery)
	if !strings.Contains(ce.Detail, "10015") {
		t.Fatalf("detail %q", ce.Detail)
	}
}

func TestBuy(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{Inventory: telnyxfake.GenerateInventory("312", "local", 2)})
	on, err := c.Buy(ctx(t), "+13125550200", carrier.NumberConfig{})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := fk.OwnedNumber("+13125550200")
	if !ok || got.ConnectionID != connID || got.MessagingProfileID != msgID {
		t.Fatalf("on the account: %+v %v", got, ok)
	}
	if on.CarrierID != got.ID || on.Config.ConnectionID != connID || on.Config.MessagingProfileID != msgID {
		t.Fatalf("owned %+v", on)
	}
	w := fk.Writes()
	var body struct {
		PhoneNumbers []struct {
			PhoneNumber string `json:"phone_number"`
		} `json:"phone_numbers"`
		ConnectionID      string `json:"connection_id"`
		CustomerReference string `json:"customer_reference"`
	}
	if len(w) != 1 || w[0].Method != "POST" || w[0].Path != "/v2/number_orders" || w[0].JSON(&body) != nil ||
		body.PhoneNumbers[0].PhoneNumber != "+13125550200" || body.ConnectionID != connID || body.CustomerReference != "callgate" {
		t.Fatalf("writes %+v body %+v", w, body)
	}
	// Taken or unknown.
	_, err = c.Buy(ctx(t), "+13125550200", carrier.NumberConfig{})
	wantKind(t, err, carrier.ErrNotAvailable)
	// 5xx: nothing bought; the undo (Release) finds nothing.
	fk.FailNext(telnyxfake.Failure{Method: "POST", Status: 503})
	_, err = c.Buy(ctx(t), "+13125550201", carrier.NumberConfig{})
	wantKind(t, err, carrier.ErrUnavailable)
	wantKind(t, c.Release(ctx(t), "+13125550201"), carrier.ErrNotFound)
}

func TestBuyPendingCompletes(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{Inventory: telnyxfake.GenerateInventory("312", "local", 1)})
	fk.SetOrdersPending(2)
	on, err := c.Buy(ctx(t), "+13125550200", carrier.NumberConfig{ConnectionID: "999"})
	if err != nil {
		t.Fatal(err)
	}
	if on.Config.ConnectionID != "999" || on.CarrierID == "" {
		t.Fatalf("owned %+v", on)
	}
	polls := 0
	for _, r := range fk.Requests() {
		if r.Method == "GET" && strings.HasPrefix(r.Path, "/v2/number_orders/") {
			polls++
		}
	}
	if polls != 2 {
		t.Fatalf("%d polls", polls)
	}
}

func TestBuyPendingAtDeadlineAndUndo(t *testing.T) {
	for _, finish := range []string{"success", "failure"} {
		t.Run(finish, func(t *testing.T) {
			fk, c := runFake(t, telnyxfake.Options{Inventory: telnyxfake.GenerateInventory("312", "local", 1)},
				func(cfg *telnyx.Config) { cfg.OrderWait = 600 * time.Millisecond })
			fk.SetOrdersPending(-1)
			start := time.Now()
			_, err := c.Buy(ctx(t), "+13125550200", carrier.NumberConfig{})
			wantKind(t, err, carrier.ErrTimeout)
			var pe *telnyx.PendingOrderError
			if !errors.As(err, &pe) || pe.OrderID == "" || pe.PhoneNumber != "+13125550200" {
				t.Fatalf("error %v: want a PendingOrderError", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("waited %v past OrderWait", d)
			}
			if !strings.Contains(err.Error(), "ReleaseOrder") {
				t.Fatalf("error %q does not say how to undo", err)
			}
			// Still pending: ReleaseOrder asks to retry.
			err = c.ReleaseOrder(ctx(t), pe.OrderID)
			if !errors.As(err, new(*telnyx.PendingOrderError)) {
				t.Fatalf("release of a pending order: %v", err)
			}
			if finish == "success" {
				fk.CompletePendingOrders()
				if _, ok := fk.OwnedNumber("+13125550200"); !ok {
					t.Fatal("fake did not complete the order")
				}
			} else {
				fk.FailPendingOrders()
			}
			if err := c.ReleaseOrder(ctx(t), pe.OrderID); err != nil {
				t.Fatal(err)
			}
			if len(fk.Owned()) != 0 {
				t.Fatalf("left on the account: %v", telnyxfake.SortedPhoneNumbers(fk.Owned()))
			}
		})
	}
}

func TestBuyPendingContextDeadline(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{Inventory: telnyxfake.GenerateInventory("312", "local", 1)})
	fk.SetOrdersPending(-1)
	cx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := c.Buy(cx, "+13125550200", carrier.NumberConfig{})
	var pe *telnyx.PendingOrderError
	if !errors.As(err, &pe) || !errors.Is(err, carrier.ErrTimeout) {
		t.Fatalf("error %v", err)
	}
}

func TestListOwnedPaging(t *testing.T) {
	var owned []telnyxfake.Number
	for i := 0; i < 600; i++ {
		owned = append(owned, telnyxfake.Number{PhoneNumber: fmt.Sprintf("+1312555%04d", i), ConnectionID: "c1"})
	}
	owned[1].MessagingProfileID = "m1"
	fk, c := runFake(t, telnyxfake.Options{Owned: owned})
	got, err := c.ListOwned(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 600 || got[0].Config.ConnectionID != "c1" || got[1].Config.MessagingProfileID != "m1" || !got[1].Features.SMS || got[0].Features.SMS {
		t.Fatalf("%d numbers; first %+v %+v", len(got), got[0], got[1])
	}
	reqs := fk.Requests()
	if len(reqs) != 3 || reqs[2].Query.Get("page[number]") != "3" || reqs[2].Query.Get("page[size]") != "250" {
		t.Fatalf("requests %+v", reqs)
	}
	if len(fk.Writes()) != 0 {
		t.Fatal("listing wrote to the account")
	}
}

func TestConfigureRecordsPreviousAndRestores(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{Owned: []telnyxfake.Number{
		{PhoneNumber: "+13125550300", ConnectionID: "customer-conn", MessagingProfileID: "customer-profile"},
	}})
	prev, err := c.Configure(ctx(t), "+13125550300", carrier.NumberConfig{ConnectionID: connID, MessagingProfileID: msgID})
	if err != nil {
		t.Fatal(err)
	}
	if prev.ConnectionID != "customer-conn" || prev.MessagingProfileID != "customer-profile" {
		t.Fatalf("previous %+v", prev)
	}
	n, _ := fk.OwnedNumber("+13125550300")
	if n.ConnectionID != connID || n.MessagingProfileID != msgID {
		t.Fatalf("after configure %+v", n)
	}
	w := fk.Writes()
	if len(w) != 2 || w[0].Method != "PATCH" || w[0].Path != "/v2/phone_numbers/"+n.ID ||
		w[1].Path != "/v2/phone_numbers/"+n.ID+"/messaging" || !strings.Contains(string(w[1].Body), msgID) {
		t.Fatalf("writes %+v", w)
	}
	// Nothing changes: nothing written.
	fk.ResetRequests()
	if _, err := c.Configure(ctx(t), "+13125550300", carrier.NumberConfig{ConnectionID: connID, MessagingProfileID: msgID}); err != nil {
		t.Fatal(err)
	}
	if len(fk.Writes()) != 0 {
		t.Fatalf("unchanged configure wrote %+v", fk.Writes())
	}
	if _, err := c.Configure(ctx(t), "+13125550300", prev); err != nil {
		t.Fatal(err)
	}
	n, _ = fk.OwnedNumber("+13125550300")
	if n.ConnectionID != "customer-conn" || n.MessagingProfileID != "customer-profile" {
		t.Fatalf("restored %+v", n)
	}
	_, err = c.Configure(ctx(t), "+13125550399", prev)
	wantKind(t, err, carrier.ErrNotFound)
}

func TestConfigureMessagingFailureRollsBack(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{Owned: []telnyxfake.Number{{PhoneNumber: "+13125550300", ConnectionID: "customer-conn"}}})
	fk.FailNext(telnyxfake.Failure{PathContains: "/messaging", Status: 500})
	_, err := c.Configure(ctx(t), "+13125550300", carrier.NumberConfig{ConnectionID: connID, MessagingProfileID: msgID})
	wantKind(t, err, carrier.ErrUnavailable)
	n, _ := fk.OwnedNumber("+13125550300")
	if n.ConnectionID != "customer-conn" || n.MessagingProfileID != "" {
		t.Fatalf("half-configured number %+v", n)
	}
}

func TestSetRegionUnsupported(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{Owned: []telnyxfake.Number{{PhoneNumber: "+13125550300"}}})
	err := c.SetRegion(ctx(t), "+13125550300", "us1")
	wantKind(t, err, carrier.ErrRegionUnsupported)
	if !strings.Contains(err.Error(), "regions are configured for Twilio numbers only") {
		t.Fatalf("error %q", err)
	}
	if len(fk.Requests()) != 0 {
		t.Fatal("SetRegion called Telnyx")
	}
}

func TestRelease(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{Owned: []telnyxfake.Number{{PhoneNumber: "+13125550300"}, {PhoneNumber: "+13125550301"}}})
	if err := c.Release(ctx(t), "+13125550300"); err != nil {
		t.Fatal(err)
	}
	if got := telnyxfake.SortedPhoneNumbers(fk.Owned()); len(got) != 1 || got[0] != "+13125550301" {
		t.Fatalf("owned %v", got)
	}
	if w := fk.Writes(); len(w) != 1 || w[0].Method != "DELETE" || w[0].Status != http.StatusOK {
		t.Fatalf("writes %+v", w)
	}
	wantKind(t, c.Release(ctx(t), "+13125550300"), carrier.ErrNotFound)
	wantKind(t, c.Release(ctx(t), "3125550300"), carrier.ErrInvalidQuery)
}

func TestFailures(t *testing.T) {
	t.Run("request timeout", func(t *testing.T) {
		fk, c := runFake(t, telnyxfake.Options{}, func(cfg *telnyx.Config) { cfg.Timeout = 100 * time.Millisecond })
		fk.FailNext(telnyxfake.Failure{Delay: 5 * time.Second})
		wantKind(t, c.ValidateCredentials(ctx(t)), carrier.ErrTimeout)
	})
	t.Run("context deadline", func(t *testing.T) {
		fk, c := runFake(t, telnyxfake.Options{})
		fk.FailNext(telnyxfake.Failure{Delay: 5 * time.Second})
		cx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := c.ListOwned(cx)
		wantKind(t, err, carrier.ErrTimeout)
	})
	t.Run("5xx", func(t *testing.T) {
		fk, c := runFake(t, telnyxfake.Options{})
		fk.FailNext(telnyxfake.Failure{Status: 502})
		wantKind(t, c.ValidateCredentials(ctx(t)), carrier.ErrUnavailable)
	})
	t.Run("429", func(t *testing.T) {
		fk, c := runFake(t, telnyxfake.Options{})
		fk.FailNext(telnyxfake.Failure{Status: 429, Code: "10011", Title: "Too many requests"})
		wantKind(t, c.ValidateCredentials(ctx(t)), carrier.ErrUnavailable)
	})
	t.Run("connection refused", func(t *testing.T) {
		fk, c := runFake(t, telnyxfake.Options{})
		fk.Close()
		ce := wantKind(t, c.ValidateCredentials(ctx(t)), carrier.ErrUnavailable)
		if ce.Detail != "connection refused" {
			t.Fatalf("detail %q", ce.Detail)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		_, c := runFake(t, telnyxfake.Options{})
		cx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := c.ValidateCredentials(cx); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v", err)
		}
	})
}

func TestReleaseOrderInvalidID(t *testing.T) {
	fk, c := runFake(t, telnyxfake.Options{})
	for _, id := range []string{"", "../phone_numbers/1", strings.Repeat("a", 200)} {
		wantKind(t, c.ReleaseOrder(ctx(t), id), carrier.ErrInvalidQuery)
	}
	wantKind(t, c.ReleaseOrder(ctx(t), "0b3e6d30-0000-4000-8000-000000000000"), carrier.ErrNotFound)
	if n := len(fk.Requests()); n != 1 {
		t.Fatalf("%d requests", n)
	}
}

func TestValidateSettingsWithoutKey(t *testing.T) {
	if err := (telnyx.Config{APIBase: "http://127.0.0.1:8080"}).ValidateSettings(); err != nil {
		t.Fatal(err)
	}
	if err := (telnyx.Config{Timeout: -1}).ValidateSettings(); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("error %v", err)
	}
}

// The saga's generic undo path: an instrumented Telnyx carrier, a pending
// order found through carrier.PendingOrderID, undone through carrier.ReleaseOrder.
func TestGenericPendingOrderUndo(t *testing.T) {
	fk, tc := runFake(t, telnyxfake.Options{Inventory: telnyxfake.GenerateInventory("312", "local", 1)},
		func(cfg *telnyx.Config) { cfg.OrderWait = 300 * time.Millisecond })
	c := carrier.Instrument(tc, carrier.NewMetrics(nil))
	fk.SetOrdersPending(-1)
	_, err := c.Buy(ctx(t), "+13125550200", carrier.NumberConfig{})
	id, ok := carrier.PendingOrderID(err)
	if !ok || id == "" {
		t.Fatalf("error %v carries no pending order", err)
	}
	fk.CompletePendingOrders()
	supported, err := carrier.ReleaseOrder(ctx(t), c, id)
	if !supported || err != nil {
		t.Fatalf("ReleaseOrder: %v %v", supported, err)
	}
	if len(fk.Owned()) != 0 {
		t.Fatal("number left on the account")
	}
	if _, ok := carrier.PendingOrderID(errors.New("x")); ok {
		t.Fatal("plain error reported as pending")
	}
}
