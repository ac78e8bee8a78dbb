// Package e2e holds end-to-end tests of whole callgate gateways: metrics
// checked by promtool and scraped by a real Prometheus, the deploy/
// dashboard and alert rules checked against the exported metric names,
// several gateways sharing a 3-node NATS JetStream cluster that loses
// nodes, and graceful shutdown of a real `callgate serve` process.
//
// The tests use the real peers a user runs: Debian's prometheus/promtool
// and SIPp (sip-tester) binaries, embedded nats-server cluster nodes on
// loopback, sipgo user agents. They skip when a binary is missing.
package e2e
