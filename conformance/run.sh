#!/usr/bin/env bash
# conformance/run.sh (`make conformance`): RFC 4475 and RFC 5118 (IPv6)
# torture messages against a running callgate gateway.
#
# Creates a network namespace with only loopback, starts inside it a fresh
# gateway (temp data dir, SIP on 127.0.0.2:5060, a sandbox number bought and
# assigned to an agent whose endpoint is a tiny responder on
# 127.0.0.1:5090 that answers INVITE with 486), checks that a valid INVITE
# is routed, then sends each message of the corpus over UDP from
# 127.0.0.1:5060 and prints per message what came back against what
# conformance/rfc4475/expect.tsv says, and "N of M handled as the RFC
# expects"; then the RFC 5118 messages (conformance/rfc5118, in the tree)
# to the gateway's IPv6 listener [::1]:5062 from [::1]:5060 (IPv4 for the
# one IPv4-addressed message), judged by conformance/rfc5118/expect.tsv;
# last the score lines "RFC 4475: N of M" and "RFC 5118: N of M". Exit
# status 1 when some message is not handled as expected.
#
# The corpus is read in place (default ../shared/testdata/rfc4475 relative
# to the project root; CORPUS=DIR overrides); it is not part of the tree.
# Needs root for `ip netns`; without it, it says why and falls back to
# plain loopback. Every process and the namespace are removed on exit.
# Options: -v (print every message that came back), --keep (keep the work dir).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SELF=$ROOT/conformance/run.sh
VERBOSE=""
KEEP=""

inside() { # WORK CORPUS: runs in the namespace (or on plain loopback)
	local work=$1 corpus=$2 pids=() p
	cleanup_inside() {
		for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
		for p in "${pids[@]}"; do
			for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
			kill -9 "$p" 2>/dev/null || true
		done
	}
	trap cleanup_inside EXIT
	trap 'exit 130' INT TERM
	wait_for() { # DESC SECONDS CMD...
		local desc=$1 end=$((SECONDS + $2))
		shift 2
		until "$@" >/dev/null 2>&1; do
			[ $SECONDS -lt $end ] || { echo "conformance: timed out waiting for $desc (log: $work/callgate.log)" >&2; tail -20 "$work/callgate.log" >&2; exit 2; }
			sleep 0.1
		done
	}
	for port in 5060 5050 5070 5080 5090 5062 6050 19823; do
		if ss -Hlun "sport = :$port" | grep -q . || ss -Hltn "sport = :$port" | grep -q .; then
			echo "conformance: port $port is in use; the torture sender needs 5060/5050/5070/5080 (and for RFC 5118 [::1]:5060, [::1]:6050, 127.0.0.1:19823), the agent 5090, the gateway [::1]:5062 (responses go to the Via's port)" >&2
			exit 2
		fi
	done
	"$work/torture" -agent 127.0.0.1:5090 >"$work/agent.log" 2>&1 &
	pids+=($!)
	cat >"$work/config.yaml" <<EOF
data_dir: $work/data
http_addr: 127.0.0.1:18080
log:
  level: info
sip:
  addr: 127.0.0.2:5060
  addr6: "[::1]:5062"
  probe:
    interval: 1s
    timeout: 500ms
EOF
	"$work/callgate" serve --config "$work/config.yaml" >"$work/callgate.log" 2>&1 </dev/null &
	local cg=$!
	pids+=($cg)
	local api=http://127.0.0.1:18080
	wait_for "callgate /readyz" 30 curl -sf "$api/readyz"
	local key number
	key=$(cat "$work/data/api-key")
	call() { curl -sf -X "$1" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' ${3:+--data "$3"} "$api$2"; }
	number=$(call GET '/v1/marketplace/numbers?country=US&area_code=228&limit=1' | python3 -c 'import json,sys; print(json.load(sys.stdin)["numbers"][0]["phone_number"])')
	call POST /v1/numbers "{\"phone_number\":\"$number\"}" >/dev/null
	call POST /v1/agents '{"id":"bot","name":"Bot","endpoints":[{"region":"local","uri":"sip:bot@127.0.0.1:5090;transport=udp"}]}' >/dev/null
	call PATCH "/v1/numbers/${number#+}" '{"agent_id":"bot"}' >/dev/null
	up() { curl -sf "$api/metrics" | grep -q '^callgate_sip_region_endpoints{region="local",state="up"} 1'; }
	wait_for "the agent endpoint to be probed up" 30 up
	echo "gateway pid $cg: SIP udp 127.0.0.2:5060 and [::1]:5062, number $number -> sip:bot@127.0.0.1:5090 (486 responder)"
	local rc=0
	"$work/torture" -dir "$corpus" -target 127.0.0.2:5060 -target6 "[::1]:5062" -number "${number#+}" $VERBOSE || rc=$?
	if ! kill -0 "$cg" 2>/dev/null; then
		echo "conformance: the gateway exited during the run; its log:" >&2
		tail -30 "$work/callgate.log" >&2
		rc=1
	fi
	if grep -qE 'panic|fatal error' "$work/callgate.log"; then
		echo "conformance: the gateway log has a panic:" >&2
		grep -m5 -A5 -E 'panic|fatal error' "$work/callgate.log" >&2
		rc=1
	fi
	return $rc
}

if [ "${1:-}" = --inside ]; then
	VERBOSE=${4:-}
	inside "$2" "$3"
	exit $?
fi

while [ $# -gt 0 ]; do
	case "$1" in
	-v) VERBOSE=-v ;;
	--keep) KEEP=1 ;;
	-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
	*) echo "conformance: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

CORPUS=${CORPUS:-$ROOT/../shared/testdata/rfc4475}
compgen -G "$CORPUS/*.dat" >/dev/null || { echo "conformance: no corpus at $CORPUS (no .dat messages)" >&2; exit 2; }
CORPUS=$(cd "$CORPUS" && pwd)
WORK=$(mktemp -d /tmp/callgate-conformance.XXXXXX)
NS=""
INNER=""
cleanup() {
	if [ -n "$INNER" ]; then kill "$INNER" 2>/dev/null || true; wait "$INNER" 2>/dev/null || true; fi
	if [ -n "$NS" ]; then
		# anything still running in our namespace was started by this script
		for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
		ip netns del "$NS" 2>/dev/null || true
	fi
	[ -n "$KEEP" ] && echo "work dir kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building callgate and conformance/torture"
(cd "$ROOT" && go build -o "$WORK/callgate" ./cmd/callgate && go build -o "$WORK/torture" ./conformance/torture)

NS=callgate-conformance-$$
if err=$(ip netns add "$NS" 2>&1) && ip netns exec "$NS" ip link set lo up 2>/dev/null; then
	echo "network namespace $NS: loopback only"
	ip netns exec "$NS" bash "$SELF" --inside "$WORK" "$CORPUS" "$VERBOSE" &
	INNER=$!
	rc=0
	wait "$INNER" || rc=$?
	INNER=""
	exit $rc
fi
echo "conformance: cannot create a network namespace (ip netns add $NS: ${err:-setting lo up failed});" >&2
echo "conformance: FALLING BACK TO PLAIN LOOPBACK: replies to hosts under example.com or 192.0.2.0/24 may leave this machine" >&2
ip netns del "$NS" 2>/dev/null || true
NS=""
bash "$SELF" --inside "$WORK" "$CORPUS" "$VERBOSE"
