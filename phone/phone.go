// Package phone parses and normalises telephone numbers to E.164.
//
// Inside callgate every number is E.164 ("+12282001234"). The edges (API,
// SIP, webhooks) accept the forms users and carriers send: "+1228...",
// "1228..." (country code without plus), national format with a default
// country, "tel:" and "sip:" URIs, with visual separators.
package phone

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// ErrInvalid is wrapped by every parse failure.
var ErrInvalid = errors.New("invalid phone number")

// MaxLen bounds the input accepted by Normalize; longer strings are refused
// before any parsing work.
const MaxLen = 128

// Normalize returns the E.164 form of s. defaultCountry (ISO 3166 alpha-2,
// e.g. "US") is used for national-format numbers; it may be empty, in which
// case a number without a country code is tried as "+" + digits.
func Normalize(s, defaultCountry string) (string, error) {
	if len(s) > MaxLen {
		return "", fmt.Errorf("%w: longer than %d characters", ErrInvalid, MaxLen)
	}
	raw := strings.TrimSpace(s)
	raw = stripURI(raw)
	if raw == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalid)
	}
	digits, plus, err := clean(raw)
	if err != nil {
		return "", err
	}
	if len(digits) < 3 || len(digits) > 15 {
		return "", fmt.Errorf("%w: %q has %d digits (E.164 allows up to 15)", ErrInvalid, s, len(digits))
	}
	var candidates []string
	if plus {
		candidates = []string{"+" + digits}
	} else {
		if defaultCountry != "" {
			candidates = append(candidates, digits)
		}
		candidates = append(candidates, "+"+digits)
	}
	for _, c := range candidates {
		region := defaultCountry
		if strings.HasPrefix(c, "+") {
			region = ""
		}
		num, err := phonenumbers.Parse(c, strings.ToUpper(region))
		if err != nil {
			continue
		}
		if !phonenumbers.IsValidNumber(num) {
			continue
		}
		return phonenumbers.Format(num, phonenumbers.E164), nil
	}
	return "", fmt.Errorf("%w: %q is not a valid number", ErrInvalid, s)
}

// stripURI removes a tel: or sip:/sips: scheme, the host part and any URI
// parameters, leaving the user part.
func stripURI(s string) string {
	l := strings.ToLower(s)
	switch {
	case strings.HasPrefix(l, "tel:"):
		s = s[4:]
	case strings.HasPrefix(l, "sip:"):
		s = s[4:]
	case strings.HasPrefix(l, "sips:"):
		s = s[5:]
	default:
		return s
	}
	if i := strings.IndexByte(s, '@'); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return s
}

// clean keeps digits and a leading plus, skipping visual separators
// (space, dot, dash, parentheses, slash). Any other character is an error.
func clean(s string) (digits string, plus bool, err error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '+' && b.Len() == 0 && !plus:
			plus = true
		case c == ' ' || c == '.' || c == '-' || c == '(' || c == ')' || c == '/':
		default:
			return "", false, fmt.Errorf("%w: unexpected character %q in %q", ErrInvalid, c, s)
		}
	}
	return b.String(), plus, nil
}

// Info describes a valid number using libphonenumber's metadata.
type Info struct {
	E164    string
	Country string // ISO 3166 alpha-2
	Region  string // geocoded description, e.g. "Mississippi"
	Type    string // local, mobile, toll_free, national
}

// Describe returns country, geocoded region and type of an E.164 number.
func Describe(e164 string) (Info, error) {
	num, err := phonenumbers.Parse(e164, "")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return Info{}, fmt.Errorf("%w: %q", ErrInvalid, e164)
	}
	info := Info{
		E164:    phonenumbers.Format(num, phonenumbers.E164),
		Country: phonenumbers.GetRegionCodeForNumber(num),
		Type:    TypeName(phonenumbers.GetNumberType(num)),
	}
	info.Region, _ = phonenumbers.GetGeocodingForNumber(num, "en")
	return info, nil
}

// TypeName maps libphonenumber's number types to callgate's four types.
func TypeName(t phonenumbers.PhoneNumberType) string {
	switch t {
	case phonenumbers.MOBILE:
		return "mobile"
	case phonenumbers.TOLL_FREE:
		return "toll_free"
	case phonenumbers.FIXED_LINE, phonenumbers.FIXED_LINE_OR_MOBILE:
		return "local"
	default:
		return "national"
	}
}

// Mask hides the middle digits of a number for logs: "+1228***1234".
func Mask(e164 string) string {
	if len(e164) <= 8 {
		return "***"
	}
	return e164[:5] + "***" + e164[len(e164)-4:]
}

// IsE164 reports whether s is already in E.164 form: "+" and 3 to 15
// digits, the first not zero. It is the one syntactic check of E.164 in
// callgate; it does not allocate and does not consult libphonenumber (a
// syntactically valid number may still be unassigned in its plan: use
// Normalize to check that).
func IsE164(s string) bool {
	if len(s) < 4 || len(s) > 16 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Parse is Normalize for the data plane: a string already in E.164 form
// (IsE164) is returned as is, without libphonenumber and without
// allocating; anything else goes through Normalize with defaultCountry.
func Parse(s, defaultCountry string) (string, bool) {
	if IsE164(s) {
		return s, true
	}
	if s == "" {
		return "", false
	}
	e, err := Normalize(s, defaultCountry)
	return e, err == nil
}

// InNANP reports whether the country (ISO 3166 alpha-2, either case) is in
// the North American Numbering Plan: calling code 1 (US, CA, PR, most of
// the Caribbean), fixed ten-digit national numbers.
func InNANP(country string) bool {
	if len(country) != 2 {
		return false
	}
	if country == "US" || country == "us" || country == "CA" || country == "ca" {
		return true
	}
	return phonenumbers.GetCountryCodeForRegion(strings.ToUpper(country)) == 1
}
