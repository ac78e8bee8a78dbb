package phone

import "github.com/nyaruka/phonenumbers"

// Classes of numbers that outbound policy treats apart.
const (
	ClassPremium    = "premium_rate"
	ClassSharedCost = "shared_cost"
	ClassUAN        = "uan"
)

// Classify returns the ISO 3166 alpha-2 country of a valid E.164 number
// and, when it is a premium-rate, shared-cost or universal access number
// (libphonenumber's types), that class ("" otherwise). ok is false for a
// number that is not valid.
func Classify(e164 string) (country, class string, ok bool) {
	num, err := phonenumbers.Parse(e164, "")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", "", false
	}
	country = phonenumbers.GetRegionCodeForNumber(num)
	switch phonenumbers.GetNumberType(num) {
	case phonenumbers.PREMIUM_RATE:
		class = ClassPremium
	case phonenumbers.SHARED_COST:
		class = ClassSharedCost
	case phonenumbers.UAN:
		class = ClassUAN
	}
	return country, class, true
}
