package media

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Defaults applied by NewManager (and by Validate) to zero-valued keys.
const (
	DefaultBindIP       = "127.0.0.1"
	DefaultPortMin      = 16384
	DefaultPortMax      = 32767
	DefaultMediaTimeout = 30 * time.Second
	DefaultLatchPackets = 3
	DefaultLatchWindow  = 5 * time.Second
)

// Config is the media relay's configuration (the `media:` block).
//
// Zero values take the defaults above. Durations are Go durations ("30s").
type Config struct {
	// BindIP is the local address the relay's UDP sockets bind to.
	BindIP string `yaml:"bind_ip" default:"127.0.0.1" help:"relay socket address"`
	// AdvertiseIP is the address written into rewritten SDP (c=, o=,
	// a=rtcp). Default: BindIP. Required when BindIP is unspecified
	// (0.0.0.0 or ::).
	AdvertiseIP string `yaml:"advertise_ip" env:"CALLGATE_MEDIA_ADVERTISE_IP" default:"(bind_ip)" help:"address written into SDP; required when bind_ip is 0.0.0.0 or ::"`
	// BindIP6 and AdvertiseIP6 are the IPv6 side of a dual-stack relay
	// (family.go): a leg facing an IPv6 party binds here and its SDP says
	// c=IN IP6 AdvertiseIP6; BindIP is then IPv4. Empty: one family.
	BindIP6      string `yaml:"bind_ip6" help:"IPv6 relay socket address besides bind_ip (then IPv4): legs facing IPv6 parties bind here; empty = bind_ip's family only"`
	AdvertiseIP6 string `yaml:"advertise_ip6" env:"CALLGATE_MEDIA_ADVERTISE_IP6" default:"(bind_ip6)" help:"IPv6 address written into SDP toward IPv6 parties; required when bind_ip6 is ::"`
	// PortMin and PortMax bound the UDP ports used for relaying, both
	// inclusive. Ports are used in RTP/RTCP pairs (even RTP port, RTCP on
	// the next odd port); each relayed call takes two pairs.
	PortMin int `yaml:"port_min" default:"16384" help:"lowest UDP port for RTP/RTCP (ports go in even/odd pairs, two pairs a call)"`
	PortMax int `yaml:"port_max" default:"32767" help:"highest UDP port for RTP/RTCP"`
	// MediaTimeout ends a call (onTimeout, then the session is closed)
	// when, after the answer, no packet arrives from either side for
	// this long.
	MediaTimeout time.Duration `yaml:"media_timeout" default:"30s" help:"no RTP from either side for this long after the answer ends the call"`
	// LatchPackets is how many consecutive packets from one new source
	// address are needed before the relay switches a leg to it
	// (symmetric RTP / NAT traversal).
	LatchPackets int `yaml:"latch_packets" default:"3" help:"consecutive packets from a new source before a leg latches to it (symmetric RTP)"`
	// LatchWindow is how long after a leg's first packet latching stays
	// possible. Once a leg's source is confirmed (LatchPackets packets
	// from the address in the SDP, or a latch) or the window has passed,
	// the source is fixed and other senders are ignored.
	LatchWindow time.Duration `yaml:"latch_window" default:"5s" help:"how long after a leg's first packet latching stays possible"`
	// Workers is how many threads (goroutines, each with its own epoll
	// set on Linux) forward packets; a call's four sockets belong to
	// one of them. 0: one per CPU the process may use (GOMAXPROCS).
	// Other systems use a goroutine per socket and ignore it.
	Workers int `yaml:"workers" help:"packet forwarding threads (an epoll set each on Linux); 0 = one per CPU"`
	// Region is this node's region: the default `region` label of the
	// media histograms.
	Region string `yaml:"region" default:"(region)" help:"region label of the media metrics"`
	// Regions lists other region names that sessions may be labelled
	// with (NewSessionIn). Any other value is labelled "other".
	Regions []string `yaml:"regions" help:"other region names media metrics may be labelled with (anything else is \"other\")"`
}

// withDefaults returns c with zero-valued keys set to their defaults.
func (c Config) withDefaults() Config {
	if c.BindIP == "" {
		c.BindIP = DefaultBindIP
	}
	if c.AdvertiseIP == "" {
		c.AdvertiseIP = c.BindIP
	}
	if c.PortMin == 0 && c.PortMax == 0 {
		c.PortMin, c.PortMax = DefaultPortMin, DefaultPortMax
	}
	if c.MediaTimeout == 0 {
		c.MediaTimeout = DefaultMediaTimeout
	}
	if c.LatchPackets == 0 {
		c.LatchPackets = DefaultLatchPackets
	}
	if c.LatchWindow == 0 {
		c.LatchWindow = DefaultLatchWindow
	}
	return c
}

// Validate checks the configuration (after defaults) and reports every
// bad key at once. It is safe to run as a dry run.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("media: %s: "+format, append([]any{key}, a...)...))
	}
	bind, err := netip.ParseAddr(c.BindIP)
	if err != nil {
		bad("bind_ip", "%q is not an IP address", c.BindIP)
	} else if bind.Zone() != "" {
		bad("bind_ip", "%q: zones are not supported", c.BindIP)
	}
	adv, err := netip.ParseAddr(c.AdvertiseIP)
	switch {
	case err != nil:
		bad("advertise_ip", "%q is not an IP address", c.AdvertiseIP)
	case adv.IsUnspecified():
		bad("advertise_ip", "%q is unspecified; set the address peers should send media to", c.AdvertiseIP)
	case bind.IsValid() && !bind.IsUnspecified() && adv.Is4() != bind.Unmap().Is4():
		bad("advertise_ip", "%q is not the same address family as bind_ip %q", c.AdvertiseIP, c.BindIP)
	}
	if c.PortMin < 1024 || c.PortMin > 65535 {
		bad("port_min", "%d is outside 1024-65535", c.PortMin)
	}
	if c.PortMax < 1024 || c.PortMax > 65535 {
		bad("port_max", "%d is outside 1024-65535", c.PortMax)
	}
	if c.PortMin <= c.PortMax && pairsIn(c.PortMin, c.PortMax) < 2 {
		bad("port_max", "range %d-%d holds fewer than two RTP/RTCP pairs (one call needs two)", c.PortMin, c.PortMax)
	}
	if c.PortMin > c.PortMax {
		bad("port_min", "%d is above port_max %d", c.PortMin, c.PortMax)
	}
	if c.MediaTimeout < 0 {
		bad("media_timeout", "%s is negative", c.MediaTimeout)
	} else if c.MediaTimeout < 100*time.Millisecond {
		bad("media_timeout", "%s is below 100ms", c.MediaTimeout)
	}
	if c.LatchPackets < 1 || c.LatchPackets > 1000 {
		bad("latch_packets", "%d is outside 1-1000", c.LatchPackets)
	}
	if c.LatchWindow < 0 {
		bad("latch_window", "%s is negative", c.LatchWindow)
	}
	c.validate6(bad)
	if c.Workers < 0 || c.Workers > 256 {
		bad("workers", "%d is outside 0-256 (0: one per CPU)", c.Workers)
	}
	for i, r := range c.Regions {
		if r == "" {
			bad(fmt.Sprintf("regions[%d]", i), "empty region name")
		}
	}
	return errors.Join(errs...)
}

// pairsIn counts the RTP/RTCP pairs (even, even+1) inside [lo, hi].
func pairsIn(lo, hi int) int {
	if lo%2 == 1 {
		lo++
	}
	if hi < lo+1 {
		return 0
	}
	return (hi - lo + 1) / 2
}
