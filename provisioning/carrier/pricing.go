package carrier

import (
	"fmt"
	"sort"
	"strings"
)

// Pricing is a monthly price in credits per number type (TypeLocal,
// TypeMobile, TypeTollFree, TypeNational). Carriers' search APIs do not
// return a price callgate can bill in credits (Twilio returns none per
// number, Telnyx returns USD), so adapters price numbers from this table.
type Pricing map[string]int64

// DefaultPricing is used for any type missing from a configured table:
// local 115, mobile 115, national 115, toll_free 215 credits a month.
func DefaultPricing() Pricing {
	return Pricing{TypeLocal: 115, TypeMobile: 115, TypeNational: 115, TypeTollFree: 215}
}

// MonthlyCost returns the monthly price of a number of type typ; an unknown
// or empty type costs as much as a local number.
func (p Pricing) MonthlyCost(typ string) int64 {
	if v, ok := p[typ]; ok {
		return v
	}
	def := DefaultPricing()
	if v, ok := def[typ]; ok {
		return v
	}
	if v, ok := p[TypeLocal]; ok {
		return v
	}
	return def[TypeLocal]
}

// WithDefaults returns a copy of p with the default price for every type it
// does not set.
func (p Pricing) WithDefaults() Pricing {
	out := DefaultPricing()
	for k, v := range p {
		out[k] = v
	}
	return out
}

// Validate reports unknown types and negative prices; key is the config key
// the table was read from (for example "carriers.twilio.pricing").
func (p Pricing) Validate(key string) error {
	var bad []string
	for k, v := range p {
		switch k {
		case TypeLocal, TypeMobile, TypeTollFree, TypeNational:
		default:
			bad = append(bad, fmt.Sprintf("%s.%s: unknown number type (want local, mobile, toll_free or national)", key, k))
			continue
		}
		if v < 0 {
			bad = append(bad, fmt.Sprintf("%s.%s: price must not be negative", key, k))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	return fmt.Errorf("%s", strings.Join(bad, "; "))
}
