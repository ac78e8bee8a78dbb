// Package twilio is the carrier adapter for Twilio accounts, built on
// github.com/twilio/twilio-go.
//
// twilio-go has no base-URL option and no context support; the adapter gives
// it, per operation, an http.Client whose transport binds the operation's
// context and, when Config.APIBase is set, rewrites scheme and host of every
// request (paging follow-ups included) to that base (a fake, a carrier
// simulator or an egress proxy). The host Twilio would have been called on is
// kept in X-Forwarded-Host.
//
// Twilio URLs are always built with an edge (default "ashburn"), so that
// twilio-go never builds a region-only host such as api.us1.twilio.com, which
// Twilio retires.
//
// Undo after a failed purchase: when Buy returns ErrTimeout or ErrUnavailable
// the number may or may not have been bought; call Release with the same
// number, which looks the number up on the account and releases it if it is
// there (ErrNotFound from Release means nothing was bought).
package twilio

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning/carrier"
	"github.com/twilio/twilio-go/client"
	api "github.com/twilio/twilio-go/rest/api/v2010"
	routes "github.com/twilio/twilio-go/rest/routes/v2"
)

// Name is the carrier name used in errors and records.
const Name = "twilio"

// Edges Twilio offers for the REST API (the "-ix" interconnect edges are
// accepted too). "roaming" is refused because it is not usable for SIP and a
// number's voice region should match the edge callgate uses.
var Edges = []string{"ashburn", "umatilla", "dublin", "frankfurt", "sao-paulo", "singapore", "sydney", "tokyo",
	"ashburn-ix", "san-jose-ix", "london-ix", "frankfurt-ix", "singapore-ix", "sydney-ix", "tokyo-ix"}

// VoiceRegions are the Routes v2 voice regions.
var VoiceRegions = []string{"us1", "ie1", "au1"}

// Config configures a Twilio account adapter.
type Config struct {
	AccountSID string `yaml:"account_sid"`
	AuthToken  string `yaml:"auth_token"`
	// APIBase replaces scheme and host of every Twilio API URL, e.g.
	// http://127.0.0.1:PORT for a fake; a path prefix is kept. Empty: the
	// public API.
	APIBase string `yaml:"api_base"`
	// Edge is the Twilio edge location; default "ashburn".
	Edge string `yaml:"edge"`
	// Region is the Twilio processing region used with Edge; default "us1".
	Region string `yaml:"region"`
	// Timeout bounds each HTTP request; default 15s. A context deadline
	// shorter than this wins.
	Timeout time.Duration `yaml:"timeout"`
	// Pricing is the monthly price in credits per number type; missing types
	// use carrier.DefaultPricing (local 115, mobile 115, toll_free 215).
	Pricing carrier.Pricing `yaml:"pricing"`
	// HTTPClient supplies the base transport (proxies, TLS); its Timeout
	// is ignored in favour of Timeout. Default: http.DefaultTransport.
	HTTPClient *http.Client `yaml:"-"`
}

var (
	sidRe   = regexp.MustCompile(`^AC[0-9a-zA-Z]{32}$`)
	tokenRe = regexp.MustCompile(`^[0-9a-zA-Z]{1,128}$`)
)

// Validate checks the configuration; errors name the config key.
func (c Config) Validate() error {
	var errs []error
	if !sidRe.MatchString(c.AccountSID) {
		errs = append(errs, errors.New("account_sid: must be AC followed by 32 letters or digits"))
	}
	if !tokenRe.MatchString(c.AuthToken) {
		errs = append(errs, errors.New("auth_token: must be 1 to 128 letters or digits"))
	}
	if err := c.ValidateSettings(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ValidateSettings checks everything but the credentials: the gateway-wide
// part of the configuration (carriers.twilio.*), before any integration
// supplies an account.
func (c Config) ValidateSettings() error {
	var errs []error
	if c.APIBase != "" {
		if _, err := parseBase(c.APIBase); err != nil {
			errs = append(errs, fmt.Errorf("api_base: %w", err))
		}
	}
	if c.Edge != "" && !contains(Edges, c.Edge) {
		errs = append(errs, fmt.Errorf("edge: unknown Twilio edge %q (want one of %s)", c.Edge, strings.Join(Edges, ", ")))
	}
	if c.Region != "" && !contains(VoiceRegions, c.Region) {
		errs = append(errs, fmt.Errorf("region: unknown Twilio region %q (want us1, ie1 or au1)", c.Region))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
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

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Carrier is a Twilio account. It is safe for concurrent use.
type Carrier struct {
	cfg     Config
	base    *url.URL // nil: public API
	next    http.RoundTripper
	pricing carrier.Pricing
}

var _ carrier.Carrier = (*Carrier)(nil)

// New validates cfg and returns an adapter. It does not call Twilio; use
// ValidateCredentials for that.
func New(cfg Config) (*Carrier, error) {
	if cfg.Edge == "" {
		cfg.Edge = "ashburn"
	}
	if cfg.Region == "" {
		cfg.Region = "us1"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("twilio: config: %w", err)
	}
	c := &Carrier{cfg: cfg, next: http.DefaultTransport, pricing: cfg.Pricing.WithDefaults()}
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		c.next = cfg.HTTPClient.Transport
	}
	if cfg.APIBase != "" {
		c.base, _ = parseBase(cfg.APIBase)
	}
	return c, nil
}

// Name returns "twilio".
func (c *Carrier) Name() string { return Name }

// op is one adapter operation: twilio-go services bound to ctx, and the
// status of the last HTTP answer (twilio-go hides it when the body of an
// error is not Twilio JSON, e.g. a proxy's 502 page).
type op struct {
	name   string
	ctx    context.Context
	api    *api.ApiService
	routes *routes.ApiService
	tr     *transport
}

func (c *Carrier) begin(ctx context.Context, name string) *op {
	tr := &transport{ctx: ctx, base: c.base, next: c.next}
	hc := &http.Client{
		Transport:     tr,
		Timeout:       c.cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	cl := &client.Client{Credentials: client.NewCredentials(c.cfg.AccountSID, c.cfg.AuthToken), HTTPClient: hc}
	cl.SetAccountSid(c.cfg.AccountSID)
	rh := client.NewRequestHandler(cl)
	rh.Edge = c.cfg.Edge // never a region alone: see package doc
	rh.Region = c.cfg.Region
	return &op{name: name, ctx: ctx, api: api.NewApiService(rh), routes: routes.NewApiService(rh), tr: tr}
}

// transport binds a context to twilio-go's requests and rewrites their
// scheme and host to the configured API base.
type transport struct {
	ctx        context.Context
	base       *url.URL
	next       http.RoundTripper
	lastStatus int
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(t.ctx)
	if t.base != nil {
		r.Header.Set("X-Forwarded-Host", req.URL.Host)
		r.URL.Scheme = t.base.Scheme
		r.URL.Host = t.base.Host
		if t.base.Path != "" {
			r.URL.Path = t.base.Path + r.URL.Path
			if r.URL.RawPath != "" {
				r.URL.RawPath = t.base.Path + r.URL.RawPath
			}
		}
		r.Host = t.base.Host
	}
	resp, err := t.next.RoundTrip(r)
	if resp != nil {
		t.lastStatus = resp.StatusCode
	}
	return resp, err
}

// ValidateCredentials fetches the account. A 401 is ErrCredentialsRejected
// ("credentials rejected by Twilio").
func (c *Carrier) ValidateCredentials(ctx context.Context) error {
	o := c.begin(ctx, "validate credentials")
	acct, err := o.api.FetchAccount(c.cfg.AccountSID)
	if err != nil {
		return o.fail(err, carrier.ErrCredentialsRejected)
	}
	if acct.Status != nil && *acct.Status != "active" {
		return &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrCredentialsRejected,
			Detail: fmt.Sprintf("Twilio account is %s", *acct.Status)}
	}
	return nil
}

// fail maps a twilio-go error to a *carrier.Error; notFound is the kind a 404
// means for this operation (ErrNotFound, ErrNotAvailable, ...).
func (o *op) fail(err error, notFound error) error {
	return classify(o.ctx, o.name, err, o.tr.lastStatus, notFound)
}

func classify(ctx context.Context, opName string, err error, lastStatus int, notFound error) error {
	e := &carrier.Error{Carrier: Name, Op: opName}
	var rest *client.TwilioRestError
	var v1 *client.RestErrorV1
	status := 0
	detail := ""
	switch {
	case errors.As(err, &rest):
		status = rest.Status
		if status == 0 {
			status = lastStatus
		}
		detail = fmt.Sprintf("Twilio error %d: %s", rest.Code, rest.Message)
	case errors.As(err, &v1):
		status = v1.HttpStatusCode
		detail = fmt.Sprintf("Twilio error %d: %s", v1.Code, v1.Message)
	case errors.Is(err, context.Canceled) && ctx.Err() == context.Canceled:
		return fmt.Errorf("%s: %s: %w", Name, opName, context.Canceled)
	case isTimeout(err):
		e.Kind = carrier.ErrTimeout
		e.Detail = "no answer from Twilio in time"
		return e
	case lastStatus != 0:
		// An error answer that is not Twilio JSON (a proxy's page).
		status = lastStatus
		detail = fmt.Sprintf("HTTP %d with an unreadable body", lastStatus)
	default:
		e.Kind = carrier.ErrUnavailable
		e.Detail = connDetail(err)
		return e
	}
	e.Detail = detail
	switch {
	case status == http.StatusUnauthorized:
		e.Kind = carrier.ErrCredentialsRejected
		e.Detail = "credentials rejected by Twilio"
	case status == http.StatusForbidden:
		e.Kind = carrier.ErrCredentialsRejected
		e.Detail = "credentials rejected by Twilio: " + detail
	case status == http.StatusNotFound:
		e.Kind = notFound
	case status == http.StatusTooManyRequests || status >= 500:
		e.Kind = carrier.ErrUnavailable
	case status == http.StatusRequestTimeout || status == http.StatusGatewayTimeout:
		e.Kind = carrier.ErrTimeout
	case status >= 400:
		e.Kind = carrier.ErrInvalidQuery
	default:
		e.Kind = carrier.ErrUnavailable
	}
	return e
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func connDetail(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "DNS lookup failed: " + dns.Err
	}
	return "request failed"
}

// --- search ---

const maxPageSize = 100

// Search lists numbers for sale. Country is required; AreaCode (US/CA, three
// digits) and Features filter; Type local (default), mobile, toll_free or
// national.
// Twilio does not price numbers in its search, so MonthlyCost comes from
// Config.Pricing.
func (c *Carrier) Search(ctx context.Context, q carrier.SearchQuery) (carrier.SearchPage, error) {
	const opName = "search"
	bad := func(format string, a ...any) error {
		return &carrier.Error{Carrier: Name, Op: opName, Kind: carrier.ErrInvalidQuery, Detail: fmt.Sprintf(format, a...)}
	}
	country := strings.ToUpper(strings.TrimSpace(q.Country))
	if !isAlpha2(country) {
		return carrier.SearchPage{}, bad("country must be an ISO 3166 alpha-2 code, got %q", q.Country)
	}
	typ := q.Type
	if typ == "" {
		typ = carrier.TypeLocal
	}
	switch typ {
	case carrier.TypeLocal, carrier.TypeMobile, carrier.TypeTollFree, carrier.TypeNational:
	default:
		return carrier.SearchPage{}, bad("number type %q is not searchable at Twilio (want local, mobile, toll_free or national)", q.Type)
	}
	areaCode, err := ParseAreaCode(q.AreaCode)
	if err != nil {
		return carrier.SearchPage{}, bad("%v", err)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 20
	}
	if limit > maxPageSize {
		return carrier.SearchPage{}, bad("limit must be between 1 and %d", maxPageSize)
	}
	var tok PageToken
	if q.PageToken != "" {
		tok, err = DecodePageToken(q.PageToken)
		if err != nil || tok.Type != typ {
			return carrier.SearchPage{}, bad("page token is not valid for this search")
		}
	}
	o := c.begin(ctx, opName)
	pageNum := ""
	if tok.Page > 0 {
		pageNum = strconv.Itoa(tok.Page)
	}
	var raws []rawAvailable
	var next *string
	switch typ {
	case carrier.TypeLocal:
		p := &api.ListAvailablePhoneNumberLocalParams{}
		p.SetPageSize(limit)
		if areaCode != 0 {
			p.SetAreaCode(areaCode)
		}
		setFeatures(q.Features, p.SetVoiceEnabled, p.SetSmsEnabled, p.SetMmsEnabled)
		resp, err := o.api.PageAvailablePhoneNumberLocal(country, p, tok.Token, pageNum)
		if err != nil {
			return carrier.SearchPage{}, o.fail(err, carrier.ErrInvalidQuery)
		}
		for _, n := range resp.AvailablePhoneNumbers {
			raws = append(raws, rawAvailable{n.PhoneNumber, n.IsoCountry, n.Region, n.Locality, n.Capabilities})
		}
		next = resp.NextPageUri
	case carrier.TypeMobile:
		p := &api.ListAvailablePhoneNumberMobileParams{}
		p.SetPageSize(limit)
		if areaCode != 0 {
			p.SetAreaCode(areaCode)
		}
		setFeatures(q.Features, p.SetVoiceEnabled, p.SetSmsEnabled, p.SetMmsEnabled)
		resp, err := o.api.PageAvailablePhoneNumberMobile(country, p, tok.Token, pageNum)
		if err != nil {
			return carrier.SearchPage{}, o.fail(err, carrier.ErrInvalidQuery)
		}
		for _, n := range resp.AvailablePhoneNumbers {
			raws = append(raws, rawAvailable{n.PhoneNumber, n.IsoCountry, n.Region, n.Locality, n.Capabilities})
		}
		next = resp.NextPageUri
	case carrier.TypeTollFree:
		p := &api.ListAvailablePhoneNumberTollFreeParams{}
		p.SetPageSize(limit)
		if areaCode != 0 {
			p.SetAreaCode(areaCode)
		}
		setFeatures(q.Features, p.SetVoiceEnabled, p.SetSmsEnabled, p.SetMmsEnabled)
		resp, err := o.api.PageAvailablePhoneNumberTollFree(country, p, tok.Token, pageNum)
		if err != nil {
			return carrier.SearchPage{}, o.fail(err, carrier.ErrInvalidQuery)
		}
		for _, n := range resp.AvailablePhoneNumbers {
			raws = append(raws, rawAvailable{n.PhoneNumber, n.IsoCountry, n.Region, n.Locality, n.Capabilities})
		}
		next = resp.NextPageUri
	case carrier.TypeNational:
		p := &api.ListAvailablePhoneNumberNationalParams{}
		p.SetPageSize(limit)
		if areaCode != 0 {
			p.SetAreaCode(areaCode)
		}
		setFeatures(q.Features, p.SetVoiceEnabled, p.SetSmsEnabled, p.SetMmsEnabled)
		resp, err := o.api.PageAvailablePhoneNumberNational(country, p, tok.Token, pageNum)
		if err != nil {
			return carrier.SearchPage{}, o.fail(err, carrier.ErrInvalidQuery)
		}
		for _, n := range resp.AvailablePhoneNumbers {
			raws = append(raws, rawAvailable{n.PhoneNumber, n.IsoCountry, n.Region, n.Locality, n.Capabilities})
		}
		next = resp.NextPageUri
	}
	out := carrier.SearchPage{Numbers: make([]carrier.AvailableNumber, 0, len(raws))}
	cost := c.pricing.MonthlyCost(typ)
	for _, r := range raws {
		if r.phone == nil || *r.phone == "" {
			continue
		}
		an := carrier.AvailableNumber{
			PhoneNumber: *r.phone, Country: str(r.country), Region: str(r.region), Locality: str(r.locality),
			Type: typ, MonthlyCost: cost, Carrier: Name,
		}
		if an.Country == "" {
			an.Country = country
		}
		if r.caps != nil {
			an.Features = carrier.Features{Voice: r.caps.Voice, SMS: r.caps.Sms, MMS: r.caps.Mms}
		}
		out.Numbers = append(out.Numbers, an)
	}
	if next != nil && *next != "" {
		if t, ok := tokenFromNextURI(*next, typ); ok {
			out.NextPageToken = t.Encode()
		}
	}
	return out, nil
}

type rawAvailable struct {
	phone, country, region, locality *string
	caps                             *api.ApiV2010AccountAvailablePhoneNumberCountryAvailablePhoneNumberLocalCapabilities
}

func setFeatures[P any](f carrier.Features, voice, sms, mms func(bool) P) {
	if f.Voice {
		voice(true)
	}
	if f.SMS {
		sms(true)
	}
	if f.MMS {
		mms(true)
	}
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func isAlpha2(s string) bool {
	return len(s) == 2 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z'
}

// ParseAreaCode parses a North American area code ("" is none): three
// digits, the first 2-9, optionally in parentheses.
func ParseAreaCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "("), ")")
	if len(s) != 3 {
		return 0, fmt.Errorf("area code must be three digits, got %q", truncate(s, 16))
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("area code must be three digits, got %q", truncate(s, 16))
		}
	}
	if s[0] < '2' {
		return 0, fmt.Errorf("area code %q cannot start with 0 or 1", s)
	}
	n, _ := strconv.Atoi(s)
	return n, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// PageToken is the decoded form of a Twilio search page token: the number
// type it belongs to, Twilio's Page index and PageToken.
type PageToken struct {
	Type  string
	Page  int
	Token string
}

const maxPage = 10000

var pageTokenRe = regexp.MustCompile(`^[A-Za-z0-9_\-]{0,128}$`)

// Encode returns the opaque token handed to callers.
func (t PageToken) Encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte("tw1|" + t.Type + "|" + strconv.Itoa(t.Page) + "|" + t.Token))
}

// DecodePageToken parses a token made by Encode; anything else is an error.
func DecodePageToken(s string) (PageToken, error) {
	if len(s) > 512 {
		return PageToken{}, errors.New("page token too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return PageToken{}, errors.New("page token is not valid")
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 4 || parts[0] != "tw1" {
		return PageToken{}, errors.New("page token is not valid")
	}
	switch parts[1] {
	case carrier.TypeLocal, carrier.TypeMobile, carrier.TypeTollFree, carrier.TypeNational:
	default:
		return PageToken{}, errors.New("page token is not valid")
	}
	pg, err := strconv.Atoi(parts[2])
	if err != nil || pg < 1 || pg > maxPage || strconv.Itoa(pg) != parts[2] {
		return PageToken{}, errors.New("page token is not valid")
	}
	if !pageTokenRe.MatchString(parts[3]) {
		return PageToken{}, errors.New("page token is not valid")
	}
	return PageToken{Type: parts[1], Page: pg, Token: parts[3]}, nil
}

// tokenFromNextURI extracts Page and PageToken from Twilio's next_page_uri.
func tokenFromNextURI(next, typ string) (PageToken, bool) {
	u, err := url.Parse(next)
	if err != nil {
		return PageToken{}, false
	}
	q := u.Query()
	pg, err := strconv.Atoi(q.Get("Page"))
	if err != nil || pg < 1 || pg > maxPage {
		return PageToken{}, false
	}
	tok := q.Get("PageToken")
	if !pageTokenRe.MatchString(tok) {
		return PageToken{}, false
	}
	return PageToken{Type: typ, Page: pg, Token: tok}, true
}

// --- owned numbers ---

// maxOwnedPages bounds ListOwned (1000 numbers a page).
const maxOwnedPages = 100

// ListOwned lists every number on the account with its current settings.
func (c *Carrier) ListOwned(ctx context.Context) ([]carrier.OwnedNumber, error) {
	o := c.begin(ctx, "list numbers")
	nums, err := o.listIncoming("")
	if err != nil {
		return nil, err
	}
	out := make([]carrier.OwnedNumber, 0, len(nums))
	for i := range nums {
		out = append(out, owned(&nums[i]))
	}
	return out, nil
}

func (o *op) listIncoming(filter string) ([]api.ApiV2010IncomingPhoneNumber, error) {
	p := &api.ListIncomingPhoneNumberParams{}
	if filter != "" {
		p.SetPhoneNumber(filter)
		p.SetPageSize(50)
	} else {
		p.SetPageSize(1000)
	}
	var out []api.ApiV2010IncomingPhoneNumber
	token, pageNum := "", ""
	for i := 0; i < maxOwnedPages; i++ {
		resp, err := o.api.PageIncomingPhoneNumber(p, token, pageNum)
		if err != nil {
			return nil, o.fail(err, carrier.ErrNotFound)
		}
		out = append(out, resp.IncomingPhoneNumbers...)
		if resp.NextPageUri == nil || *resp.NextPageUri == "" {
			return out, nil
		}
		t, ok := tokenFromNextURI(*resp.NextPageUri, carrier.TypeLocal)
		if !ok {
			return nil, &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrUnavailable, Detail: "Twilio answered a next page this client cannot follow"}
		}
		token, pageNum = t.Token, strconv.Itoa(t.Page)
	}
	return nil, &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrUnavailable, Detail: fmt.Sprintf("more than %d pages of numbers", maxOwnedPages)}
}

// find returns the account's IncomingPhoneNumber for e164.
func (o *op) find(e164 string) (*api.ApiV2010IncomingPhoneNumber, error) {
	if !phone.IsE164(e164) {
		return nil, &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrInvalidQuery, Detail: "phone number must be E.164"}
	}
	nums, err := o.listIncoming(e164)
	if err != nil {
		return nil, err
	}
	for i := range nums {
		if str(nums[i].PhoneNumber) == e164 && str(nums[i].Sid) != "" {
			return &nums[i], nil
		}
	}
	return nil, &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrNotFound, Detail: e164Hint(e164)}
}

// e164Hint names a number in error details by its last four digits only.
func e164Hint(e164 string) string {
	if len(e164) > 4 {
		return "number ending " + e164[len(e164)-4:] + " is not on the account"
	}
	return "number is not on the account"
}

func owned(n *api.ApiV2010IncomingPhoneNumber) carrier.OwnedNumber {
	on := carrier.OwnedNumber{PhoneNumber: str(n.PhoneNumber), CarrierID: str(n.Sid), Config: configOf(n)}
	if n.Capabilities != nil {
		on.Features = carrier.Features{Voice: n.Capabilities.Voice, SMS: n.Capabilities.Sms, MMS: n.Capabilities.Mms}
	}
	return on
}

func configOf(n *api.ApiV2010IncomingPhoneNumber) carrier.NumberConfig {
	return carrier.NumberConfig{
		VoiceURL: str(n.VoiceUrl), VoiceMethod: str(n.VoiceMethod),
		SMSURL: str(n.SmsUrl), SMSMethod: str(n.SmsMethod),
		StatusCallback:      str(n.StatusCallback),
		VoiceApplicationSID: str(n.VoiceApplicationSid),
		SMSApplicationSID:   str(n.SmsApplicationSid),
		TrunkSID:            str(n.TrunkSid),
	}
}

func checkConfig(cfg carrier.NumberConfig) error {
	for _, m := range []string{cfg.VoiceMethod, cfg.SMSMethod} {
		if m != "" && m != http.MethodGet && m != http.MethodPost {
			return fmt.Errorf("method %q: want GET or POST", m)
		}
	}
	for _, s := range []string{cfg.VoiceURL, cfg.SMSURL, cfg.StatusCallback} {
		if s == "" {
			continue
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("webhook URL %q is not an absolute http(s) URL", truncate(s, 64))
		}
	}
	return nil
}

// Buy purchases e164 and points its voice and SMS webhooks at cfg.
func (c *Carrier) Buy(ctx context.Context, e164 string, cfg carrier.NumberConfig) (carrier.OwnedNumber, error) {
	const opName = "buy"
	if !phone.IsE164(e164) {
		return carrier.OwnedNumber{}, &carrier.Error{Carrier: Name, Op: opName, Kind: carrier.ErrInvalidQuery, Detail: "phone number must be E.164"}
	}
	if err := checkConfig(cfg); err != nil {
		return carrier.OwnedNumber{}, &carrier.Error{Carrier: Name, Op: opName, Kind: carrier.ErrInvalidQuery, Detail: err.Error()}
	}
	o := c.begin(ctx, opName)
	p := &api.CreateIncomingPhoneNumberParams{}
	p.SetPhoneNumber(e164)
	if cfg.VoiceURL != "" {
		p.SetVoiceUrl(cfg.VoiceURL)
	}
	if cfg.VoiceMethod != "" {
		p.SetVoiceMethod(cfg.VoiceMethod)
	}
	if cfg.SMSURL != "" {
		p.SetSmsUrl(cfg.SMSURL)
	}
	if cfg.SMSMethod != "" {
		p.SetSmsMethod(cfg.SMSMethod)
	}
	if cfg.StatusCallback != "" {
		p.SetStatusCallback(cfg.StatusCallback)
	}
	n, err := o.api.CreateIncomingPhoneNumber(p)
	if err != nil {
		err = o.fail(err, carrier.ErrNotAvailable)
		// Twilio answers 400 (21421/21422) for a number it cannot sell.
		var ce *carrier.Error
		if errors.As(err, &ce) && ce.Kind == carrier.ErrInvalidQuery {
			ce.Kind = carrier.ErrNotAvailable
		}
		return carrier.OwnedNumber{}, err
	}
	return owned(n), nil
}

// Configure points e164's voice and SMS webhooks at cfg and returns the
// settings it had before. A TwiML App or SIP trunk on the number is cleared
// (it would take precedence over the URLs) and reported in previous, so that
// Configure(ctx, e164, previous) restores the number exactly.
func (c *Carrier) Configure(ctx context.Context, e164 string, cfg carrier.NumberConfig) (carrier.NumberConfig, error) {
	o := c.begin(ctx, "configure")
	if err := checkConfig(cfg); err != nil {
		return carrier.NumberConfig{}, &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrInvalidQuery, Detail: err.Error()}
	}
	n, err := o.find(e164)
	if err != nil {
		return carrier.NumberConfig{}, err
	}
	prev := configOf(n)
	p := &api.UpdateIncomingPhoneNumberParams{}
	p.SetVoiceUrl(cfg.VoiceURL)
	p.SetSmsUrl(cfg.SMSURL)
	p.SetStatusCallback(cfg.StatusCallback)
	if cfg.VoiceMethod != "" {
		p.SetVoiceMethod(cfg.VoiceMethod)
	}
	if cfg.SMSMethod != "" {
		p.SetSmsMethod(cfg.SMSMethod)
	}
	if cfg.VoiceApplicationSID != "" || prev.VoiceApplicationSID != "" {
		p.SetVoiceApplicationSid(cfg.VoiceApplicationSID)
	}
	if cfg.SMSApplicationSID != "" || prev.SMSApplicationSID != "" {
		p.SetSmsApplicationSid(cfg.SMSApplicationSID)
	}
	if cfg.TrunkSID != "" || prev.TrunkSID != "" {
		p.SetTrunkSid(cfg.TrunkSID)
	}
	if _, err := o.api.UpdateIncomingPhoneNumber(str(n.Sid), p); err != nil {
		return carrier.NumberConfig{}, o.fail(err, carrier.ErrNotFound)
	}
	return prev, nil
}

// SetRegion sets the number's voice region (Routes v2 VoiceRegion: us1,
// ie1 or au1).
func (c *Carrier) SetRegion(ctx context.Context, e164, region string) error {
	o := c.begin(ctx, "set region")
	if !contains(VoiceRegions, region) {
		return &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrInvalidQuery,
			Detail: fmt.Sprintf("voice region %q is not one of us1, ie1, au1", truncate(region, 16))}
	}
	if !phone.IsE164(e164) {
		return &carrier.Error{Carrier: Name, Op: o.name, Kind: carrier.ErrInvalidQuery, Detail: "phone number must be E.164"}
	}
	p := &routes.UpdatePhoneNumberParams{}
	p.SetVoiceRegion(region)
	if _, err := o.routes.UpdatePhoneNumber(e164, p); err != nil {
		return o.fail(err, carrier.ErrNotFound)
	}
	return nil
}

// Release removes the number from the account.
func (c *Carrier) Release(ctx context.Context, e164 string) error {
	o := c.begin(ctx, "release")
	n, err := o.find(e164)
	if err != nil {
		return err
	}
	if err := o.api.DeleteIncomingPhoneNumber(str(n.Sid), nil); err != nil {
		return o.fail(err, carrier.ErrNotFound)
	}
	return nil
}
