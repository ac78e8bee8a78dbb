package node_test

import "github.com/callgate/callgate/config"

// testPorts puts every listener of cfg on a loopback port chosen at start.
func testPorts(cfg *config.Config) {
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.SIP.Addr = "127.0.0.1:0"
}
