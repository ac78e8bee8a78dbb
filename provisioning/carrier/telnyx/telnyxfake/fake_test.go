package telnyxfake_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/callgate/callgate/provisioning/carrier/telnyx/telnyxfake"
)

type errorsBody struct {
	Errors []struct {
		Code  string `json:"code"`
		Title string `json:"title"`
	} `json:"errors"`
}

func do(t *testing.T, s *telnyxfake.Server, method, path, body string) (int, errorsBody) {
	t.Helper()
	req, _ := http.NewRequest(method, s.URL()+path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+s.APIKey())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb errorsBody
	_ = json.NewDecoder(resp.Body).Decode(&eb)
	return resp.StatusCode, eb
}

func TestStandaloneAndAuthError(t *testing.T) {
	s, err := telnyxfake.New(nil, telnyxfake.DemoOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get(s.URL() + "/v2/balance")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb errorsBody
	if resp.StatusCode != 401 || json.NewDecoder(resp.Body).Decode(&eb) != nil || len(eb.Errors) != 1 ||
		eb.Errors[0].Code != "10009" || eb.Errors[0].Title != "Authentication failed" {
		t.Fatalf("status %d body %+v", resp.StatusCode, eb)
	}
	if st, eb := do(t, s, "GET", "/v2/phone_numbers/123", ""); st != 404 || eb.Errors[0].Code != "10005" {
		t.Fatalf("unknown number: %d %+v", st, eb)
	}
}

func TestRequireSearch(t *testing.T) {
	s := telnyxfake.MustNew(t, telnyxfake.Options{RequireSearch: true, Inventory: telnyxfake.GenerateInventory("312", "local", 2)})
	order := `{"phone_numbers":[{"phone_number":"+13125550200"}]}`
	if st, _ := do(t, s, "POST", "/v2/number_orders", order); st != 422 {
		t.Fatalf("order without a search: %d", st)
	}
	if st, _ := do(t, s, "GET", "/v2/available_phone_numbers?filter[country_code]=US&filter[national_destination_code]=312", ""); st != 200 {
		t.Fatalf("search: %d", st)
	}
	if st, _ := do(t, s, "POST", "/v2/number_orders", order); st != 200 {
		t.Fatalf("order after a search: %d", st)
	}
}
