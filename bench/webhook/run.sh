#!/usr/bin/env bash
# Webhook throughput benchmark: wrk posts valid signed Twilio voice webhooks
# to gateway/webhook's handler and, in the same run, the same requests to a
# bare net/http handler (read the body, write a fixed TwiML document), both
# served by bench/webhook/server on loopback ports it picks. Prints req/s and
# p99 for both and the ratio, against the targets of issue 4:
#   >= 10,000 webhooks/s, p99 < 10 ms, within 3x of the bare handler.
#
# Environment: NUMBERS (snapshot size, 100000), DURATION (per run, 10s),
# WARMUP (2s), THREADS (wrk threads, 1), CONNS (connections, 32),
# ROUNDS (alternating measured rounds, 2), STRICT=1 (exit 1 on a missed target).
set -euo pipefail

cd "$(dirname "$0")/../.."
NUMBERS=${NUMBERS:-100000}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
THREADS=${THREADS:-1}
CONNS=${CONNS:-32}
ROUNDS=${ROUNDS:-2}
WRK=${WRK:-/usr/bin/wrk}

command -v "$WRK" >/dev/null || { echo "run.sh: wrk not found (Debian package wrk)" >&2; exit 1; }

tmp=$(mktemp -d)
server_pid=""
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

echo "== building bench/webhook/server"
go build -o "$tmp/server" ./bench/webhook/server

"$tmp/server" -numbers "$NUMBERS" -requests "$tmp/requests.tsv" -addrs "$tmp/addrs" &
server_pid=$!

# Wait for readiness: the server writes the address file once both
# listeners are bound and the requests are written.
for _ in $(seq 1 600); do
	[ -s "$tmp/addrs" ] && break
	kill -0 "$server_pid" 2>/dev/null || { echo "run.sh: server exited" >&2; exit 1; }
	sleep 0.1
done
[ -s "$tmp/addrs" ] || { echo "run.sh: server not ready after 60s" >&2; exit 1; }
webhook_addr=$(sed -n 's/^webhook=//p' "$tmp/addrs")
bare_addr=$(sed -n 's/^bare=//p' "$tmp/addrs")

# Sanity: one request answered with a <Dial>, one tampered request refused.
IFS=$'\t' read -r path sig body < "$tmp/requests.tsv"
answer=$(curl -sS -X POST "http://$webhook_addr$path" -H "X-Twilio-Signature: $sig" \
	-H 'Content-Type: application/x-www-form-urlencoded' --data-binary "$body")
case "$answer" in *"<Dial"*) ;; *) echo "run.sh: signed request not routed: $answer" >&2; exit 1 ;; esac
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://$webhook_addr$path" -H "X-Twilio-Signature: $sig" \
	-H 'Content-Type: application/x-www-form-urlencoded' --data-binary "${body}x")
[ "$code" = 403 ] || { echo "run.sh: tampered request answered $code, want 403" >&2; exit 1; }

export WEBHOOK_REQUESTS="$tmp/requests.tsv"
run_wrk() { # addr duration -> RESULT line
	"$WRK" -t"$THREADS" -c"$CONNS" -d"$2" --latency -s bench/webhook/post.lua "http://$1" | grep '^RESULT' || true
}
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }

echo "== $(nproc) CPUs, $NUMBERS numbers, wrk -t$THREADS -c$CONNS, $ROUNDS x $DURATION per handler (after $WARMUP warm-up)"
echo "   (wrk, the server and anything else on this shared machine compete for the same cores)"
run_wrk "$webhook_addr" "$WARMUP" >/dev/null
run_wrk "$bare_addr" "$WARMUP" >/dev/null

best_w_rps=0 best_w_p99=0 best_b_rps=0 best_b_p99=0 bad=0
for r in $(seq 1 "$ROUNDS"); do
	w=$(run_wrk "$webhook_addr" "$DURATION")
	b=$(run_wrk "$bare_addr" "$DURATION")
	[ -n "$w" ] && [ -n "$b" ] || { echo "run.sh: wrk gave no result" >&2; exit 1; }
	printf 'round %d  webhook: %s\n         bare:    %s\n' "$r" "${w#RESULT }" "${b#RESULT }"
	wr=$(field rps "$w"); wp=$(field p99_us "$w"); br=$(field rps "$b"); bp=$(field p99_us "$b")
	bad=$((bad + $(field non2xx "$w") + $(field socket_errors "$w")))
	if [ "$wr" -gt "$best_w_rps" ]; then best_w_rps=$wr best_w_p99=$wp; fi
	if [ "$br" -gt "$best_b_rps" ]; then best_b_rps=$br best_b_p99=$bp; fi
done

metrics=$(curl -sS "http://$webhook_addr/metrics")
ok_count=$(sed -n 's/^callgate_webhook_requests_total{carrier="twilio",kind="voice",result="ok"} \([0-9.e+]*\)$/\1/p' <<<"$metrics")
# Everything but ok, less the one tampered request of the sanity check.
other=$(grep '^callgate_webhook_requests_total{carrier="twilio",kind="voice"' <<<"$metrics" | grep -v 'result="ok"' | awk '{s+=$2} END {print s-1}')

ratio=$(awk -v b="$best_b_rps" -v w="$best_w_rps" 'BEGIN { printf "%.2f", (w > 0 ? b / w : 0) }')
w_p99_ms=$(awk -v x="$best_w_p99" 'BEGIN { printf "%.2f", x / 1000 }')
b_p99_ms=$(awk -v x="$best_b_p99" 'BEGIN { printf "%.2f", x / 1000 }')

echo
echo "handler                req/s    p99 (ms)   (best round)"
printf '%-20s %8s   %8s\n' "gateway/webhook" "$best_w_rps" "$w_p99_ms" "bare net/http" "$best_b_rps" "$b_p99_ms"
echo "ratio bare/webhook: $ratio"
echo "server counted: ok=$ok_count other-results=$other; wrk non-2xx+socket errors on webhook: $bad"

fail=0
verdict() { if [ "$1" = 1 ]; then echo "  PASS  $2"; else echo "  MISS  $2"; fail=1; fi; }
verdict "$([ "$best_w_rps" -ge 10000 ] && echo 1)" ">= 10,000 webhooks/s ($best_w_rps)"
verdict "$(awk -v x="$best_w_p99" 'BEGIN { print (x < 10000) ? 1 : 0 }')" "p99 < 10 ms (${w_p99_ms} ms)"
verdict "$(awk -v r="$ratio" 'BEGIN { print (r <= 3) ? 1 : 0 }')" "within 3x of bare net/http (${ratio}x)"
verdict "$([ "$bad" -eq 0 ] && [ "$other" = 0 ] && echo 1)" "every request answered 200 with a route"
if [ "$fail" = 1 ] && [ "${STRICT:-0}" = 1 ]; then exit 1; fi
