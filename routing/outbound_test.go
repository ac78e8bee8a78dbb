package routing

import "testing"

func TestCheckDestination(t *testing.T) {
	us := "+12285340406"
	cases := []struct {
		name string
		w    *Workspace
		dest string
		rule string
	}{
		{"same country by default", nil, "+12025550123", ""},
		{"other country refused by default", nil, "+442079460000", RuleCountry},
		{"allowed country", &Workspace{Outbound: Outbound{AllowedCountries: []string{"us", "GB"}}}, "+442079460000", ""},
		{"not in list", &Workspace{Outbound: Outbound{AllowedCountries: []string{"GB"}}}, "+12025550123", RuleCountry},
		{"premium refused", nil, "+19005550100", RulePremium},
		{"premium allowed", &Workspace{Outbound: Outbound{AllowPremium: true}}, "+19005550100", ""},
		{"UK premium refused", &Workspace{Outbound: Outbound{AllowedCountries: []string{"GB"}}}, "+449012345678", RulePremium},
		{"FR shared cost refused", &Workspace{Outbound: Outbound{AllowedCountries: []string{"FR"}}}, "+33884012345", RuleSharedCost},
		{"shared cost allowed", &Workspace{Outbound: Outbound{AllowedCountries: []string{"FR"}, AllowSharedCost: true}}, "+33884012345", ""},
		{"UK UAN refused", &Workspace{Outbound: Outbound{AllowedCountries: []string{"GB"}}}, "+445512345678", RuleUAN},
		{"garbage", nil, "+1", RuleInvalidDestination},
	}
	for _, c := range cases {
		rule, ok := CheckDestination(c.w, us, c.dest)
		if rule != c.rule || ok != (c.rule == "") {
			t.Errorf("%s: CheckDestination(%s) = %q, %v; want %q", c.name, c.dest, rule, ok, c.rule)
		}
	}
}
