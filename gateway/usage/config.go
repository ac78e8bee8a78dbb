package usage

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// DefaultRow is the price table's row for every country not listed.
const DefaultRow = "default"

// Config is the `usage:` section: what outbound minutes cost.
type Config struct {
	// Prices are credits per started minute of an answered outbound call,
	// by destination country (ISO 3166 alpha-2), with a "default" row for
	// every other destination. 0 makes a destination free.
	Prices map[string]int64 `yaml:"prices" help:"credits per started minute of an outbound call by destination country (ISO 3166 alpha-2, e.g. US: 2), with a default row for every other country; inbound calls are free"`
}

// DefaultConfig charges 1 credit per started minute to any destination.
func DefaultConfig() Config { return Config{Prices: map[string]int64{DefaultRow: 1}} }

// maxPrice bounds one minute's price (credits are integers; 10^6 a
// minute is far beyond any tariff and keeps products far from overflow).
const maxPrice = 1_000_000

// Validate reports every bad row at once, each named by its key.
func (c Config) Validate() error {
	var errs []error
	if _, ok := c.Prices[DefaultRow]; !ok {
		errs = append(errs, errors.New(`usage.prices: a "default" row is required (the price of destinations not listed)`))
	}
	keys := make([]string, 0, len(c.Prices))
	for k := range c.Prices {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	supported := phonenumbers.GetSupportedRegions()
	for _, k := range keys {
		v := c.Prices[k]
		if k != DefaultRow && !supported[k] {
			hint := ""
			if supported[strings.ToUpper(k)] {
				hint = fmt.Sprintf(" (write %s)", strings.ToUpper(k))
			}
			errs = append(errs, fmt.Errorf("usage.prices.%s: not an ISO 3166 alpha-2 country code with phone numbers%s", k, hint))
		}
		if v < 0 || v > maxPrice {
			errs = append(errs, fmt.Errorf("usage.prices.%s: %d must be between 0 and %d credits per minute", k, v, maxPrice))
		}
	}
	return errors.Join(errs...)
}
