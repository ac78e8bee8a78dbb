package config

import (
	"strings"
	"testing"
)

// TestUsagePricesAndPikeFromFile: the price table, the pike and the
// scanner list load from the file; bad rows are reported with their keys.
func TestUsagePricesAndPikeFromFile(t *testing.T) {
	p := write(t, "usage:\n  prices:\n    US: 2\n    GB: 5\n    default: 10\n"+
		"sip:\n  pike:\n    rate: 5\n    burst: 10\n    action: drop\n  scanner_user_agents: [friendly-scanner, evil]\n")
	c, err := Load(p, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Usage.Prices["US"] != 2 || c.Usage.Prices["GB"] != 5 || c.Usage.Prices["default"] != 10 {
		t.Fatalf("prices %v", c.Usage.Prices)
	}
	if c.SIP.Pike.Rate != 5 || c.SIP.Pike.Burst != 10 || c.SIP.Pike.Action != "drop" {
		t.Fatalf("pike %+v", c.SIP.Pike)
	}
	if strings.Join(c.SIP.ScannerUserAgents, ",") != "friendly-scanner,evil" {
		t.Fatalf("scanner list %v", c.SIP.ScannerUserAgents)
	}
	d, err := Load("", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if d.Usage.Prices["default"] <= 0 || len(d.SIP.ScannerUserAgents) == 0 || d.SIP.Pike.Disabled {
		t.Fatalf("defaults: prices %v, scanners %v, pike %+v", d.Usage.Prices, d.SIP.ScannerUserAgents, d.SIP.Pike)
	}

	p = write(t, "usage:\n  prices:\n    us: -1\nsip:\n  pike:\n    action: bounce\n")
	_, err = Load(p, noEnv)
	for _, key := range []string{"usage.prices.us", "sip.pike.action"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error does not name %s: %v", key, err)
		}
	}
}
