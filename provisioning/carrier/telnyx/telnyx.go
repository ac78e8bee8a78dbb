// Package telnyx is the carrier adapter for Telnyx accounts: a small
// hand-written client for the Telnyx v2 REST API (the Go SDK is not served
// by the module proxy here).
//
// Endpoints used: GET /v2/balance (validate the API key), GET
// /v2/available_phone_numbers (search), POST and GET /v2/number_orders (buy),
// GET /v2/phone_numbers (list and find, page[number]/page[size]), PATCH
// /v2/phone_numbers/{id} (connection), PATCH /v2/phone_numbers/{id}/messaging
// (messaging profile), DELETE /v2/phone_numbers/{id} (release).
//
// Purchases and their undo. Telnyx sells a number through a number order,
// which may stay "pending". Buy polls the order with backoff until it
// succeeds or fails, bounded by the context and Config.OrderWait. When it is
// still pending at the deadline, Buy returns a *PendingOrderError (kind
// carrier.ErrTimeout) carrying the order id: the caller treats the purchase
// as failed (refund the charge, drop the claim), records the order id, and
// calls ReleaseOrder(ctx, orderID) later, until it returns nil, to give back
// whatever the order ends up buying. When Buy fails with ErrTimeout or
// ErrUnavailable before Telnyx answered the order (so no order id is known),
// Release(ctx, e164) gives the number back if it reached the account
// (ErrNotFound: it did not). Orders carry customer_reference "callgate" so an
// operator can find them in the portal.
//
// Voice regions are a Twilio feature: SetRegion returns
// carrier.ErrRegionUnsupported.
package telnyx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning/carrier"
)

// Name is the carrier name used in errors and records.
const Name = "telnyx"

// DefaultAPIBase is the public Telnyx API.
const DefaultAPIBase = "https://api.telnyx.com"

// CustomerReference is set on every number order callgate places.
const CustomerReference = "callgate"

// Config configures a Telnyx account adapter.
type Config struct {
	APIKey string `yaml:"api_key"`
	// APIBase is the API's scheme and host (a path prefix is kept); default
	// https://api.telnyx.com. Point it at a fake, a simulator or an egress
	// proxy.
	APIBase string `yaml:"api_base"`
	// ConnectionID and MessagingProfileID are where bought numbers are
	// pointed (their calls and messages reach callgate through them) when
	// Buy's NumberConfig leaves them empty.
	ConnectionID       string `yaml:"connection_id"`
	MessagingProfileID string `yaml:"messaging_profile_id"`
	// Timeout bounds each HTTP request; default 15s.
	Timeout time.Duration `yaml:"timeout"`
	// OrderWait bounds how long Buy waits for a pending number order;
	// default 30s. A shorter context deadline wins.
	OrderWait time.Duration `yaml:"order_wait"`
	// Pricing is the monthly price in credits per number type; missing types
	// use carrier.DefaultPricing.
	Pricing carrier.Pricing `yaml:"pricing"`
	// HTTPClient supplies the transport (proxies, TLS); default
	// http.DefaultClient's transport. Its Timeout is ignored for Timeout.
	HTTPClient *http.Client `yaml:"-"`
}

// Validate checks the configuration; errors name the config key.
func (c Config) Validate() error {
	var errs []error
	if strings.TrimSpace(c.APIKey) == "" {
		errs = append(errs, errors.New("api_key: required"))
	} else if strings.ContainsAny(c.APIKey, " \t\r\n") || len(c.APIKey) > 512 {
		errs = append(errs, errors.New("api_key: must be a single token of at most 512 characters"))
	}
	if err := c.ValidateSettings(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ValidateSettings checks everything but the API key: the gateway-wide part
// of the configuration (carriers.telnyx.*), before any integration supplies
// a key.
func (c Config) ValidateSettings() error {
	var errs []error
	if c.APIBase != "" {
		if _, err := parseBase(c.APIBase); err != nil {
			errs = append(errs, fmt.Errorf("api_base: %w", err))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	if c.OrderWait < 0 {
		errs = append(errs, errors.New("order_wait: must not be negative"))
	}
	if err := c.Pricing.Validate("pricing"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func parseBase(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("%q: must not have a query, fragment or user info", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Carrier is a Telnyx account. It is safe for concurrent use.
type Carrier struct {
	cfg     Config
	base    *url.URL
	hc      *http.Client
	pricing carrier.Pricing
}

var _ carrier.Carrier = (*Carrier)(nil)

// New validates cfg and returns an adapter. It does not call Telnyx; use
// ValidateCredentials for that.
func New(cfg Config) (*Carrier, error) {
	if cfg.APIBase == "" {
		cfg.APIBase = DefaultAPIBase
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.OrderWait == 0 {
		cfg.OrderWait = 30 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("telnyx: config: %w", err)
	}
	base, _ := parseBase(cfg.APIBase)
	tr := http.DefaultTransport
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		tr = cfg.HTTPClient.Transport
	}
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Carrier{cfg: cfg, base: base, hc: hc, pricing: cfg.Pricing.WithDefaults()}, nil
}

// Name returns "telnyx".
func (c *Carrier) Name() string { return Name }

// --- transport ---

// APIError is one entry of a Telnyx error answer's "errors" array.
type APIError struct {
	Code   string `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
	Source struct {
		Pointer   string `json:"pointer"`
		Parameter string `json:"parameter"`
	} `json:"source"`
}

// ParseErrors reads a Telnyx error body ({"errors":[...]}); codes may be
// strings or numbers. It returns nil when body is not such a document.
func ParseErrors(body []byte) []APIError {
	var doc struct {
		Errors []struct {
			Code   json.RawMessage `json:"code"`
			Title  string          `json:"title"`
			Detail string          `json:"detail"`
			Source struct {
				Pointer   string `json:"pointer"`
				Parameter string `json:"parameter"`
			} `json:"source"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	out := make([]APIError, 0, len(doc.Errors))
	for _, e := range doc.Errors {
		ae := APIError{Title: e.Title, Detail: e.Detail}
		ae.Source.Pointer, ae.Source.Parameter = e.Source.Pointer, e.Source.Parameter
		var s string
		var n json.Number
		switch {
		case json.Unmarshal(e.Code, &s) == nil:
			ae.Code = s
		case json.Unmarshal(e.Code, &n) == nil:
			ae.Code = n.String()
		}
		out = append(out, ae)
	}
	return out
}

const maxBody = 8 << 20

// kinds tells do what 404 and other 4xx answers mean for an operation.
type kinds struct {
	notFound error // default carrier.ErrNotFound
	invalid  error // default carrier.ErrInvalidQuery
}

// do sends one request; out (may be nil) receives the decoded 2xx body.
func (c *Carrier) do(ctx context.Context, op, method, path string, query url.Values, body, out any, k kinds) error {
	u := *c.base
	u.Path = c.base.Path + path
	if query != nil {
		u.RawQuery = query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s: %s: encode request: %w", Name, op, err)
		}
		rd = bytes.NewReader(b)
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("%s: %s: build request: %w", Name, op, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return transportError(ctx, op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return transportError(ctx, op, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out == nil {
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrUnavailable, Detail: "unreadable answer from Telnyx"}
		}
		return nil
	}
	return statusError(op, resp.StatusCode, data, k)
}

func transportError(ctx context.Context, op string, err error) error {
	if errors.Is(err, context.Canceled) && ctx.Err() == context.Canceled {
		return fmt.Errorf("%s: %s: %w", Name, op, context.Canceled)
	}
	e := &carrier.Error{Carrier: Name, Op: op}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		e.Kind, e.Detail = carrier.ErrTimeout, "no answer from Telnyx in time"
	case errors.Is(err, syscall.ECONNREFUSED):
		e.Kind, e.Detail = carrier.ErrUnavailable, "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		e.Kind, e.Detail = carrier.ErrUnavailable, "connection reset"
	default:
		e.Kind, e.Detail = carrier.ErrUnavailable, "request failed"
		var dns *net.DNSError
		if errors.As(err, &dns) {
			e.Detail = "DNS lookup failed: " + dns.Err
		}
	}
	return e
}

func statusError(op string, status int, body []byte, k kinds) error {
	e := &carrier.Error{Carrier: Name, Op: op}
	detail := fmt.Sprintf("HTTP %d", status)
	if errs := ParseErrors(body); len(errs) > 0 {
		a := errs[0]
		detail = "Telnyx error"
		if a.Code != "" {
			detail += " " + truncate(a.Code, 16)
		}
		if a.Title != "" {
			detail += ": " + truncate(a.Title, 120)
		}
		if a.Detail != "" {
			detail += ": " + truncate(a.Detail, 300)
		}
	}
	e.Detail = detail
	notFound, invalid := k.notFound, k.invalid
	if notFound == nil {
		notFound = carrier.ErrNotFound
	}
	if invalid == nil {
		invalid = carrier.ErrInvalidQuery
	}
	switch {
	case status == http.StatusUnauthorized:
		e.Kind, e.Detail = carrier.ErrCredentialsRejected, "credentials rejected by Telnyx"
	case status == http.StatusForbidden:
		e.Kind, e.Detail = carrier.ErrCredentialsRejected, "credentials rejected by Telnyx: "+detail
	case status == http.StatusNotFound:
		e.Kind = notFound
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		e.Kind = carrier.ErrTimeout
	case status == http.StatusTooManyRequests || status >= 500:
		e.Kind = carrier.ErrUnavailable
	case status >= 400:
		e.Kind = invalid
	default: // 1xx/3xx
		e.Kind = carrier.ErrUnavailable
	}
	return e
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// ValidateCredentials checks the API key with GET /v2/balance. A 401 is
// ErrCredentialsRejected ("credentials rejected by Telnyx").
func (c *Carrier) ValidateCredentials(ctx context.Context) error {
	var out struct {
		Data struct {
			RecordType string `json:"record_type"`
		} `json:"data"`
	}
	return c.do(ctx, "validate credentials", http.MethodGet, "/v2/balance", nil, nil, &out, kinds{notFound: carrier.ErrCredentialsRejected})
}

// --- search ---

type availableNumber struct {
	PhoneNumber       string `json:"phone_number"`
	RegionInformation []struct {
		RegionType string `json:"region_type"`
		RegionName string `json:"region_name"`
	} `json:"region_information"`
	Features []struct {
		Name string `json:"name"`
	} `json:"features"`
}

// Search lists numbers for sale (GET /v2/available_phone_numbers). Telnyx's
// search is not paged: it returns up to Limit numbers and never a next page
// token. MonthlyCost comes from Config.Pricing.
func (c *Carrier) Search(ctx context.Context, q carrier.SearchQuery) (carrier.SearchPage, error) {
	const op = "search"
	bad := func(format string, a ...any) error {
		return &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrInvalidQuery, Detail: fmt.Sprintf(format, a...)}
	}
	country := strings.ToUpper(strings.TrimSpace(q.Country))
	if len(country) != 2 || country[0] < 'A' || country[0] > 'Z' || country[1] < 'A' || country[1] > 'Z' {
		return carrier.SearchPage{}, bad("country must be an ISO 3166 alpha-2 code, got %q", truncate(q.Country, 8))
	}
	typ := q.Type
	if typ == "" {
		typ = carrier.TypeLocal
	}
	switch typ {
	case carrier.TypeLocal, carrier.TypeMobile, carrier.TypeTollFree, carrier.TypeNational:
	default:
		return carrier.SearchPage{}, bad("number type %q is not searchable at Telnyx (want local, mobile, toll_free or national)", truncate(q.Type, 16))
	}
	ndc, err := ParseAreaCode(q.AreaCode, country)
	if err != nil {
		return carrier.SearchPage{}, bad("%v", err)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 20
	}
	if limit > 100 {
		return carrier.SearchPage{}, bad("limit must be between 1 and 100")
	}
	if q.PageToken != "" {
		return carrier.SearchPage{}, bad("Telnyx search results have no further pages")
	}
	v := url.Values{}
	v.Set("filter[country_code]", country)
	if ndc != "" {
		v.Set("filter[national_destination_code]", ndc)
	}
	v.Set("filter[phone_number_type]", typ)
	for _, f := range featureNames(q.Features) {
		v.Add("filter[features][]", f)
	}
	v.Set("filter[limit]", strconv.Itoa(limit))
	var out struct {
		Data []availableNumber `json:"data"`
	}
	if err := c.do(ctx, op, http.MethodGet, "/v2/available_phone_numbers", v, nil, &out, kinds{notFound: carrier.ErrInvalidQuery}); err != nil {
		return carrier.SearchPage{}, err
	}
	page := carrier.SearchPage{Numbers: make([]carrier.AvailableNumber, 0, len(out.Data))}
	cost := c.pricing.MonthlyCost(typ)
	for _, n := range out.Data {
		if n.PhoneNumber == "" {
			continue
		}
		an := carrier.AvailableNumber{PhoneNumber: n.PhoneNumber, Country: country, Type: typ, MonthlyCost: cost, Carrier: Name}
		for _, r := range n.RegionInformation {
			switch r.RegionType {
			case "state":
				an.Region = r.RegionName
			case "rate_center", "location":
				if an.Locality == "" {
					an.Locality = r.RegionName
				}
			case "country_code":
				if len(r.RegionName) == 2 {
					an.Country = r.RegionName
				}
			}
		}
		for _, f := range n.Features {
			switch f.Name {
			case "voice":
				an.Features.Voice = true
			case "sms":
				an.Features.SMS = true
			case "mms":
				an.Features.MMS = true
			}
		}
		page.Numbers = append(page.Numbers, an)
	}
	return page, nil
}

func featureNames(f carrier.Features) []string {
	var out []string
	if f.Voice {
		out = append(out, "voice")
	}
	if f.SMS {
		out = append(out, "sms")
	}
	if f.MMS {
		out = append(out, "mms")
	}
	return out
}

// ParseAreaCode validates an area code (national destination code) for a
// search in country: digits only, 1 to 5 of them; in the US and Canada
// exactly three, the first 2-9. "" is none.
func ParseAreaCode(s, country string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "("), ")")
	if len(s) < 1 || len(s) > 5 {
		return "", fmt.Errorf("area code must be 1 to 5 digits, got %q", truncate(s, 16))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return "", fmt.Errorf("area code must be digits, got %q", truncate(s, 16))
		}
	}
	if country == "US" || country == "CA" {
		if len(s) != 3 || s[0] < '2' {
			return "", fmt.Errorf("area code %q is not a North American area code", s)
		}
	}
	return s, nil
}

// --- owned numbers ---

type phoneNumber struct {
	ID                 string  `json:"id"`
	PhoneNumber        string  `json:"phone_number"`
	Status             string  `json:"status"`
	ConnectionID       *string `json:"connection_id"`
	MessagingProfileID *string `json:"messaging_profile_id"`
	PhoneNumberType    string  `json:"phone_number_type"`
}

type listMeta struct {
	PageNumber   int `json:"page_number"`
	PageSize     int `json:"page_size"`
	TotalPages   int `json:"total_pages"`
	TotalResults int `json:"total_results"`
}

const (
	listPageSize = 250
	maxListPages = 400
)

func (c *Carrier) listNumbers(ctx context.Context, op, filter string) ([]phoneNumber, error) {
	var all []phoneNumber
	for pg := 1; pg <= maxListPages; pg++ {
		v := url.Values{}
		if filter != "" {
			v.Set("filter[phone_number]", filter)
		}
		v.Set("page[number]", strconv.Itoa(pg))
		v.Set("page[size]", strconv.Itoa(listPageSize))
		var out struct {
			Data []phoneNumber `json:"data"`
			Meta listMeta      `json:"meta"`
		}
		if err := c.do(ctx, op, http.MethodGet, "/v2/phone_numbers", v, nil, &out, kinds{}); err != nil {
			return nil, err
		}
		all = append(all, out.Data...)
		if len(out.Data) == 0 || out.Meta.TotalPages <= pg {
			return all, nil
		}
	}
	return nil, &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrUnavailable, Detail: fmt.Sprintf("more than %d pages of numbers", maxListPages)}
}

func owned(n phoneNumber) carrier.OwnedNumber {
	cfg := carrier.NumberConfig{ConnectionID: deref(n.ConnectionID), MessagingProfileID: deref(n.MessagingProfileID)}
	return carrier.OwnedNumber{
		PhoneNumber: n.PhoneNumber, CarrierID: n.ID, Config: cfg,
		// Telnyx's number list does not report capabilities: every number
		// takes calls; messages reach a number only through a messaging profile.
		Features: carrier.Features{Voice: true, SMS: cfg.MessagingProfileID != ""},
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// ListOwned lists every number on the account with its connection and
// messaging profile.
func (c *Carrier) ListOwned(ctx context.Context) ([]carrier.OwnedNumber, error) {
	nums, err := c.listNumbers(ctx, "list numbers", "")
	if err != nil {
		return nil, err
	}
	out := make([]carrier.OwnedNumber, 0, len(nums))
	for _, n := range nums {
		if n.Status == "deleted" {
			continue
		}
		out = append(out, owned(n))
	}
	return out, nil
}

func (c *Carrier) find(ctx context.Context, op, e164 string) (phoneNumber, error) {
	if !phone.IsE164(e164) {
		return phoneNumber{}, &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrInvalidQuery, Detail: "phone number must be E.164"}
	}
	nums, err := c.listNumbers(ctx, op, e164)
	if err != nil {
		return phoneNumber{}, err
	}
	for _, n := range nums {
		if n.PhoneNumber == e164 && validID(n.ID) && n.Status != "deleted" {
			return n, nil
		}
	}
	return phoneNumber{}, &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrNotFound,
		Detail: "number ending " + e164[len(e164)-4:] + " is not on the account"}
}

// --- buy ---

// PendingOrderError is returned by Buy when Telnyx has not completed the
// number order by the deadline. It unwraps to a *carrier.Error of kind
// carrier.ErrTimeout. The purchase must be treated as failed and undone with
// ReleaseOrder(ctx, OrderID), retried until it returns nil.
type PendingOrderError struct {
	OrderID     string
	PhoneNumber string
	Err         *carrier.Error
}

func (e *PendingOrderError) Error() string { return e.Err.Error() }
func (e *PendingOrderError) Unwrap() error { return e.Err }

// PendingOrderID implements carrier.PendingOrder.
func (e *PendingOrderError) PendingOrderID() string { return e.OrderID }

var (
	_ carrier.PendingOrder  = (*PendingOrderError)(nil)
	_ carrier.OrderReleaser = (*Carrier)(nil)
)

type numberOrder struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	PhoneNumbers []struct {
		ID          string `json:"id"`
		PhoneNumber string `json:"phone_number"`
		Status      string `json:"status"`
	} `json:"phone_numbers"`
}

type orderRequest struct {
	PhoneNumbers       []orderNumber `json:"phone_numbers"`
	ConnectionID       string        `json:"connection_id,omitempty"`
	MessagingProfileID string        `json:"messaging_profile_id,omitempty"`
	CustomerReference  string        `json:"customer_reference,omitempty"`
}

type orderNumber struct {
	PhoneNumber string `json:"phone_number"`
}

// Buy orders e164 (POST /v2/number_orders) on the connection and messaging
// profile of cfg, or of Config when cfg leaves them empty, and waits for the
// order to complete. See the package documentation for the undo of a failed
// or pending purchase.
func (c *Carrier) Buy(ctx context.Context, e164 string, cfg carrier.NumberConfig) (carrier.OwnedNumber, error) {
	const op = "buy"
	if !phone.IsE164(e164) {
		return carrier.OwnedNumber{}, &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrInvalidQuery, Detail: "phone number must be E.164"}
	}
	conn, msg := cfg.ConnectionID, cfg.MessagingProfileID
	if conn == "" {
		conn = c.cfg.ConnectionID
	}
	if msg == "" {
		msg = c.cfg.MessagingProfileID
	}
	var out struct {
		Data numberOrder `json:"data"`
	}
	req := orderRequest{PhoneNumbers: []orderNumber{{e164}}, ConnectionID: conn, MessagingProfileID: msg, CustomerReference: CustomerReference}
	if err := c.do(ctx, op, http.MethodPost, "/v2/number_orders", nil, req, &out,
		kinds{notFound: carrier.ErrNotAvailable, invalid: carrier.ErrNotAvailable}); err != nil {
		return carrier.OwnedNumber{}, err
	}
	ord := out.Data
	if ord.Status == "pending" {
		var err error
		ord, err = c.waitOrder(ctx, ord, e164)
		if err != nil {
			return carrier.OwnedNumber{}, err
		}
	}
	switch ord.Status {
	case "success":
	case "failure":
		return carrier.OwnedNumber{}, &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrNotAvailable,
			Detail: "Telnyx failed number order " + truncate(ord.ID, 64)}
	default:
		return carrier.OwnedNumber{}, &PendingOrderError{OrderID: ord.ID, PhoneNumber: e164,
			Err: &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrTimeout,
				Detail: fmt.Sprintf("number order %s has unknown status %q; undo with ReleaseOrder", truncate(ord.ID, 64), truncate(ord.Status, 16))}}
	}
	on := carrier.OwnedNumber{PhoneNumber: e164, Config: carrier.NumberConfig{ConnectionID: conn, MessagingProfileID: msg},
		Features: carrier.Features{Voice: true, SMS: msg != ""}}
	// The phone number resource id is a convenience (every other operation
	// looks the number up by E.164): failing to read it does not undo a
	// purchase that succeeded.
	if n, err := c.find(ctx, op, e164); err == nil {
		on.CarrierID = n.ID
	}
	return on, nil
}

// Backoff of order polling.
const (
	pollFirst = 200 * time.Millisecond
	pollMax   = 4 * time.Second
)

// waitOrder polls a pending order until it leaves "pending" or the deadline
// (ctx, OrderWait) passes; then it returns a *PendingOrderError.
func (c *Carrier) waitOrder(ctx context.Context, ord numberOrder, e164 string) (numberOrder, error) {
	const op = "buy"
	wctx, cancel := context.WithTimeout(ctx, c.cfg.OrderWait)
	defer cancel()
	pending := func(last error) error {
		detail := fmt.Sprintf("number order %s still pending at the deadline; undo with ReleaseOrder", truncate(ord.ID, 64))
		if last != nil {
			detail += " (last poll: " + last.Error() + ")"
		}
		return &PendingOrderError{OrderID: ord.ID, PhoneNumber: e164,
			Err: &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrTimeout, Detail: detail}}
	}
	if !validID(ord.ID) {
		return ord, &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrUnavailable, Detail: "Telnyx answered a pending order without a usable id"}
	}
	delay := pollFirst
	var last error
	for {
		t := time.NewTimer(delay)
		select {
		case <-wctx.Done():
			t.Stop()
			return ord, pending(last)
		case <-t.C:
		}
		var out struct {
			Data numberOrder `json:"data"`
		}
		err := c.do(wctx, op, http.MethodGet, "/v2/number_orders/"+ord.ID, nil, nil, &out, kinds{})
		switch {
		case err == nil && out.Data.Status != "pending":
			return out.Data, nil
		case err == nil:
			last = nil
		default:
			if wctx.Err() != nil {
				return ord, pending(last)
			}
			last = err
		}
		delay *= 2
		if delay > pollMax {
			delay = pollMax
		}
	}
}

// ReleaseOrder undoes a number order Buy gave up on: when the order has
// succeeded, its numbers are released; when it failed, nothing is left to
// undo. While the order is still pending it returns a *PendingOrderError:
// call again later.
func (c *Carrier) ReleaseOrder(ctx context.Context, orderID string) error {
	const op = "release order"
	if !validID(orderID) {
		return &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrInvalidQuery, Detail: "order id must be 1 to 128 letters, digits, '-' or '_'"}
	}
	var out struct {
		Data numberOrder `json:"data"`
	}
	if err := c.do(ctx, op, http.MethodGet, "/v2/number_orders/"+orderID, nil, nil, &out, kinds{}); err != nil {
		return err
	}
	switch out.Data.Status {
	case "failure":
		return nil
	case "success":
		for _, n := range out.Data.PhoneNumbers {
			if err := c.Release(ctx, n.PhoneNumber); err != nil && !errors.Is(err, carrier.ErrNotFound) {
				return err
			}
		}
		return nil
	default:
		pn := ""
		if len(out.Data.PhoneNumbers) > 0 {
			pn = out.Data.PhoneNumbers[0].PhoneNumber
		}
		return &PendingOrderError{OrderID: orderID, PhoneNumber: pn,
			Err: &carrier.Error{Carrier: Name, Op: op, Kind: carrier.ErrTimeout, Detail: "number order " + truncate(orderID, 64) + " is still pending; retry later"}}
	}
}

// --- configure, region, release ---

// Configure points e164 at cfg's connection (PATCH /v2/phone_numbers/{id})
// and messaging profile (PATCH /v2/phone_numbers/{id}/messaging) and returns
// the previous ones. An empty ID unassigns. Only settings that change are
// written; if the messaging update fails after the connection changed, the
// connection is put back before the error is returned.
func (c *Carrier) Configure(ctx context.Context, e164 string, cfg carrier.NumberConfig) (carrier.NumberConfig, error) {
	const op = "configure"
	n, err := c.find(ctx, op, e164)
	if err != nil {
		return carrier.NumberConfig{}, err
	}
	prev := carrier.NumberConfig{ConnectionID: deref(n.ConnectionID), MessagingProfileID: deref(n.MessagingProfileID)}
	path := "/v2/phone_numbers/" + n.ID
	connChanged := cfg.ConnectionID != prev.ConnectionID
	if connChanged {
		if err := c.do(ctx, op, http.MethodPatch, path, nil, map[string]string{"connection_id": cfg.ConnectionID}, nil, kinds{}); err != nil {
			return carrier.NumberConfig{}, err
		}
	}
	if cfg.MessagingProfileID != prev.MessagingProfileID {
		if err := c.do(ctx, op, http.MethodPatch, path+"/messaging", nil, map[string]string{"messaging_profile_id": cfg.MessagingProfileID}, nil, kinds{}); err != nil {
			if connChanged {
				// Undo the half: the caller sees the number as it was.
				bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout)
				defer cancel()
				if rerr := c.do(bg, op, http.MethodPatch, path, nil, map[string]string{"connection_id": prev.ConnectionID}, nil, kinds{}); rerr != nil {
					return carrier.NumberConfig{}, fmt.Errorf("%w (and putting the previous connection back failed: %v)", err, rerr)
				}
			}
			return carrier.NumberConfig{}, err
		}
	}
	return prev, nil
}

// SetRegion is refused: voice regions are configured for Twilio numbers only.
func (c *Carrier) SetRegion(ctx context.Context, e164, region string) error {
	return &carrier.Error{Carrier: Name, Op: "set region", Kind: carrier.ErrRegionUnsupported}
}

// Release deletes the number from the account (DELETE /v2/phone_numbers/{id}).
func (c *Carrier) Release(ctx context.Context, e164 string) error {
	const op = "release"
	n, err := c.find(ctx, op, e164)
	if err != nil {
		return err
	}
	return c.do(ctx, op, http.MethodDelete, "/v2/phone_numbers/"+n.ID, nil, nil, nil, kinds{})
}

// validID accepts the ids Telnyx hands out (numeric ids, UUIDs), which go
// into URL paths unescaped.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
