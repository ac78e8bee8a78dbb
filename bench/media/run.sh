#!/bin/sh
# Media relay benchmark (issue 6, "Performance").
#
#   bench/media/run.sh                 # defaults below
#   CALLS=500,1000 DURATION=20s bench/media/run.sh -all
#
# 1. go test benchmarks: one packet through the relay on loopback (ns/op,
#    allocs/op: must be 0), and the per-packet work without sockets.
# 2. The load harness: N concurrent relayed calls, 50 packets/s each way,
#    160-byte payloads, rising N; loss and one-way latency per packet.
# 3. The same traffic sent directly (no relay), as the baseline the relay's
#    added latency is measured against.
# Everything runs on 127.0.0.1 only.
set -eu
cd "$(dirname "$0")/../.."
CALLS=${CALLS:-250,500,1000,1500,2000}
DURATION=${DURATION:-10s}
bin="${TMPDIR:-/tmp}/callgate-mediabench.$$"
trap 'rm -f "$bin"' EXIT INT TERM

echo "## machine: $(nproc) CPUs, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## 1. per-packet forwarding"
go test -run '^$' -bench 'Forward|HandlePacket' -benchtime 50000x -count 3 ./gateway/media/
go build -o "$bin" ./bench/media
echo "## 2. relayed calls (each step: the same traffic without the relay first, then through it)"
"$bin" -calls "$CALLS" -duration "$DURATION" "$@"
echo "## load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
