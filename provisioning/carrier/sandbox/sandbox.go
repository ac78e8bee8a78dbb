// Package sandbox is a built-in carrier with a deterministic inventory for
// any country and area code that libphonenumber knows, so that a new user
// can search, buy, assign and call without a carrier account. Numbers are
// real-looking: valid for their country, with their real type and
// geocoded region.
package sandbox

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/nyaruka/phonenumbers"

	"github.com/callgate/callgate/phone"
	"github.com/callgate/callgate/provisioning/carrier"
)

// Prices in credits per month by number type.
var DefaultPrices = map[string]int64{
	carrier.TypeLocal:    100,
	carrier.TypeNational: 100,
	carrier.TypeMobile:   150,
	carrier.TypeTollFree: 200,
}

// Options configure the sandbox.
type Options struct {
	// IsOwned reports numbers already owned by anyone; they never appear
	// in search results. May be nil.
	IsOwned func(ctx context.Context, e164 string) (bool, error)
	// Prices overrides DefaultPrices.
	Prices map[string]int64
}

// Carrier is the sandbox carrier.
type Carrier struct {
	opts Options

	mu     sync.Mutex
	config map[string]carrier.NumberConfig // numbers "bought" and their settings
}

var _ carrier.Carrier = (*Carrier)(nil)

// New returns a sandbox carrier.
func New(o Options) *Carrier {
	if o.Prices == nil {
		o.Prices = DefaultPrices
	}
	return &Carrier{opts: o, config: map[string]carrier.NumberConfig{}}
}

// Name implements carrier.Carrier.
func (c *Carrier) Name() string { return "sandbox" }

// ValidateCredentials implements carrier.Carrier: the sandbox has none.
func (c *Carrier) ValidateCredentials(context.Context) error { return nil }

// maxScan bounds the candidates examined for one page.
const maxScan = 4000

// Search implements carrier.Carrier. Inventory for (country, type, area
// code) is an endless deterministic sequence of valid numbers; the page
// token is the position in that sequence.
func (c *Carrier) Search(ctx context.Context, q carrier.SearchQuery) (carrier.SearchPage, error) {
	country := strings.ToUpper(q.Country)
	if !supportedRegion(country) {
		return carrier.SearchPage{}, &carrier.Error{Carrier: "sandbox", Op: "search", Kind: carrier.ErrInvalidQuery, Field: "country", Detail: fmt.Sprintf("country %q is not a supported ISO 3166 code", q.Country)}
	}
	typ := q.Type
	if typ == "" {
		typ = carrier.TypeLocal
	}
	lpType, ok := libType(typ)
	if !ok {
		return carrier.SearchPage{}, &carrier.Error{Carrier: "sandbox", Op: "search", Kind: carrier.ErrInvalidQuery, Field: "type", Detail: fmt.Sprintf("type %q is not one of local, mobile, toll_free, national", q.Type)}
	}
	if err := validAreaCode(country, q.AreaCode); err != nil {
		return carrier.SearchPage{}, &carrier.Error{Carrier: "sandbox", Op: "search", Kind: carrier.ErrInvalidQuery, Field: "area_code", Detail: err.Error()}
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 20
	}
	start := uint64(0)
	if q.PageToken != "" {
		var err error
		start, err = decodeToken(q.PageToken, country, typ, q.AreaCode)
		if err != nil {
			return carrier.SearchPage{}, &carrier.Error{Carrier: "sandbox", Op: "search", Kind: carrier.ErrInvalidQuery, Field: "page_token", Detail: err.Error()}
		}
	}
	gen, ok := newGenerator(country, typ, lpType, q.AreaCode)
	if !ok {
		return carrier.SearchPage{}, nil // no numbers of that type there
	}
	var page carrier.SearchPage
	i := start
	for ; i < start+maxScan && i < gen.space && len(page.Numbers) < limit; i++ {
		if err := ctx.Err(); err != nil {
			return carrier.SearchPage{}, err
		}
		n, ok := c.describe(gen.at(i), typ)
		if !ok || !n.Features.Covers(q.Features) {
			continue
		}
		if c.opts.IsOwned != nil {
			owned, err := c.opts.IsOwned(ctx, n.PhoneNumber)
			if err != nil {
				return carrier.SearchPage{}, err
			}
			if owned {
				continue
			}
		}
		page.Numbers = append(page.Numbers, n)
	}
	if i < gen.space && len(page.Numbers) > 0 {
		page.NextPageToken = encodeToken(i, country, typ, q.AreaCode)
	}
	return page, nil
}

// Describe returns the sandbox listing for a number, as Search would show
// it; ok is false when the sandbox does not sell it.
func (c *Carrier) Describe(e164 string) (carrier.AvailableNumber, bool) {
	info, err := phone.Describe(e164)
	if err != nil {
		return carrier.AvailableNumber{}, false
	}
	return c.describe(info.E164, info.Type)
}

func (c *Carrier) describe(e164, wantType string) (carrier.AvailableNumber, bool) {
	num, err := phonenumbers.Parse(e164, "")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return carrier.AvailableNumber{}, false
	}
	t := phonenumbers.GetNumberType(num)
	typ := phone.TypeName(t)
	if wantType != typ && !(t == phonenumbers.FIXED_LINE_OR_MOBILE && (wantType == carrier.TypeMobile || wantType == carrier.TypeLocal)) {
		return carrier.AvailableNumber{}, false
	}
	region := phonenumbers.GetRegionCodeForNumber(num)
	geo, _ := phonenumbers.GetGeocodingForNumber(num, "en")
	locality := geo
	if typ == carrier.TypeTollFree || typ == carrier.TypeMobile {
		locality = ""
	}
	if geo == "" {
		geo = region
	}
	f := carrier.Features{Voice: true, SMS: true, MMS: typ == carrier.TypeMobile || typ == carrier.TypeLocal && region == "US"}
	if typ == carrier.TypeNational {
		f.SMS = false
	}
	return carrier.AvailableNumber{
		PhoneNumber: phonenumbers.Format(num, phonenumbers.E164),
		Country:     region,
		Region:      geo,
		Locality:    locality,
		Type:        wantType,
		Features:    f,
		MonthlyCost: c.opts.Prices[wantType],
		Carrier:     "sandbox",
	}, true
}

// Buy implements carrier.Carrier. Whether a number is free is decided by
// callgate's claim, not here; the sandbox sells any number it lists.
func (c *Carrier) Buy(_ context.Context, e164 string, cfg carrier.NumberConfig) (carrier.OwnedNumber, error) {
	n, ok := c.Describe(e164)
	if !ok {
		return carrier.OwnedNumber{}, &carrier.Error{Carrier: "sandbox", Op: "buy", Kind: carrier.ErrNotAvailable, Detail: e164 + " is not in the sandbox inventory"}
	}
	c.mu.Lock()
	c.config[e164] = cfg
	c.mu.Unlock()
	return carrier.OwnedNumber{PhoneNumber: e164, CarrierID: "SB" + strings.TrimPrefix(e164, "+"), Features: n.Features, Config: cfg}, nil
}

// ListOwned implements carrier.Carrier (numbers bought through this process).
func (c *Carrier) ListOwned(context.Context) ([]carrier.OwnedNumber, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]carrier.OwnedNumber, 0, len(c.config))
	for n, cfg := range c.config {
		out = append(out, carrier.OwnedNumber{PhoneNumber: n, CarrierID: "SB" + strings.TrimPrefix(n, "+"), Config: cfg})
	}
	return out, nil
}

// Configure implements carrier.Carrier.
func (c *Carrier) Configure(_ context.Context, e164 string, cfg carrier.NumberConfig) (carrier.NumberConfig, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.config[e164]
	c.config[e164] = cfg
	return prev, nil
}

// SetRegion implements carrier.Carrier: sandbox numbers take any callgate
// region name; nothing to do at the carrier.
func (c *Carrier) SetRegion(context.Context, string, string) error { return nil }

// Release implements carrier.Carrier.
func (c *Carrier) Release(_ context.Context, e164 string) error {
	c.mu.Lock()
	delete(c.config, e164)
	c.mu.Unlock()
	return nil
}

func libType(t string) (phonenumbers.PhoneNumberType, bool) {
	switch t {
	case carrier.TypeLocal:
		return phonenumbers.FIXED_LINE, true
	case carrier.TypeMobile:
		return phonenumbers.MOBILE, true
	case carrier.TypeTollFree:
		return phonenumbers.TOLL_FREE, true
	case carrier.TypeNational:
		// libphonenumber has no "national" type; callgate uses it for
		// nationally reachable non-geographic numbers.
		return phonenumbers.UAN, true
	}
	return 0, false
}

func supportedRegion(cc string) bool {
	if len(cc) != 2 {
		return false
	}
	return phonenumbers.GetSupportedRegions()[cc]
}

// validAreaCode rejects area codes that cannot exist: non-digits, wrong
// length, and for NANP countries anything that is not [2-9]XX.
func validAreaCode(country, ac string) error {
	if ac == "" {
		return nil
	}
	if len(ac) > 5 {
		return fmt.Errorf("area_code %q is longer than 5 digits", ac)
	}
	for _, c := range ac {
		if c < '0' || c > '9' {
			return fmt.Errorf("area_code %q must be digits only", ac)
		}
	}
	if phonenumbers.GetCountryCodeForRegion(country) == 1 {
		if len(ac) != 3 || ac[0] < '2' {
			return fmt.Errorf("area_code %q is not a North American area code (three digits, first 2-9)", ac)
		}
	}
	return nil
}

// generator enumerates candidate numbers: a national prefix (area code or
// the prefix of libphonenumber's example number) followed by a
// subscriber part walked in a scrambled but bijective order.
type generator struct {
	cc     int
	prefix string
	digits int    // subscriber digits after prefix
	space  uint64 // 10^digits
	stride uint64
	offset uint64
}

func newGenerator(country, typ string, t phonenumbers.PhoneNumberType, areaCode string) (*generator, bool) {
	ex := phonenumbers.GetExampleNumberForType(country, t)
	if ex == nil && t == phonenumbers.FIXED_LINE {
		ex = phonenumbers.GetExampleNumberForType(country, phonenumbers.FIXED_LINE_OR_MOBILE)
	}
	if ex == nil {
		return nil, false
	}
	nsn := phonenumbers.GetNationalSignificantNumber(ex)
	prefix := areaCode
	if prefix == "" {
		keep := len(nsn) - 7
		if keep < 1 {
			keep = 1
		}
		if keep > 3 {
			keep = 3
		}
		prefix = nsn[:keep]
	}
	digits := len(nsn) - len(prefix)
	if digits < 1 {
		return nil, false
	}
	if digits > 9 {
		digits = 9
		prefix = prefix + nsn[len(prefix):len(nsn)-9]
	}
	space := uint64(1)
	for i := 0; i < digits; i++ {
		space *= 10
	}
	seed := fnv(country + "|" + typ + "|" + prefix)
	return &generator{
		cc:     int(phonenumbers.GetCountryCodeForRegion(country)),
		prefix: prefix,
		digits: digits,
		space:  space,
		stride: 7919, // prime, coprime with 10: i*stride mod 10^k is a permutation
		offset: seed % space,
	}, true
}

func (g *generator) at(i uint64) string {
	sub := (i*g.stride + g.offset) % g.space
	s := strconv.FormatUint(sub, 10)
	if len(s) < g.digits {
		s = strings.Repeat("0", g.digits-len(s)) + s
	}
	return "+" + strconv.Itoa(g.cc) + g.prefix + s
}

func fnv(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

func encodeToken(pos uint64, country, typ, ac string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("v1|%s|%s|%s|%d", country, typ, ac, pos)))
}

func decodeToken(tok, country, typ, ac string) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, fmt.Errorf("page_token is not a token this server issued")
	}
	parts := strings.Split(string(b), "|")
	if len(parts) != 5 || parts[0] != "v1" {
		return 0, fmt.Errorf("page_token is not a token this server issued")
	}
	if parts[1] != country || parts[2] != typ || parts[3] != ac {
		return 0, fmt.Errorf("page_token belongs to another search (country, type or area_code changed)")
	}
	pos, err := strconv.ParseUint(parts[4], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("page_token is not a token this server issued")
	}
	return pos, nil
}
