package sip

import (
	"testing"
	"time"
)

// TestProberFollowsRegionMove: an endpoint URI that moves to another
// region is reported (and labelled) in its new region, not the old one.
func TestProberFollowsRegionMove(t *testing.T) {
	live := newUA(t, "127.0.0.1")
	e := runEdge(t, buildTable(live.endpoint("us")), func(c *Config) {
		c.Probe = ProbeConfig{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, DownAfter: 2, UpAfter: 2, Alpha: 0.5}
	}, nil)
	checkFor(t, 5*time.Second, func() error {
		if st := e.Status(); len(st) != 1 || st[0].Region != "us" || !st[0].Known {
			return errorf("status %+v", st)
		}
		return nil
	})
	moved := live.endpoint("eu")
	e.table.Store(buildTable(moved).Load())
	checkFor(t, 5*time.Second, func() error {
		st := e.Status()
		if len(st) != 1 || st[0].Region != "eu" || st[0].URI != moved.URI {
			return errorf("status after the move %+v, want the endpoint in eu", st)
		}
		return nil
	})
}
