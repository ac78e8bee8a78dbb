package media

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.BindIP != "127.0.0.1" || c.AdvertiseIP != "127.0.0.1" || c.PortMin != 16384 || c.PortMax != 32767 ||
		c.MediaTimeout != 30*time.Second || c.LatchPackets != 3 || c.LatchWindow != 5*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	if c := (Config{BindIP: "10.1.2.3"}).withDefaults(); c.AdvertiseIP != "10.1.2.3" {
		t.Fatalf("advertise_ip default %q", c.AdvertiseIP)
	}
}

func TestConfigYAML(t *testing.T) {
	var c Config
	err := yaml.Unmarshal([]byte(`
bind_ip: 0.0.0.0
advertise_ip: 203.0.113.10
port_min: 30000
port_max: 30999
media_timeout: 45s
latch_packets: 5
latch_window: 3s
region: us1
regions: [eu1, au1]
workers: 3
`), &c)
	if err != nil {
		t.Fatal(err)
	}
	if c.MediaTimeout != 45*time.Second || c.LatchWindow != 3*time.Second || c.PortMax != 30999 || len(c.Regions) != 2 || c.Workers != 3 {
		t.Fatalf("decoded %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidateNamesKeys(t *testing.T) {
	tests := []struct {
		cfg  Config
		keys []string
	}{
		{Config{BindIP: "nope"}, []string{"bind_ip", "advertise_ip"}},
		{Config{BindIP: "0.0.0.0"}, []string{"advertise_ip"}},
		{Config{AdvertiseIP: "::1"}, []string{"advertise_ip"}},
		{Config{PortMin: 5000, PortMax: 4000}, []string{"port_min"}},
		{Config{PortMin: 80, PortMax: 70000}, []string{"port_min", "port_max"}},
		{Config{PortMin: 5000, PortMax: 5002}, []string{"port_max"}},
		{Config{MediaTimeout: -time.Second}, []string{"media_timeout"}},
		{Config{MediaTimeout: time.Millisecond}, []string{"media_timeout"}},
		{Config{LatchPackets: -1}, []string{"latch_packets"}},
		{Config{LatchWindow: -time.Second}, []string{"latch_window"}},
		{Config{Regions: []string{"eu1", ""}}, []string{"regions[1]"}},
		{Config{Workers: -1}, []string{"workers"}},
		{Config{Workers: 100000}, []string{"workers"}},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		if err == nil {
			t.Errorf("%+v: accepted", tc.cfg)
			continue
		}
		for _, k := range tc.keys {
			if !strings.Contains(err.Error(), "media: "+k+":") {
				t.Errorf("%+v: error %q does not name %s", tc.cfg, err, k)
			}
		}
	}
	if _, err := NewManager(Config{PortMin: 5000, PortMax: 4000}, nil, nil); err == nil {
		t.Fatal("NewManager accepted a bad config")
	}
}
