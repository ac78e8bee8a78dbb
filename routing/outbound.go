package routing

import (
	"strings"

	"github.com/callgate/callgate/phone"
)

// Rules of the outbound destination policy, as CheckDestination names
// them; edges turn them into SIP reason phrases and API problems.
const (
	RuleInvalidDestination = "invalid_destination" // not a valid phone number
	RuleCountry            = "country_not_allowed" // destination country not in allowed_countries
	RulePremium            = "premium_not_allowed" // premium-rate destination
	RuleSharedCost         = "shared_cost_not_allowed"
	RuleUAN                = "uan_not_allowed"
)

// RulePhrase is the SIP reason phrase / problem title of a rule.
func RulePhrase(rule string) string {
	switch rule {
	case RuleInvalidDestination:
		return "Destination is not a valid number"
	case RuleCountry:
		return "Destination country not allowed"
	case RulePremium:
		return "Premium-rate destination not allowed"
	case RuleSharedCost:
		return "Shared-cost destination not allowed"
	case RuleUAN:
		return "UAN destination not allowed"
	}
	return "Destination not allowed"
}

// CheckDestination applies a workspace's outbound policy (nil: the
// defaults) to a call from callerID to dest, both E.164: the destination
// must be in the allowed countries (default: the caller ID's country) and
// is refused when premium-rate, shared-cost or UAN unless allowed. It is
// the one check shared by the SIP agent edge and POST /v1/calls; ok is
// false with the rule that refused.
func CheckDestination(w *Workspace, callerID, dest string) (rule string, ok bool) {
	country, class, valid := phone.Classify(dest)
	if !valid {
		return RuleInvalidDestination, false
	}
	var p Outbound
	if w != nil {
		p = w.Outbound
	}
	allowed := false
	if len(p.AllowedCountries) == 0 {
		cc, _, ok := phone.Classify(callerID)
		allowed = ok && cc == country
	} else {
		for _, c := range p.AllowedCountries {
			if strings.EqualFold(c, country) {
				allowed = true
				break
			}
		}
	}
	if !allowed {
		return RuleCountry, false
	}
	switch {
	case class == phone.ClassPremium && !p.AllowPremium:
		return RulePremium, false
	case class == phone.ClassSharedCost && !p.AllowSharedCost:
		return RuleSharedCost, false
	case class == phone.ClassUAN && !p.AllowUAN:
		return RuleUAN, false
	}
	return "", true
}
