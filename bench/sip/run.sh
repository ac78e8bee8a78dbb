#!/usr/bin/env bash
# bench/sip/run.sh: SIP edge benchmark (issue 3, "Performance").
#
# SIPp carrier (uac_rr.xml) -> proxy -> SIPp agent (uas_rr.xml) on loopback,
# full calls (INVITE, 100, 180, 200, ACK, BYE, 200), at rising call rates.
# The proxy is first callgate (`callgate serve`, fresh data dir, a sandbox
# number bought and assigned to an agent whose endpoint is the SIPp UAS),
# then Kamailio (bench/sip/kamailio.cfg: tm, rr, dispatcher, -x tlsf).
# For each it prints the highest rate with zero failed calls, the proxy's
# CPU time per call at that rate (utime+stime from /proc/PID/stat, all
# processes of the proxy), peak memory, and memory after an idle wait; then
# callgate's figures as ratios to Kamailio's.
#
# Then the outbound ladder (issue 12): SIPp agent with digest auth
# (uac_agent_auth.xml) -> proxy -> SIPp "PSTN" (the same uas_rr.xml): callgate
# with its agent listener (sip.agents.addr), the agent's credential from
# POST /v1/agents/bot/sip-credentials and the PSTN as the sandbox termination;
# Kamailio with kamailio.cfg -A OUTBOUND (pv_proxy_authenticate against one
# static password). Highest rate with zero failed calls and CPU per call.
#
# With --hook (issue 13), callgate's inbound ladder is run a second time with
# a routing hook: bench/sip/hookserver answering {"action":"route"} after
# --hook-delay (default 1ms), set with PATCH /v1/workspace; the report gives
# both ladders' rate and CPU per call and their ratios (target: the hook
# costs at most 25% of the rate).
#
# The load generator is --pairs SIPp UAC/UAS pairs (default 3), each on its
# own ports with its share of the rate, so that SIPp (one thread per process)
# is not the ceiling; every inbound run also measures that ceiling: the same
# pairs with each UAC sending straight to its UAS, no proxy (--no-ceiling).
# callgate gets one number and agent per pair (number k -> UAS k); Kamailio's
# dispatcher round-robins over the UASs.
#
# Usage: bench/sip/run.sh [--quick] [--rates "1000 2000 ..."] [--duration S]
#                         [--idle S] [--retries N] [--no-kamailio]
#                         [--only-kamailio] [--log-level L] [--profile DIR]
#                         [--callgate BIN] [--no-outbound] [--only-outbound]
#                         [--outbound-rates "500 1000 ..."] [--hook]
#                         [--hook-delay D] [--pairs N] [--no-ceiling]
#                         [--kamailio-acc] [--kamailio-prefault]
#                         [--kamailio-children N]
#                         [--runtime GC_PERCENT:MEMORY_LIMIT_MB[:MAX_PROCS]]
#   --quick        3 s per step, rates 1000 2000 3000 4000 5000, 10 s idle wait
#   --duration S   seconds of load per rate step (default 10)
#   --idle S       wait after the load before memory is read again (default 60)
#   --retries N    a step with failed calls is run again up to N times
#                  (default 2: this machine is shared and noisy)
#   --log-level L  callgate's log level (default warn; Kamailio logs errors only)
#   --profile DIR  build bench/sip/cgprof (callgate serve with a CPU profile
#                  taken over the load steps) and write DIR/cpu.pprof,
#                  DIR/heap-load.pprof (end of load), DIR/heap-idle.pprof
#                  (after the idle wait) and DIR/top.txt (go tool pprof -top)
#   --callgate BIN use this binary instead of building ./cmd/callgate
#   --no-outbound  skip the outbound ladder; --only-outbound: only it
#   --outbound-rates the outbound ladder's rates (default 500 1000 1500 2000 2500 3000 4000)
#   --hook         also run callgate's inbound ladder with a routing hook
#   --hook-delay D the hook server's answer delay (Go duration, default 1ms)
#   --pairs N      SIPp UAC/UAS pairs generating the load (default 3: on 2
#                  cores the harness alone then passes 8,000 calls/s, with
#                  2 pairs 5,000-6,000, where callgate and Kamailio both pass)
#   --no-ceiling   skip the harness's own ceiling (SIPp to SIPp, no proxy)
#   --runtime G:M[:P] callgate's runtime.gc_percent, runtime.memory_limit_mb
#                  and runtime.max_procs (default 400:256, the README's
#                  advice, with GOMAXPROCS Go's default; 0:0 = Go's defaults)
#   --kamailio-acc Kamailio also keeps a record of every call (acc module,
#                  db_flatstore files in the work dir: the INVITE's and the
#                  BYE's transactions), as callgate keeps its call history
#   --kamailio-prefault Kamailio touches every page of its shared memory
#                  pool at start (shm_force_alloc): without it, the first
#                  try at each new highest rate (first-touch page faults,
#                  as it seems) fell behind (thousands of datagrams dropped
#                  by its socket, calls failed); its PSS is then the whole
#                  pool (-m 1024) from the start
#   --kamailio-children N  Kamailio's UDP worker processes (default 4)
#   --nice N       run SIPp and both proxies at niceness N (default -10, as
#                  root) so that other work on a shared machine starves them less;
#                  the same for callgate and Kamailio. 0 leaves it alone.
# Environment: SIPP (default sipp), KAMAILIO (default kamailio).
#
# Each step also gives the datagrams the proxy's UDP sockets dropped (their
# receive buffers full: the drop counter of `ss -uam`), the usual cause of
# failed calls.
#
# Every process it starts is stopped by PID on exit. Nothing leaves 127.0.0.1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/bench/sip
SIPP=${SIPP:-sipp}
KAMAILIO=${KAMAILIO:-kamailio}
RATES="1000 2000 3000 4000 4500 5000 5500 6000 6500 7000 7500 8000 9000"
DURATION=10
IDLE=60
RETRIES=2
RUN_CG=1
RUN_KAM=1
LOG_LEVEL=warn
PROFILE=""
CG_BIN=""
NUMBER=""
NICE=-10
KAM_ACC=0
KAM_PREFAULT=0
KAM_CHILDREN=4
RUN_OUT=1
RUN_IN=1
OUT_RATES="500 1000 1500 2000 2500 3000 4000"
OUT_DEST=+14155550123
HOOK=0
HOOK_DELAY=1ms
# the UAC scenario of run_step and its extra arguments (the outbound ladder changes them)
UAC_SF=""
UAC_EXTRA=()
PAIRS=3
RUN_CEIL=1
CG_RUNTIME=400:256

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) DURATION=3 IDLE=10 RATES="1000 2000 3000 4000 5000" ;;
	--rates) RATES=$2; shift ;;
	--duration) DURATION=$2; shift ;;
	--idle) IDLE=$2; shift ;;
	--retries) RETRIES=$2; shift ;;
	--no-kamailio) RUN_KAM=0 ;;
	--only-kamailio) RUN_CG=0 ;;
	--log-level) LOG_LEVEL=$2; shift ;;
	--profile) PROFILE=$2; shift ;;
	--callgate) CG_BIN=$2; shift ;;
	--nice) NICE=$2; shift ;;
	--no-outbound) RUN_OUT=0 ;;
	--only-outbound) RUN_IN=0 ;;
	--outbound-rates) OUT_RATES=$2; shift ;;
	--hook) HOOK=1 ;;
	--hook-delay) HOOK_DELAY=$2; shift ;;
	--pairs) PAIRS=$2; shift ;;
	--no-ceiling) RUN_CEIL=0 ;;
	--kamailio-acc) KAM_ACC=1 ;;
	--kamailio-prefault) KAM_PREFAULT=1 ;;
	--kamailio-children) KAM_CHILDREN=$2; shift ;;
	--runtime) CG_RUNTIME=$2; shift ;;
	-h | --help) sed -n '2,78p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

case "$PAIRS" in '' | *[!0-9]* | 0) echo "run.sh: --pairs wants a positive number" >&2; exit 2 ;; esac
command -v "$SIPP" >/dev/null || { echo "run.sh: sipp not found (apt-get install sip-tester)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/callgate-bench-sip.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		# a proxy draining calls gets 10 s, then SIGKILL
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null || true
	done
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || true
# everything started from here on inherits the niceness
if [ "$NICE" != 0 ] && ! renice -n "$NICE" -p $$ >/dev/null 2>&1; then
	echo "run.sh: cannot set niceness $NICE (not root?); running at the default" >&2
	NICE=0
fi
CLK_TCK=$(getconf CLK_TCK)

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "run.sh: $*"; exit 1; }

free_port() { # a UDP and TCP port free on 127.0.0.1
	python3 - <<'EOF'
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
EOF
}

# wait_for DESC SECONDS CMD...: poll CMD every 0.1 s until it succeeds
wait_for() {
	local desc=$1 secs=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $end ] || die "timed out after ${secs}s waiting for $desc"
		sleep 0.1
	done
}
udp_bound() { ss -Hlun "sport = :$1" | grep -q .; }

# proc_pids ROOTPID: the PID and its direct children (Kamailio's workers)
proc_pids() {
	echo "$1"
	ps -o pid= --ppid "$1" 2>/dev/null || true
}
# udp_drops ROOTPID: datagrams the kernel dropped on the UDP sockets the
# process (or its children) holds, its receive buffer being full: the
# drop counter of `ss -uam`, summed over the sockets, each counted once
udp_drops() {
	local pids
	pids=$(proc_pids "$1" | tr -d ' ' | paste -sd'|')
	ss -uanmpH 2>/dev/null | awk -v re="pid=($pids)," '
		/^[^ \t]/ { cur = $0; next }
		cur != "" && cur ~ re && match($0, /,d[0-9]+\)/) { split(cur, f, " "); d[f[4]] = substr($0, RSTART + 2, RLENGTH - 3) }
		END { t = 0; for (k in d) t += d[k]; print t }'
}
# cpu_ticks ROOTPID: utime+stime of the process and its children, in ticks
cpu_ticks() {
	local t=0 p f
	for p in $(proc_pids "$1"); do
		# fields after the ")" of comm: state is 1st, utime 12th, stime 13th
		f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
		set -- $f
		t=$((t + ${12} + ${13}))
	done
	echo $t
}
# sys_ticks ROOTPID: stime alone (the kernel's share: the UDP sends and reads)
sys_ticks() {
	local t=0 p f
	for p in $(proc_pids "$1"); do
		f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
		set -- $f
		t=$((t + ${13}))
	done
	echo $t
}
# pss_kb ROOTPID: proportional set size of the process tree (shared pages counted once)
pss_kb() {
	local t=0 p v
	for p in $(proc_pids "$1"); do
		v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
		t=$((t + ${v:-0}))
	done
	echo $t
}
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# sampler ROOTPID FILE: the highest PSS seen, sampled every 0.5 s
start_sampler() {
	(
		peak=0
		while kill -0 "$1" 2>/dev/null; do
			v=$(pss_kb "$1")
			[ "$v" -gt "$peak" ] && { peak=$v; echo "$peak" >"$2"; }
			sleep 0.5
		done
	) &
	PIDS+=($!)
	SAMPLER=$!
}

# start_uas LOGDIR: the agents, one SIPp UAS per pair on UAS_PORTS[k]
# (answers OPTIONS probes with -aa); sets UAS_PIDS
start_uas() {
	local k
	UAS_PIDS=()
	for k in $(seq 0 $((PAIRS - 1))); do
		"$SIPP" -sf "$HERE/uas_rr.xml" -i 127.0.0.1 -p "${UAS_PORTS[$k]}" -aa -nostdin \
			-buff_size 8388608 -trace_err -error_file "$1/uas$k-errors.log" \
			>"$1/uas$k.out" 2>&1 </dev/null &
		PIDS+=($!)
		UAS_PIDS+=($!)
	done
	for k in $(seq 0 $((PAIRS - 1))); do
		wait_for "SIPp UAS on port ${UAS_PORTS[$k]}" 10 udp_bound "${UAS_PORTS[$k]}"
	done
}
stop_uas() {
	local p
	kill "${UAS_PIDS[@]}" 2>/dev/null || true
	for p in "${UAS_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

# share N K: pair K's share of N (the first pair takes the remainder)
share() {
	local n=$(($1 / PAIRS))
	[ "$2" != 0 ] || n=$((n + $1 % PAIRS))
	echo $((n > 0 ? n : 1))
}

# run_step RATE CALLS NAME: one run of every pair's SIPp UAC at once (pair k
# sends its share of RATE and CALLS to TARGETS[k], service SVCS[k]); sets OK
# and FAILED (summed over the pairs) and ELAPSED (the longest)
run_step() {
	local rate=$1 calls=$2 name=$3 k r c p pids=()
	for k in $(seq 0 $((PAIRS - 1))); do
		r=$(share "$rate" "$k") c=$(share "$calls" "$k")
		rm -f "$WORK/$name-p$k.csv" "$WORK/$name-p$k.rc"
		(
			rc=0
			timeout $((c / r + 60)) "$SIPP" -sf "${UAC_SF:-$HERE/uac_rr.xml}" -s "${SVCS[$k]}" "${UAC_EXTRA[@]}" "${TARGETS[$k]}" \
				-i 127.0.0.1 -p "${UAC_PORTS[$k]}" -r "$r" -rp 1000 -m "$c" -l 30000 \
				-recv_timeout 8000 -buff_size 8388608 -nostdin \
				-trace_stat -stf "$WORK/$name-p$k.csv" -fd 3600 -trace_err -error_file "$WORK/$name-p$k-errors.log" \
				>"$WORK/$name-p$k.out" 2>&1 </dev/null || rc=$?
			echo "$rc" >"$WORK/$name-p$k.rc"
		) &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || true; done
	OK=0 FAILED=0 ELAPSED=0
	local stat rc ok failed el
	for k in $(seq 0 $((PAIRS - 1))); do
		stat="$WORK/$name-p$k.csv" c=$(share "$calls" "$k")
		rc=$(cat "$WORK/$name-p$k.rc" 2>/dev/null || echo 1)
		if [ ! -s "$stat" ]; then
			log "  sipp (pair $k) exited $rc without statistics (see $WORK/$name-p$k.out)"
			FAILED=$((FAILED + c))
			ELAPSED=$(awk -v a="$ELAPSED" 'BEGIN { print (a > 1 ? a : 1) }')
			continue
		fi
		# last row of the statistics file; columns by name
		read -r ok failed el < <(awk -F';' '
			NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
			{ last = $0 }
			END {
				n = split(last, f, ";")
				split(f[col["StartTime"]], s, "\t"); split(f[col["CurrentTime"]], c, "\t")
				printf "%d %d %.3f\n", f[col["SuccessfulCall(C)"]], f[col["FailedCall(C)"]], c[3] - s[3]
			}' "$stat")
		if [ "$rc" = 124 ]; then
			log "  sipp (pair $k) did not finish in time (calls stuck): counted as failed"
			failed=$((c - ok))
		fi
		[ $((ok + failed)) -ge "$c" ] || failed=$((c - ok))
		OK=$((OK + ok)) FAILED=$((FAILED + failed))
		ELAPSED=$(awk -v a="$ELAPSED" -v b="$el" 'BEGIN { print (b > a ? b : a) }')
	done
}

# pairs_to HOSTPORT: every pair's UAC sends to HOSTPORT (sets TARGETS)
pairs_to() {
	local k
	TARGETS=()
	for k in $(seq 0 $((PAIRS - 1))); do TARGETS+=("$1"); done
}
# svcs SERVICE...: the pairs' services (Request-URI users), one each or one for all (sets SVCS)
svcs() {
	local k
	SVCS=()
	for k in $(seq 0 $((PAIRS - 1))); do
		if [ $# -gt 1 ]; then SVCS+=("${@:$((k + 1)):1}"); else SVCS+=("$1"); fi
	done
}

# ceiling: the harness alone, every pair's UAC straight to its UAS (no
# proxy) over the same rates; sets CEIL_BEST CEIL_ACH
ceiling() {
	local k
	start_uas "$WORK/ceil"
	TARGETS=()
	for k in $(seq 0 $((PAIRS - 1))); do TARGETS+=("127.0.0.1:${UAS_PORTS[$k]}"); done
	svcs "${NUMBER:-12285550100}"
	log "harness ceiling: $PAIRS SIPp UAC -> UAS pairs, no proxy"
	sweep sipp-only ""
	CEIL_BEST=$BEST_RATE CEIL_ACH=$BEST_ACH
	stop_uas
}

# sweep NAME PROXYPID: rising rates (TARGETS, SVCS); PROXYPID "" measures
# no proxy (the harness's ceiling); sets BEST_RATE BEST_CPU_US BEST_ACH
sweep() {
	local name=$1 pid=$2 rate try c0 c1 s0 s1 d0 d1 calls cpu_us sys_us ach pass
	BEST_RATE=0 BEST_CPU_US=0 BEST_ACH=0
	# warm-up: proves the route works before the sweep
	run_step 100 200 "$name-warmup"
	[ "$FAILED" = 0 ] || die "$name: warm-up calls failed ($OK ok, $FAILED failed); see $WORK/$name-warmup.out and $WORK/$name-warmup-errors.log"
	printf '%-9s %7s %8s %7s %7s %9s %11s %11s %9s\n' proxy target achieved calls failed cpu_s "cpu_us/call" "sys_us/call" pss_MB >&2
	for rate in $RATES; do
		pass=0
		for try in $(seq 0 "$RETRIES"); do
			calls=$((rate * DURATION))
			c0=0 c1=0 s0=0 s1=0 d0=0 d1=0
			[ -z "$pid" ] || { d0=$(udp_drops "$pid"); c0=$(cpu_ticks "$pid"); s0=$(sys_ticks "$pid"); }
			run_step "$rate" "$calls" "$name-$rate-$try"
			[ -z "$pid" ] || { c1=$(cpu_ticks "$pid"); s1=$(sys_ticks "$pid"); d1=$(udp_drops "$pid"); }
			cpu_us=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v n="$OK" 'BEGIN { printf "%.0f", n ? d / hz * 1e6 / n : 0 }')
			sys_us=$(awk -v d=$((s1 - s0)) -v hz="$CLK_TCK" -v n="$OK" 'BEGIN { printf "%.0f", n ? d / hz * 1e6 / n : 0 }')
			ach=$(awk -v n="$OK" -v e="$ELAPSED" 'BEGIN { printf "%.0f", (e > 0 ? n / e : 0) }')
			printf '%-9s %7d %8d %7d %7d %9.2f %11d %11d %9d\n' "$name" "$rate" "$ach" "$OK" "$FAILED" \
				"$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN{print d/hz}')" "$cpu_us" "$sys_us" $([ -z "$pid" ] && echo 0 || echo $(($(pss_kb "$pid") / 1024))) >&2
			echo "$name $rate $try $OK $FAILED $ELAPSED $((c1 - c0)) $cpu_us $ach $(cut -d' ' -f1 /proc/loadavg) $sys_us $((d1 - d0))" >>"$WORK/steps.txt"
			# a pass: no failed call, and SIPp really offered ~the rate
			if [ "$FAILED" = 0 ] && [ "$OK" = "$calls" ] && [ "$ach" -ge $((rate * 90 / 100)) ]; then
				pass=1
				break
			fi
			[ -z "$pid" ] || kill -0 "$pid" 2>/dev/null || die "$name died during the load (see $WORK)"
			sleep 2
		done
		[ $pass = 1 ] || break
		BEST_RATE=$rate BEST_CPU_US=$cpu_us BEST_ACH=$ach
		sleep 1
	done
}

# idle_memory NAME PID: wait IDLE seconds, then print the memory figures
report_memory() {
	local name=$1 pid=$2
	sleep 1
	PEAK_PSS_KB=$(cat "$WORK/$name-peak" 2>/dev/null || echo 0)
	log "$name: waiting ${IDLE}s after the load for memory to settle"
	sleep "$IDLE"
	AFTER_PSS_KB=$(pss_kb "$pid")
}

mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

UAS_PORTS=() UAC_PORTS=()
for _ in $(seq "$PAIRS"); do
	UAS_PORTS+=("$(free_port)")
	UAC_PORTS+=("$(free_port)")
done
UAS_PORT=${UAS_PORTS[0]}

# ---------------------------------------------------------------- callgate
if [ $RUN_CG = 1 ]; then
	if [ -n "$PROFILE" ]; then
		mkdir -p "$PROFILE"
		PROFILE=$(cd "$PROFILE" && pwd)
		log "building bench/sip/cgprof (profiling build of callgate serve)"
		(cd "$ROOT" && go build -o "$WORK/callgate" ./bench/sip/cgprof)
		CG_BIN=$WORK/callgate
	elif [ -z "$CG_BIN" ]; then
		log "building ./cmd/callgate"
		(cd "$ROOT" && go build -o "$WORK/callgate" ./cmd/callgate)
		CG_BIN=$WORK/callgate
	fi
	CG_SIP=$(free_port)
	CG_HTTP=$(free_port)
	CG_AGENTS=$(free_port)
	mkdir -p "$WORK/cg"
	cat >"$WORK/cg/config.yaml" <<EOF
data_dir: $WORK/cg/data
http_addr: 127.0.0.1:$CG_HTTP
log:
  level: $LOG_LEVEL
sip:
  addr: 127.0.0.1:$CG_SIP
  agents:
    addr: 127.0.0.1:$CG_AGENTS
    digest_algorithms: MD5,SHA-256
carriers:
  sandbox:
    termination_uri: sip:pstn@127.0.0.1:$UAS_PORT
EOF
	# 0:0 writes no runtime section (Go's defaults; also for binaries older than it)
	if [ "$CG_RUNTIME" != 0:0 ]; then
		IFS=: read -r rt_gc rt_mem rt_procs <<<"$CG_RUNTIME"
		printf 'runtime:\n  gc_percent: %d\n  memory_limit_mb: %d\n' "$rt_gc" "$rt_mem" >>"$WORK/cg/config.yaml"
		[ -z "$rt_procs" ] || printf '  max_procs: %d\n' "$rt_procs" >>"$WORK/cg/config.yaml"
	fi
	# --hook: the hook server is on loopback, which hooks may not reach by default
	[ $HOOK = 0 ] || printf 'webhook:\n  messaging:\n    allow_networks: [127.0.0.0/8]\n' >>"$WORK/cg/config.yaml"
	start_uas "$WORK"
	CG_ARGS=(serve --config "$WORK/cg/config.yaml")
	[ -z "$PROFILE" ] || CG_ARGS+=(--cpuprofile "$PROFILE/cpu.pprof" --memprofile "$PROFILE/heap.pprof")
	"$CG_BIN" "${CG_ARGS[@]}" >"$WORK/cg/callgate.log" 2>&1 </dev/null &
	CG_PID=$!
	PIDS+=($CG_PID)
	API=http://127.0.0.1:$CG_HTTP
	wait_for "callgate /readyz" 30 curl -sf "$API/readyz"
	KEY=$(cat "$WORK/cg/data/api-key")
	ADMIN=$(cat "$WORK/cg/data/admin-key")
	api() { # METHOD PATH [BODY]
		curl -sf -X "$1" -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
			${3:+--data "$3"} "$API$2"
	}
	# one number and agent per pair: number k -> agent bot (k=0) or botK -> UAS k
	read -r -a NUMS < <(api GET "/v1/marketplace/numbers?country=US&area_code=228&limit=$PAIRS" |
		python3 -c 'import json,sys; print(" ".join(n["phone_number"] for n in json.load(sys.stdin)["numbers"]))')
	[ "${#NUMS[@]}" -ge "$PAIRS" ] || die "the marketplace offered ${#NUMS[@]} numbers for $PAIRS pairs"
	for k in $(seq 0 $((PAIRS - 1))); do
		n=${NUMS[$k]} id=bot
		[ "$k" = 0 ] || id=bot$k
		api POST /v1/numbers "{\"phone_number\":\"$n\"}" >/dev/null || die "buying $n failed"
		api POST /v1/agents "{\"id\":\"$id\",\"name\":\"Bot $k\",\"endpoints\":[{\"region\":\"local\",\"uri\":\"sip:bot@127.0.0.1:${UAS_PORTS[$k]};transport=udp\"}]}" >/dev/null ||
			die "creating the agent $id failed"
		api PATCH "/v1/numbers/${n#+}" "{\"agent_id\":\"$id\"}" >/dev/null || die "assigning $n failed"
		NUMS[$k]=${n#+}
	done
	NUMBER=${NUMS[0]}
	# routable once the snapshot has the numbers and the prober saw the agents up
	endpoint_up() { curl -sf "$API/metrics" | grep -q "^callgate_sip_region_endpoints{region=\"local\",state=\"up\"} $PAIRS\$"; }
	wait_for "the agent endpoint to be probed up" 30 endpoint_up
	log "callgate pid $CG_PID: SIP 127.0.0.1:$CG_SIP, numbers ${NUMS[*]} -> SIPp UASs on ports ${UAS_PORTS[*]} ($PAIRS pairs; work dir $WORK)"
	CG_IDLE_KB=$(status_kb "$CG_PID" VmRSS)
	CG_IDLE_PSS=$(pss_kb "$CG_PID")
	start_sampler "$CG_PID" "$WORK/callgate-peak"
	[ -z "$PROFILE" ] || kill -USR1 "$CG_PID"
	CG_BEST=0 CG_CPU=0 CG_ACH=0
	if [ $RUN_IN = 1 ]; then
		pairs_to "127.0.0.1:$CG_SIP"
		svcs "${NUMS[@]}"
		sweep callgate "$CG_PID"
		CG_BEST=$BEST_RATE CG_CPU=$BEST_CPU_US CG_ACH=$BEST_ACH
	fi
	CG_HOOK_BEST="" CG_HOOK_CPU="" CG_HOOK_ACH=""
	if [ $RUN_IN = 1 ] && [ $HOOK = 1 ]; then
		log "building bench/sip/hookserver (routing hook answering after $HOOK_DELAY)"
		(cd "$ROOT" && go build -o "$WORK/hookserver" ./bench/sip/hookserver)
		"$WORK/hookserver" -delay "$HOOK_DELAY" >"$WORK/hook.url" 2>"$WORK/hook.err" </dev/null &
		PIDS+=($!)
		wait_for "the hook server" 10 test -s "$WORK/hook.url"
		HOOK_URL=$(head -1 "$WORK/hook.url")
		api POST /v1/workspace/webhook-secret >/dev/null || die "POST /v1/workspace/webhook-secret failed"
		api PATCH /v1/workspace "{\"routing_hook\":{\"url\":\"$HOOK_URL\",\"timeout_ms\":2000,\"on_failure\":\"reject\"}}" >/dev/null ||
			die "PATCH /v1/workspace (routing_hook) failed"
		hook_routes() { curl -sf "$API/metrics" | awk '$1 == "callgate_hook_outcomes_total{outcome=\"route\"}" {printf "%d", $2}'; }
		log "callgate with routing hook $HOOK_URL"
		pairs_to "127.0.0.1:$CG_SIP"
		svcs "${NUMS[@]}"
		sweep callgate-hook "$CG_PID"
		CG_HOOK_BEST=$BEST_RATE CG_HOOK_CPU=$BEST_CPU_US CG_HOOK_ACH=$BEST_ACH
		CG_HOOK_ROUTES=$(hook_routes)
		[ "${CG_HOOK_ROUTES:-0}" -gt 0 ] || die "the routing hook was never asked (callgate_hook_outcomes_total{outcome=\"route\"} 0)"
		api PATCH /v1/workspace '{"routing_hook":null}' >/dev/null || die "removing the routing hook failed"
	fi
	[ -z "$PROFILE" ] || kill -USR2 "$CG_PID"
	CG_OUT_BEST="" CG_OUT_CPU=""
	if [ $RUN_OUT = 1 ]; then
		# outbound minutes are charged (usage.prices: 1 credit a minute by
		# default): enough credits for every call of the ladder, or they end in 402
		curl -sf -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
			-H "Idempotency-Key: bench-$$" --data '{"amount":100000000,"reason":"bench: outbound ladder"}' \
			"$API/v1/workspaces/default/credits" >/dev/null || die "topping up the workspace failed"
		# the agent's credential (shown once); its caller ID is the number bought above
		CRED=$(api POST /v1/agents/bot/sip-credentials '{}' 2>/dev/null || true)
		if [ -z "$CRED" ]; then
			log "callgate: POST /v1/agents/bot/sip-credentials failed: skipping the outbound ladder"
		else
			read -r AGENT_USER AGENT_PASS < <(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["username"], d["password"])' <<<"$CRED")
			log "callgate outbound: agent $AGENT_USER -> 127.0.0.1:$CG_AGENTS, caller ID +$NUMBER -> $OUT_DEST at the SIPp PSTN"
			# usable once the snapshot has the credential: one call must succeed first
			one_out_call() {
				timeout 10 "$SIPP" -sf "$HERE/uac_agent_auth.xml" -i 127.0.0.1 -s "$OUT_DEST" -key callerid "+$NUMBER" \
					-au "$AGENT_USER" -ap "$AGENT_PASS" -m 1 -nostdin "127.0.0.1:$CG_AGENTS" </dev/null
			}
			wait_for "the agent's credential to be accepted (one outbound call)" 30 one_out_call
			SAVE_RATES=$RATES SAVE_NUMBER=$NUMBER
			RATES=$OUT_RATES UAC_SF=$HERE/uac_agent_auth.xml NUMBER=$OUT_DEST
			UAC_EXTRA=(-key callerid "+$SAVE_NUMBER" -au "$AGENT_USER" -ap "$AGENT_PASS")
			pairs_to "127.0.0.1:$CG_AGENTS"
			svcs "$OUT_DEST"
			sweep callgate-out "$CG_PID"
			CG_OUT_BEST=$BEST_RATE CG_OUT_CPU=$BEST_CPU_US
			RATES=$SAVE_RATES NUMBER=$SAVE_NUMBER UAC_SF="" UAC_EXTRA=()
		fi
	fi
	CG_HWM_KB=$(status_kb "$CG_PID" VmHWM)
	CG_LOAD_KB=$(status_kb "$CG_PID" VmRSS)
	[ -z "$PROFILE" ] || { sleep 1; cp "$PROFILE/heap.pprof" "$PROFILE/heap-load.pprof" 2>/dev/null || true; }
	report_memory callgate "$CG_PID"
	CG_PEAK_PSS=$PEAK_PSS_KB CG_AFTER_PSS=$AFTER_PSS_KB
	CG_AFTER_KB=$(status_kb "$CG_PID" VmRSS)
	if [ -n "$PROFILE" ]; then
		# a second heap profile after the idle wait (cgprof runs a GC first)
		kill -USR2 "$CG_PID"
		sleep 2
		cp "$PROFILE/heap.pprof" "$PROFILE/heap-idle.pprof" 2>/dev/null || true
		log "callgate RSS after the idle wait and one forced GC: $(mb "$(status_kb "$CG_PID" VmRSS)") MB"
	fi
	CG_HEAP=$(curl -sf "$API/metrics" | awk '$1 == "go_memstats_heap_inuse_bytes" {printf "%.1f", $2 / 1048576}')
	CG_GOR=$(curl -sf "$API/metrics" | awk '$1 == "go_goroutines" {print $2}')
	CG_ACTIVE=$(curl -sf "$API/metrics" | awk '$1 == "callgate_sip_active_calls" {print $2}')
	curl -sf "$API/metrics" | grep -E '^callgate_sip_(calls_total|dropped_total|rejected_total)' >"$WORK/cg/metrics-after.txt" || true
	grep -c 'level=ERROR' "$WORK/cg/callgate.log" >"$WORK/cg/errors" || true
	kill "$CG_PID" 2>/dev/null || true
	wait "$CG_PID" 2>/dev/null || true
	stop_uas
	if [ -n "$PROFILE" ]; then
		cp "$CG_BIN" "$PROFILE/callgate.bin"
		go tool pprof -top -nodecount=40 "$PROFILE/callgate.bin" "$PROFILE/cpu.pprof" >"$PROFILE/top.txt" 2>&1 || true
		go tool pprof -top -cum -nodecount=40 "$PROFILE/callgate.bin" "$PROFILE/cpu.pprof" >"$PROFILE/top-cum.txt" 2>&1 || true
		log "profile: $PROFILE/cpu.pprof (top: $PROFILE/top.txt, $PROFILE/top-cum.txt), heap: $PROFILE/heap.pprof"
	fi
fi

# ---------------------------------------------------------------- Kamailio
if [ $RUN_KAM = 1 ]; then
	if ! command -v "$KAMAILIO" >/dev/null; then
		log "kamailio not found: apt-get install -y kamailio (Debian 5.6); skipping the reference"
		RUN_KAM=0
	fi
fi
if [ $RUN_KAM = 1 ]; then
	KAM_PORT=$(free_port)
	mkdir -p "$WORK/kam"
	for k in $(seq 0 $((PAIRS - 1))); do echo "1 sip:127.0.0.1:${UAS_PORTS[$k]}"; done >"$WORK/kam/dispatcher.list"
	start_uas "$WORK/kam"
	KAM_ACC_ARGS=()
	if [ "$KAM_ACC" = 1 ]; then
		mkdir -p "$WORK/kam/acc"
		KAM_ACC_ARGS=(-A ACC -A "ACCDB=\"flatstore:$WORK/kam/acc\"")
	fi
	[ "$KAM_PREFAULT" = 0 ] || KAM_ACC_ARGS+=(-A PREFAULT)
	"$KAMAILIO" -f "$HERE/kamailio.cfg" -DD -E -x tlsf -m 1024 -M 16 -Y "$WORK/kam" \
		-l "udp:127.0.0.1:$KAM_PORT" -A "DSLIST=\"$WORK/kam/dispatcher.list\"" -A CHILDREN=$KAM_CHILDREN "${KAM_ACC_ARGS[@]}" \
		>"$WORK/kam/kamailio.log" 2>&1 </dev/null &
	KAM_PID=$!
	PIDS+=($KAM_PID)
	wait_for "Kamailio on port $KAM_PORT" 20 udp_bound "$KAM_PORT"
	sleep 1 # its workers fork after the socket is bound
	NUMBER=${NUMBER:-12285550100}
	log "kamailio pid $KAM_PID: SIP 127.0.0.1:$KAM_PORT -> SIPp UASs on ports ${UAS_PORTS[*]} (round robin)"
	KAM_IDLE_PSS=$(pss_kb "$KAM_PID")
	start_sampler "$KAM_PID" "$WORK/kamailio-peak"
	KAM_BEST=0 KAM_CPU=0 KAM_ACH=0
	if [ $RUN_IN = 1 ]; then
		pairs_to "127.0.0.1:$KAM_PORT"
		svcs "$NUMBER"
		sweep kamailio "$KAM_PID"
		KAM_BEST=$BEST_RATE KAM_CPU=$BEST_CPU_US KAM_ACH=$BEST_ACH
	fi
	report_memory kamailio "$KAM_PID"
	KAM_PEAK_PSS=$PEAK_PSS_KB KAM_AFTER_PSS=$AFTER_PSS_KB
	if [ "$KAM_ACC" = 1 ]; then
		# what acc wrote: one line per accounted transaction (2 per call)
		KAM_ACC_LINES=$(cat "$WORK"/kam/acc/* 2>/dev/null | wc -l)
		log "kamailio acc: $KAM_ACC_LINES records in $WORK/kam/acc"
	fi
	KAM_OUT_BEST="" KAM_OUT_CPU=""
	if [ $RUN_OUT = 1 ]; then
		# the same job for outbound calls: digest auth (one static password) then on to the PSTN
		kill "$KAM_PID" 2>/dev/null || true
		wait "$KAM_PID" 2>/dev/null || true
		KAM_OUT_PORT=$(free_port)
		"$KAMAILIO" -f "$HERE/kamailio.cfg" -DD -E -x tlsf -m 1024 -M 16 -Y "$WORK/kam" \
			-l "udp:127.0.0.1:$KAM_OUT_PORT" -A "DSLIST=\"$WORK/kam/dispatcher.list\"" -A CHILDREN=$KAM_CHILDREN \
			-A OUTBOUND -A 'AUTHPASS="bench-secret"' \
			>"$WORK/kam/kamailio-out.log" 2>&1 </dev/null &
		KAM_PID=$!
		PIDS+=($KAM_PID)
		wait_for "Kamailio (outbound) on port $KAM_OUT_PORT" 20 udp_bound "$KAM_OUT_PORT"
		sleep 1
		SAVE_RATES=$RATES SAVE_NUMBER=$NUMBER
		RATES=$OUT_RATES UAC_SF=$HERE/uac_agent_auth.xml NUMBER=$OUT_DEST
		UAC_EXTRA=(-key callerid +12285550100 -au agent -ap bench-secret)
		pairs_to "127.0.0.1:$KAM_OUT_PORT"
		svcs "$OUT_DEST"
		sweep kam-out "$KAM_PID"
		KAM_OUT_BEST=$BEST_RATE KAM_OUT_CPU=$BEST_CPU_US
		RATES=$SAVE_RATES NUMBER=$SAVE_NUMBER UAC_SF="" UAC_EXTRA=()
	fi
fi

# ---------------------------------------------------------------- harness ceiling
CEIL_BEST="" CEIL_ACH=""
if [ $RUN_IN = 1 ] && [ $RUN_CEIL = 1 ]; then
	mkdir -p "$WORK/ceil"
	ceiling
fi

# ---------------------------------------------------------------- report
echo
echo "== bench/sip: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; $DURATION s per step, retries $RETRIES, nice $NICE, $PAIRS SIPp pairs, callgate runtime (gc_percent:memory_limit_mb[:max_procs]) $CG_RUNTIME, Kamailio children $KAM_CHILDREN"
if [ -n "$CEIL_BEST" ]; then
	echo "harness ceiling (SIPp UAC -> UAS, $PAIRS pairs, no proxy): ${CEIL_BEST} calls/s at zero failures (achieved ${CEIL_ACH}/s; the ladder stops at $(echo $RATES | awk '{print $NF}'))"
	limited() { [ "$1" -gt 0 ] && [ "$1" -ge "$CEIL_BEST" ] && echo " (at or above the harness ceiling: the proxy may go faster)"; }
fi
if [ $RUN_CG = 1 ]; then
	echo "callgate: highest rate with zero failed calls: ${CG_BEST} calls/s (achieved ${CG_ACH}/s)$([ -z "$CEIL_BEST" ] || limited "$CG_BEST")"
	echo "callgate: CPU per call at that rate: ${CG_CPU} us"
	echo "callgate: memory: idle RSS $(mb "$CG_IDLE_KB") MB, peak RSS (VmHWM) $(mb "$CG_HWM_KB") MB, RSS at end of load $(mb "$CG_LOAD_KB") MB, RSS ${IDLE}s later $(mb "$CG_AFTER_KB") MB (Go heap in use ${CG_HEAP:-?} MB, goroutines ${CG_GOR:-?}, callgate_sip_active_calls ${CG_ACTIVE:-?})"
	echo "callgate: PSS idle $(mb "$CG_IDLE_PSS") MB, peak $(mb "$CG_PEAK_PSS") MB, ${IDLE}s after $(mb "$CG_AFTER_PSS") MB; error log lines: $(cat "$WORK/cg/errors" 2>/dev/null || echo 0)"
	echo "callgate targets: >=4000 calls/s $([ "$CG_BEST" -ge 4000 ] && echo PASS || echo FAIL)," \
		"<350 us/call $([ "$CG_BEST" -gt 0 ] && [ "$CG_CPU" -lt 350 ] && echo PASS || echo FAIL)," \
		"peak RSS <1 GB $([ "$CG_HWM_KB" -lt 1048576 ] && echo PASS || echo FAIL)"
fi
if [ -n "${CG_HOOK_BEST:-}" ]; then
	echo "callgate with a routing hook ($HOOK_DELAY): ${CG_HOOK_BEST} calls/s at zero failures (achieved ${CG_HOOK_ACH}/s), ${CG_HOOK_CPU} us CPU per call; hook answers 'route': ${CG_HOOK_ROUTES}"
	echo "callgate hook / no hook: rate $(awk -v a="$CG_HOOK_BEST" -v b="$CG_BEST" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }')x," \
		"CPU per call $(awk -v a="$CG_HOOK_CPU" -v b="$CG_CPU" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }')x" \
		"(target: rate >= 0.75x $([ "$CG_BEST" -gt 0 ] && [ $((CG_HOOK_BEST * 100)) -ge $((CG_BEST * 75)) ] && echo PASS || echo FAIL))"
fi
if [ $RUN_KAM = 1 ]; then
	echo "kamailio: highest rate with zero failed calls: ${KAM_BEST} calls/s (achieved ${KAM_ACH}/s)$([ -z "$CEIL_BEST" ] || limited "$KAM_BEST")"
	echo "kamailio: CPU per call at that rate: ${KAM_CPU} us (all processes)$([ "$KAM_ACC" = 1 ] && echo ", with acc: ${KAM_ACC_LINES:-0} call records written")"
	echo "kamailio: PSS (all processes) idle $(mb "$KAM_IDLE_PSS") MB, peak $(mb "$KAM_PEAK_PSS") MB, ${IDLE}s after $(mb "$KAM_AFTER_PSS") MB (its -m 1024 shared pool is touched as it fills and never returned)"
fi
if [ $RUN_CG = 1 ] && [ $RUN_KAM = 1 ]; then
	ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
	# CPU per call compared at one rate: the highest both passed with zero
	# failed calls (each proxy's passing try at that rate), not each at its
	# own best rate (CPU per call falls as the rate rises).
	COMMON=$(awk '$5 == 0 && ($1 == "callgate" || $1 == "kamailio") { cpu[$1, $2] = $8; if ($1 == "callgate") cg[$2] = 1; else kam[$2] = 1 }
		END { best = 0; for (r in cg) if ((r in kam) && r + 0 > best) best = r + 0
			if (best > 0) print best, cpu["callgate", best], cpu["kamailio", best] }' "$WORK/steps.txt")
	if [ -n "$COMMON" ]; then
		read -r COMMON_RATE COMMON_CG COMMON_KAM <<<"$COMMON"
		COMMON_TXT="CPU per call $(ratio "$COMMON_CG" "$COMMON_KAM")x at ${COMMON_RATE} calls/s, the highest rate both passed ($COMMON_CG against $COMMON_KAM us)"
	else
		COMMON_TXT="CPU per call n/a (no rate passed by both)"
	fi
	echo "callgate / kamailio: rate $(ratio "$CG_BEST" "$KAM_BEST")x, $COMMON_TXT, peak PSS $(ratio "$CG_PEAK_PSS" "$KAM_PEAK_PSS")x, PSS ${IDLE}s after $(ratio "$CG_AFTER_PSS" "$KAM_AFTER_PSS")x"
fi
if [ $RUN_OUT = 1 ]; then
	[ -z "${CG_OUT_BEST:-}" ] || echo "callgate outbound (agent digest -> callgate -> PSTN): ${CG_OUT_BEST} calls/s at zero failures, ${CG_OUT_CPU} us CPU per call"
	[ -z "${KAM_OUT_BEST:-}" ] || echo "kamailio outbound (static credential check): ${KAM_OUT_BEST} calls/s, ${KAM_OUT_CPU} us CPU per call"
	if [ -n "${CG_OUT_BEST:-}" ] && [ -n "${KAM_OUT_BEST:-}" ]; then
		echo "callgate / kamailio outbound: rate $(awk -v a="$CG_OUT_BEST" -v b="$KAM_OUT_BEST" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }')x, CPU per call $(awk -v a="$CG_OUT_CPU" -v b="$KAM_OUT_CPU" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }')x"
	fi
fi
echo "steps (proxy rate try ok failed elapsed_s cpu_ticks cpu_us/call achieved loadavg1 sys_us/call udp_drops):"
sed 's/^/  /' "$WORK/steps.txt"
