#!/usr/bin/env bash
# resilience.sh - hot-path cost of the resilience features, in one run on one machine:
#   gateway "plain" (Gateway, one Backend, one HTTPRoute `/`) against gateway "full" (the same,
#   plus every resilience feature of docs/policies.md configured so that none ever triggers).
# Both gateways run at once with `--threads 1`, pinned to the same CPU ($PROXY_CPU), but by default
# only one is loaded at a time: wrk -t1 -c50 (closed loop) alternates plain, full, plain, full, ...
# for ROUNDS rounds (MODE=concurrent loads both at once: much less noise on a shared machine).
# The load generator and the upstream (peers.sh's bench-upstream) share $LOAD_CPU.
# Loopback only, every load run is time-bounded, every process started here is killed by PID.
# Output: a table on stdout and benches/results/resilience-<date>.md (RESULTS_MD overrides).
# Knobs (env): ROUNDS=5 DURATION=10 WARMUP=2 CONNS=50 LOAD_CPU=0 PROXY_CPU=1 PIN=1 NICE=-10
#   BASE_PORT=18080 (upstream) PLAIN_PORT=18090 FULL_PORT=18091 PROBE_PORT=18092
#   PLAIN_ADMIN=127.0.0.1:18097 FULL_ADMIN=127.0.0.1:18098 PROBE_ADMIN=127.0.0.1:18096
#   SKIP_BUILD=0 SKIP_SETUP=0 VALIDATE_WAIT=1200 (s to keep retrying an invalid config: sleep 60,
#   rebuild, validate again) GATEWAY_LOG=warn KEEP=1 (keep the run dir) RESULTS_MD=path
#   RESULTS_APPEND=0 (1: append this run to RESULTS_MD instead of replacing it)
#   BENCH_CACHE=~/.cache/peers-bench (where peers.sh builds the upstream)
#   ORDER=ab (each round: plain then full; ba = full then plain; abba = ab, ba, ab, ... to cancel drift)
#   RESTART=1 (fresh gateway processes every round, so no single process's speed decides the run)
#   MODE=alternate (one gateway loaded at a time) | concurrent (one wrk per gateway at the same time,
#     so the two share CPU $PROXY_CPU and the same machine noise; compare gateway CPU us/req)
#   AA=0 (1: A/A calibration, the "full" gateway gets the plain config too, so the ratio shows the noise)
#   WAIT_QUIET=0 (s to wait, before the load, until no CPU is more than QUIET_MAX=10 % busy)
#   SUITE=resilience | observability (both gateways run the plain config; "plain" runs with
#     --metrics off --access-log off, "full" with metrics on, a JSON access log to a file for
#     every request, and trace context on every request: the hot-path cost of issue 6's
#     observability; target >= 0.95; results go to benches/results/observability-<date>.md)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-50}
LOAD_CPU=${LOAD_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
PIN=${PIN:-1}
NICE=${NICE:--10}
BASE_PORT=${BASE_PORT:-18080}
PLAIN_PORT=${PLAIN_PORT:-18090}
FULL_PORT=${FULL_PORT:-18091}
PROBE_PORT=${PROBE_PORT:-18092}
PLAIN_ADMIN=${PLAIN_ADMIN:-127.0.0.1:18097}
FULL_ADMIN=${FULL_ADMIN:-127.0.0.1:18098}
PROBE_ADMIN=${PROBE_ADMIN:-127.0.0.1:18096}
VALIDATE_WAIT=${VALIDATE_WAIT:-1200}
WAIT_QUIET=${WAIT_QUIET:-0}
ORDER=${ORDER:-ab}
MODE=${MODE:-alternate}
RESTART=${RESTART:-1}
AA=${AA:-0}
QUIET_MAX=${QUIET_MAX:-10}
GATEWAY_LOG=${GATEWAY_LOG:-warn}
RESULTS_APPEND=${RESULTS_APPEND:-0}
KEEP=${KEEP:-1}
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/peers-bench}
UPSTREAM_DIR=${UPSTREAM_DIR:-$BENCH_CACHE/upstream}
SUITE=${SUITE:-resilience}
[[ $SUITE =~ ^(resilience|observability)$ ]] || { echo "SUITE must be resilience or observability" >&2; exit 1; }
if [[ $SUITE == observability ]]; then TARGET=0.95; else TARGET=0.9; fi
RESULTS_MD=${RESULTS_MD:-$REPO/benches/results/$SUITE-$(date -u +%F).md}

log() { printf '[resilience %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $ORDER =~ ^(ab|ba|abba)$ ]] || die "ORDER must be ab, ba or abba"
[[ $MODE =~ ^(alternate|concurrent)$ ]] || die "MODE must be alternate or concurrent"
pin() {  # command prefix: nice + taskset (both exec, so $! is the real PID)
  local p=""
  if [[ $NICE != 0 ]]; then p="nice -n $NICE"; fi
  if [[ $PIN == 1 ]]; then p="$p taskset -c $1"; fi
  echo "$p"
}

# ------------------------------------------------------------------- run dir + cleanup ----
TMP=$(mktemp -d -t switchyard-resilience.XXXXXX)
chmod 755 "$TMP"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
proc_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }  # utime+stime

# ------------------------------------------------------------------------ preflight ----
for c in curl python3 ss awk; do command -v "$c" >/dev/null || die "missing $c"; done
if [[ ${SKIP_SETUP:-0} != 1 ]] && ! command -v wrk >/dev/null; then
  log "wrk missing: setup.sh (BUILD_OHA=0)"
  BUILD_OHA=0 bash "$HERE/setup.sh"
fi
command -v wrk >/dev/null || die "missing wrk (bash $HERE/setup.sh)"
if [[ $PIN == 1 ]]; then
  command -v taskset >/dev/null || die "missing taskset (util-linux)"
  (( $(nproc) >= 2 )) || { log "only $(nproc) CPU: no pinning"; PIN=0; }
fi
for p in "$BASE_PORT" "$PLAIN_PORT" "$FULL_PORT" "$PROBE_PORT" "${PLAIN_ADMIN##*:}" "${FULL_ADMIN##*:}" "${PROBE_ADMIN##*:}"; do
  port_free "$p" || die "port $p on loopback is busy"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

build() { (cd "$REPO" && cargo build --release -p switchyard) >"$TMP/build.log" 2>&1 || { tail -30 "$TMP/build.log" >&2; return 1; }; }
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "cargo build --release -p switchyard"
  build || die "build failed (log: $TMP/build.log)"
fi
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/switchyard
[[ -x $BIN ]] || die "no gateway binary at $BIN"

# ------------------------------------------------------------------------ upstream ----
# The same upstream as peers.sh (hyper, 13-byte 200, /__bench/conns counts accepted connections).
# Its source lives in peers.sh's heredocs; extract them so the two can never drift apart.
UP_BIN=$UPSTREAM_DIR/target/release/bench-upstream
UP_SRC=$TMP/upstream-src; mkdir -p "$UP_SRC/src"
heredoc() { awk -v start="$1" 'index($0, start) == 1 {on = 1; next} on && $0 == "EOF" {exit} on {print}' "$HERE/peers.sh"; }
heredoc 'cat >"$UP_SRC/Cargo.toml" <<'"'EOF'" >"$UP_SRC/Cargo.toml"
heredoc 'cat >"$UP_SRC/src/main.rs" <<'"'EOF'" >"$UP_SRC/src/main.rs"
[[ -s $UP_SRC/Cargo.toml && -s $UP_SRC/src/main.rs ]] || die "could not extract the upstream source from peers.sh"
if [[ ! -x $UP_BIN ]] || ! cmp -s "$UP_SRC/src/main.rs" "$UPSTREAM_DIR/src/main.rs" || ! cmp -s "$UP_SRC/Cargo.toml" "$UPSTREAM_DIR/Cargo.toml"; then
  log "building the bench upstream in $UPSTREAM_DIR (one-off, ~1 min)"
  mkdir -p "$UPSTREAM_DIR/src"
  cp "$UP_SRC/Cargo.toml" "$UPSTREAM_DIR/Cargo.toml"; cp "$UP_SRC/src/main.rs" "$UPSTREAM_DIR/src/main.rs"
  (cd "$UPSTREAM_DIR" && timeout 900 cargo build --release -q) || die "upstream build failed"
fi
UP_ADDR=127.0.0.1:$BASE_PORT

# ------------------------------------------------------------------------ configs ----
gateway_yaml() {  # gateway_yaml PORT [extra backends...]
  cat <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench}
spec:
  gatewayClassName: switchyard
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners: [{name: http, port: $1, protocol: HTTP}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: upstream}
spec: {endpoints: [{address: "$UP_ADDR"}]}
EOF
}
write_plain() {  # write_plain DIR PORT
  mkdir -p "$1"
  gateway_yaml "$2" >"$1/gateway.yaml"
  cat >"$1/route.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - backendRefs: [{group: switchyard.dev, kind: Backend, name: upstream}]
EOF
}
write_full() {  # write_full DIR PORT [ABORT_PERCENT] : every resilience feature, none triggering
  local abort=${3:-0.0001}
  mkdir -p "$1"
  gateway_yaml "$2" >"$1/gateway.yaml"
  cat >>"$1/gateway.yaml" <<EOF
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: canary}
spec: {endpoints: [{address: "$UP_ADDR"}]}   # the same upstream: a split that costs nothing upstream
EOF
  cat >"$1/policies.yaml" <<EOF
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: bench}
spec:
  targetRefs:
  - {group: switchyard.dev, kind: Backend, name: upstream}
  - {group: switchyard.dev, kind: Backend, name: canary}
  circuitBreaker: {maxConnections: 100000, maxPendingRequests: 100000, maxRequests: 100000, maxRetries: 100000}
  outlierDetection:
    consecutive5xx: 5
    consecutiveGatewayErrors: 5
    successRate: {threshold: 80, minimumHosts: 1, requestVolume: 100}
    interval: 10s
    baseEjectionTime: 30s
    maxEjectionTime: 300s
    maxEjectionPercent: 50
  healthCheck:
    interval: 1s
    timeout: 500ms
    healthyThreshold: 2
    unhealthyThreshold: 3
    tcp: {}
  panicThreshold: 50
  retryBudget: {ratio: 20, minRetriesPerSecond: 10, window: 10s}
---
apiVersion: switchyard.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: bench}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: bench}]
  rateLimit: {requests: 10000000, per: 1s, key: {clientIP: true}}
  fault:
    delay: {fixedDelay: 1s, percentage: 0.0001}
    abort: {httpStatus: 418, percentage: $abort}
  retry: {on: [connect-failure, reset, retriable-status-codes], perTryTimeout: 2s}
  cohort:
    pin: {header: x-canary}
    sticky: {hashOn: {header: x-user-id}}
  timeouts: {downstreamIdle: 60s}
EOF
  cat >"$1/route.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - name: main
    timeouts: {request: 10s, backendRequest: 5s}
    retry: {codes: [503], attempts: 2, backoff: 10ms}
    backendRefs:
    - {group: switchyard.dev, kind: Backend, name: upstream, weight: 90}
    - {group: switchyard.dev, kind: Backend, name: canary, weight: 10}
EOF
}
PLAIN=$TMP/plain FULL=$TMP/full PROBE=$TMP/probe
write_plain "$PLAIN" "$PLAIN_PORT"
if [[ $AA == 1 ]]; then
  write_plain "$FULL" "$FULL_PORT"; log "AA=1: the full gateway runs the plain config (calibration)"
elif [[ $SUITE == observability ]]; then
  write_plain "$FULL" "$FULL_PORT"; log "SUITE=observability: both gateways run the plain config; full has metrics, access log and tracing on"
else
  write_full "$FULL" "$FULL_PORT"
fi
write_full "$PROBE" "$PROBE_PORT" 100   # the full config with abort at 100%: proves the TrafficPolicy attaches

validate_all() {
  local d ok=0
  for d in "$PLAIN" "$FULL" "$PROBE"; do
    if ! "$BIN" validate "$d" >"$d.validate.txt" 2>&1; then
      log "config ${d##*/} rejected:"; sed 's/^/    /' "$d.validate.txt" >&2; ok=1
    fi
  done
  return $ok
}
t_val=$SECONDS
until validate_all; do
  (( SECONDS - t_val + 60 <= VALIDATE_WAIT )) || die "configs still invalid after ${VALIDATE_WAIT}s (VALIDATE_WAIT); see above"
  log "waiting 60 s for the parser to catch up, then rebuilding and validating again"
  sleep 60
  if [[ ${SKIP_BUILD:-0} != 1 ]]; then build || log "rebuild failed (log: $TMP/build.log); retrying later"; fi
done
log "plain, full and probe configs valid"

# ------------------------------------------------------------------------ processes ----
start_bg upstream "$LOAD_CPU" "$UP_BIN" "$UP_ADDR" 13
UP_PID=$LAST_PID
wait_code 200 "http://$UP_ADDR/" 10 || die "upstream did not come up (see $TMP/upstream.log)"
# Per-gateway flags: the observability suite turns metrics, the access log and tracing off on
# "plain" and on on "full" (AA=1: both off).
PLAIN_FLAGS=() FULL_FLAGS=()
if [[ $SUITE == observability ]]; then
  PLAIN_FLAGS=(--metrics off --access-log off)
  if [[ $AA == 1 ]]; then FULL_FLAGS=("${PLAIN_FLAGS[@]}")
  else FULL_FLAGS=(--metrics on --access-log "$TMP/access-full.log" --access-log-sample 1 --trace-sample 1); fi
  # OBS_FULL_FLAGS replaces the full gateway's flags (one feature at a time); {TMP} is the run dir.
  if [[ -n ${OBS_FULL_FLAGS:-} ]]; then read -r -a FULL_FLAGS <<<"${OBS_FULL_FLAGS//\{TMP\}/$TMP}"; fi
fi
gw() {  # gw NAME DIR ADMIN [FLAGS...] -> LAST_PID
  local name=$1 dir=$2 admin=$3; shift 3
  start_bg "$name" "$PROXY_CPU" env RUST_LOG="$GATEWAY_LOG" "$BIN" gateway --config-dir "$dir" --admin "$admin" --threads 1 --grace-period 1 "$@"
}
gw probe "$PROBE" "$PROBE_ADMIN"; PROBE_PID=$LAST_PID
gw plain-0 "$PLAIN" "$PLAIN_ADMIN" "${PLAIN_FLAGS[@]}"; PLAIN_PID=$LAST_PID
gw full-0 "$FULL" "$FULL_ADMIN" "${FULL_FLAGS[@]}"; FULL_PID=$LAST_PID
PLAIN_URL=http://127.0.0.1:$PLAIN_PORT/ FULL_URL=http://127.0.0.1:$FULL_PORT/ PROBE_URL=http://127.0.0.1:$PROBE_PORT/

# ------------------------------------------------------------------------ checks ----
CHECKS=()
check() {  # check DESCRIPTION WANT GOT
  if [[ $2 == "$3" ]]; then CHECKS+=("ok: $1 ($3)"); log "check ok: $1 ($3)"
  else CHECKS+=("FAILED: $1 (want $2, got $3)"); die "check failed: $1: want $2, got $3"; fi
}
wait_code 200 "$PLAIN_URL" 15 || die "plain gateway did not answer 200 (see $TMP/plain-0.log)"
wait_code 200 "$FULL_URL" 15 || die "full gateway did not answer 200 (see $TMP/full-0.log)"
wait_code 418 "$PROBE_URL" 15 || die "probe gateway (fault abort 100%) did not answer 418 (see $TMP/probe.log)"
check "plain GET /" 200 "$(code_of "$PLAIN_URL")"
check "full GET /" 200 "$(code_of "$FULL_URL")"
if [[ $SUITE == observability ]]; then
  stop_pid "$PROBE_PID"
  check "plain: /metrics is off" 404 "$(code_of "http://$PLAIN_ADMIN/metrics")"
  if [[ $AA != 1 && -z ${OBS_FULL_FLAGS:-} ]]; then
    check "full: /metrics answers" 200 "$(code_of "http://$FULL_ADMIN/metrics")"
    sleep 1.5
    check "full: the access log has JSON lines" 1 "$( [[ -s $TMP/access-full.log ]] && head -1 "$TMP/access-full.log" | python3 -c 'import json,sys; json.loads(sys.stdin.readline()); print(1)' 2>/dev/null || echo 0)"
  fi
else
check "full GET / pinned to backend canary (x-canary: canary)" 200 "$(code_of -H 'x-canary: canary' "$FULL_URL")"
check "full GET / pinned to backend upstream (x-canary: upstream)" 200 "$(code_of -H 'x-canary: upstream' "$FULL_URL")"
check "full GET / sticky (x-user-id: u1)" 200 "$(code_of -H 'x-user-id: u1' "$FULL_URL")"
check "probe (full config with fault abort 100%) GET /" 418 "$(code_of "$PROBE_URL")"
stop_pid "$PROBE_PID"
fi
# Health checks: the full gateway probes both Backends (one address) over TCP every second, so the
# upstream's accepted-connection counter grows by about 2/s while nothing else connects.
c0=$(curl -s --max-time 2 "http://$UP_ADDR/__bench/conns"); sleep 3.2
c1=$(curl -s --max-time 2 "http://$UP_ADDR/__bench/conns")
hc=$(( c1 - c0 - 1 ))   # -1: the second probe's own connection
if [[ $AA == 1 || $SUITE == observability ]]; then
  log "no health-check check in this mode ($hc new upstream connections in 3.2 s idle)"
elif (( hc >= 2 )); then
  check "full: active TCP health checks reach the upstream (new upstream connections in 3.2 s idle: $hc)" ">=2" ">=2"
else
  check "full: active TCP health checks reach the upstream (new upstream connections in 3.2 s idle)" ">=2" "$hc"
fi

# ------------------------------------------------------------------------ load ----
cat >"$TMP/report.lua" <<'EOF'
-- wrk: machine-readable summary (latencies in microseconds), as in peers.sh
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format("RESULT rps=%.1f reqs=%d p50=%d p99=%d p999=%d max=%d sockerr=%d non2xx=%d\n",
    s.requests / (s.duration / 1e6), s.requests, lat:percentile(50), lat:percentile(99),
    lat:percentile(99.9), lat.max, e.connect + e.read + e.write + e.timeout, e.status))
end
EOF
cat >"$TMP/procsnap.py" <<'EOF'
# as in peers.sh: snap = "pid ppid ticks" of every user-space process; diff A B SECONDS EXCLUDE... = CPU
# (cores) used meanwhile by long-lived processes other than EXCLUDE (and their children)
import os, sys
def snap():
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try: f = open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()
        except OSError: continue
        if f[1] == "2" or p == "2": continue
        out[p] = (f[1], int(f[11]) + int(f[12]))
    return out
if sys.argv[1] == "snap":
    for p, (pp, t) in snap().items(): print(p, pp, t)
else:
    rd = lambda fn: {l.split()[0]: (l.split()[1], int(l.split()[2])) for l in open(fn)}
    a, b, secs, excl = rd(sys.argv[2]), rd(sys.argv[3]), float(sys.argv[4]), set(sys.argv[5:])
    ours = lambda p, m: p in excl or m.get(p, ("0", 0))[0] in excl
    used = sum(t - a.get(p, ("", 0))[1] for p, (pp, t) in b.items() if not ours(p, b))
    print("%.2f" % max(0.0, used / os.sysconf("SC_CLK_TCK") / secs))
EOF
RES=$TMP/results.tsv
printf 'round\ttarget\trps\treqs\tp50\tp99\tp999\tmax\terrors\tcpu_load\tcpu_proxy\tbg_cores\tup_conns\tsteal\tgw_us_per_req\n' >"$RES"
url_of() { if [[ $1 == plain ]]; then echo "$PLAIN_URL"; else echo "$FULL_URL"; fi; }
pid_of() { if [[ $1 == plain ]]; then echo "$PLAIN_PID"; else echo "$FULL_PID"; fi; }
load() {  # load ROUND NAME... : a warm-up, then one measured wrk per NAME, all at the same time
  local r=$1; shift
  local tag="r$r-${*// /+}" n p i=0 s0 s1 t0 uc0 uc1 upc=- bg c0=- c1=- st gus line
  local rps reqs p50 p99 p999 max sockerr non2xx wp=() g0=() g1=()
  for n in "$@"; do
    # shellcheck disable=SC2046
    timeout $((WARMUP + 15)) $(pin "$LOAD_CPU") wrk -t1 -c "$CONNS" -d "${WARMUP}s" "$(url_of "$n")" >/dev/null 2>&1 &
    wp+=($!); PIDS+=($!)
  done
  for p in "${wp[@]}"; do wait "$p" || true; done
  uc0=$(curl -s --max-time 2 "http://$UP_ADDR/__bench/conns" || echo "")
  python3 "$TMP/procsnap.py" snap >"$TMP/$tag.snap0"; s0=$(cpu_snap); t0=$SECONDS
  for n in "$@"; do g0+=("$(proc_ticks "$(pid_of "$n")")"); done
  wp=()
  for n in "$@"; do
    # shellcheck disable=SC2046
    timeout $((DURATION + 20)) $(pin "$LOAD_CPU") wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency -s "$TMP/report.lua" \
      "$(url_of "$n")" >"$TMP/r$r-$n.txt" 2>&1 &
    wp+=($!); PIDS+=($!)
  done
  for p in "${wp[@]}"; do wait "$p" || true; done
  for n in "$@"; do g1+=("$(proc_ticks "$(pid_of "$n")")"); done
  s1=$(cpu_snap); python3 "$TMP/procsnap.py" snap >"$TMP/$tag.snap1"
  uc1=$(curl -s --max-time 2 "http://$UP_ADDR/__bench/conns" || echo "")
  [[ $uc0 =~ ^[0-9]+$ && $uc1 =~ ^[0-9]+$ ]] && upc=$((uc1 - uc0 - 1))   # -1: the probe's own connection
  bg=$(python3 "$TMP/procsnap.py" diff "$TMP/$tag.snap0" "$TMP/$tag.snap1" "$((SECONDS - t0))" $$ "$UP_PID" "$PLAIN_PID" "$FULL_PID")
  if [[ $PIN == 1 ]]; then c0=$(cpu_busy "$s0" "$s1" "$LOAD_CPU"); c1=$(cpu_busy "$s0" "$s1" "$PROXY_CPU"); fi
  st=$(cpu_busy "$s0" "$s1" "")
  for n in "$@"; do
    line=$(grep '^RESULT' "$TMP/r$r-$n.txt" || echo "RESULT rps=0 reqs=0 p50=0 p99=0 p999=0 max=0 sockerr=0 non2xx=-1")
    eval "${line#RESULT }"
    gus=$(awk -v a="${g0[$i]}" -v b="${g1[$i]}" -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", (n > 0 ? (b-a)/hz*1e6/n : 0)}')
    i=$((i + 1))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$n" "$rps" "$reqs" "$p50" "$p99" "$p999" \
      "$max" "$((sockerr + non2xx))" "$c0" "$c1" "$bg" "$upc" "$st" "$gus" >>"$RES"
    log "round $r $n: $rps req/s, p50 $((p50))us p99 $((p99))us, errors $((sockerr + non2xx)), cpu load/proxy $c0/$c1 %, steal $st %, gateway CPU $gus us/req, bg cores $bg, new upstream conns $upc"
  done
}
start_gateways() {  # start_gateways TAG FIRST: a fresh plain and full gateway, FIRST (plain|full) started first
  if [[ $2 == plain ]]; then
    gw "plain-$1" "$PLAIN" "$PLAIN_ADMIN" "${PLAIN_FLAGS[@]}"; PLAIN_PID=$LAST_PID; gw "full-$1" "$FULL" "$FULL_ADMIN" "${FULL_FLAGS[@]}"; FULL_PID=$LAST_PID
  else
    gw "full-$1" "$FULL" "$FULL_ADMIN" "${FULL_FLAGS[@]}"; FULL_PID=$LAST_PID; gw "plain-$1" "$PLAIN" "$PLAIN_ADMIN" "${PLAIN_FLAGS[@]}"; PLAIN_PID=$LAST_PID
  fi
  wait_code 200 "$PLAIN_URL" 15 || die "plain gateway did not answer 200 (see $TMP/plain-$1.log)"
  wait_code 200 "$FULL_URL" 15 || die "full gateway did not answer 200 (see $TMP/full-$1.log)"
}
stop_gateways() { stop_pid "$PLAIN_PID"; stop_pid "$FULL_PID"; }
quiet_check() {  # busy % of LOAD_CPU and PROXY_CPU over 2 s -> "b0 b1"
  local a b; a=$(cpu_snap); sleep 2; b=$(cpu_snap)
  echo "$(cpu_busy "$a" "$b" "$LOAD_CPU") $(cpu_busy "$a" "$b" "$PROXY_CPU")"
}
t_q=$SECONDS
read -r B0 B1 < <(quiet_check)
while (( (B0 > QUIET_MAX || B1 > QUIET_MAX) && SECONDS - t_q < WAIT_QUIET )); do
  log "machine busy (cpu$LOAD_CPU $B0%, cpu$PROXY_CPU $B1%), waiting for quiet"; sleep 8; read -r B0 B1 < <(quiet_check)
done
BG_START="cpu$LOAD_CPU $B0%, cpu$PROXY_CPU $B1%"
(( B0 > QUIET_MAX || B1 > QUIET_MAX )) && log "WARNING: machine not idle ($BG_START): results will be noisy"
log "busy before start: $BG_START; $ROUNDS rounds x (plain, full) MODE=$MODE ORDER=$ORDER RESTART=$RESTART, warm-up ${WARMUP}s + ${DURATION}s each, wrk -t1 -c$CONNS"
T0=$SECONDS
for r in $(seq 1 "$ROUNDS"); do
  if [[ $ORDER == ba || ( $ORDER == abba && $((r % 2)) == 0 ) ]]; then first=full second=plain; else first=plain second=full; fi
  if [[ $RESTART == 1 ]]; then stop_gateways; start_gateways "$r" "$first"; fi
  if [[ $MODE == concurrent ]]; then load "$r" "$first" "$second"; else load "$r" "$first"; load "$r" "$second"; fi
done
# Still serving, and RSS after the load (the resilience state is per backend/endpoint, small).
check "plain GET / after the load" 200 "$(code_of "$PLAIN_URL")"
check "full GET / after the load" 200 "$(code_of "$FULL_URL")"
RSS_PLAIN=$(ps -o rss= -p "$PLAIN_PID" | awk '{printf "%.1f", $1/1024}')
RSS_FULL=$(ps -o rss= -p "$FULL_PID" | awk '{printf "%.1f", $1/1024}')
ELAPSED=$((SECONDS - T0))

# ------------------------------------------------------------------------ report ----
VERSION=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo dev)
BUILT=$(date -u -r "$BIN" '+%F %T UTC')
printf '%s\n' "${CHECKS[@]}" >"$TMP/checks.txt"
ACCESS_LINES=$( [[ -f $TMP/access-full.log ]] && wc -l <"$TMP/access-full.log" || echo 0 )
if [[ $SUITE == observability ]]; then
  TITLE="Observability hot-path cost"
  CONFIGS='- **plain** and **full** run the same config (Gateway, one Backend -> upstream, one HTTPRoute
  `/`). **plain**: `--metrics off --access-log off`. **full**: `--metrics on` (every request
  recorded in the Prometheus series of gateway/src/metrics/catalogue.rs), `--access-log FILE
  --access-log-sample 1` (one JSON line per request, written by the writer thread to a file) and
  `--trace-sample 1` (W3C trace context parsed or started, and a traceparent written upstream, on
  every request; no OTLP export).'
else
  TITLE="Resilience hot-path cost"
  CONFIGS='- **plain**: Gateway, one Backend -> upstream, one HTTPRoute `/` -> that Backend.
- **full**: the same listener on another port plus every resilience feature, none triggering:
  BackendPolicy on two Backends (same upstream address) with circuitBreaker (all four limits
  100000), outlierDetection (consecutive5xx 5, consecutiveGatewayErrors 5, successRate threshold
  80), TCP healthCheck every 1s, panicThreshold 50, retryBudget; the rule has
  `timeouts: {request: 10s, backendRequest: 5s}`, `retry: {codes: [503], attempts: 2,
  backoff: 10ms}` and a 90/10 split of the two Backends; a TrafficPolicy on the route with
  rateLimit (10,000,000 per 1s by client IP), fault delay and abort at 0.0001%, retry on
  connect-failure/reset/retriable-status-codes with perTryTimeout 2s, cohort (pin header
  `x-canary`, sticky hashOn header `x-user-id`) and downstreamIdle 60s.'
fi
mkdir -p "$(dirname "$RESULTS_MD")"
python3 - "$RES" "$RESULTS_MD" "$TMP" <<EOF
import csv, statistics, sys, datetime
res, md, tmp = sys.argv[1:]
rows = list(csv.DictReader(open(res), delimiter="\t"))
by = {}
for r in rows: by.setdefault(r["round"], {})[r["target"]] = r
ms = lambda us: "%.2f" % (float(us) / 1000.0)
lines, ratios, rp, rf = [], [], [], []
lines.append("| round | first | plain req/s | full req/s | full / plain | plain p50 / p99 ms | full p50 / p99 ms | non-2xx+errors p/f | gateway CPU us/req p/f | new upstream conns p/f | cpu load/proxy % p | cpu load/proxy % f | steal % p/f | bg cores p/f |")
lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
order = [r["round"] + r["target"] for r in rows]
for k in sorted(by, key=int):
    p, f = by[k].get("plain"), by[k].get("full")
    if not p or not f: continue
    a, b = float(p["rps"]), float(f["rps"])
    ratio = b / a if a > 0 else 0.0
    ratios.append(ratio); rp.append(a); rf.append(b)
    first = "plain" if order.index(k + "plain") < order.index(k + "full") else "full"
    lines.append("| %s | %s | %.0f | %.0f | %.3f | %s / %s | %s / %s | %s / %s | %s / %s | %s / %s | %s/%s | %s/%s | %s / %s | %s / %s |" % (
        k, first, a, b, ratio, ms(p["p50"]), ms(p["p99"]), ms(f["p50"]), ms(f["p99"]), p["errors"], f["errors"],
        p["gw_us_per_req"], f["gw_us_per_req"], p["up_conns"], f["up_conns"], p["cpu_load"], p["cpu_proxy"], f["cpu_load"], f["cpu_proxy"], p["steal"], f["steal"], p["bg_cores"], f["bg_cores"]))
med = lambda xs: statistics.median(xs) if xs else 0.0
medf = lambda key, t: med([float(r[key]) for r in rows if r["target"] == t])
mr = med(ratios)
summary = [
    "",
    "| | plain | full |",
    "|---|---|---|",
    "| median req/s | %.0f | %.0f |" % (med(rp), med(rf)),
    "| median p50 ms | %s | %s |" % (ms(medf("p50", "plain")), ms(medf("p50", "full"))),
    "| median p99 ms | %s | %s |" % (ms(medf("p99", "plain")), ms(medf("p99", "full"))),
    "| median max latency ms | %s | %s |" % (ms(medf("max", "plain")), ms(medf("max", "full"))),
    "| median gateway CPU us/req | %.1f | %.1f |" % (medf("gw_us_per_req", "plain"), medf("gw_us_per_req", "full")),
    "| RSS after the load, MiB | $RSS_PLAIN | $RSS_FULL |",
    "",
    "**Median full / plain ratio: %.3f** (per round: %s; min %.3f, max %.3f). Target >= $TARGET: **%s**." % (
        mr, ", ".join("%.3f" % x for x in ratios), min(ratios or [0]), max(ratios or [0]), "met" if mr >= $TARGET else "missed"),
]
freqs = sum(int(r["reqs"]) for r in rows if r["target"] == "full")
ferrs = sum(int(r["errors"]) for r in rows if r["target"] == "full")
summary.append("")
if "$SUITE" == "observability":
    summary.append("Full gateway: %d measured requests, %d non-2xx or errors; access log lines written: $ACCESS_LINES." % (freqs, ferrs))
else:
  summary.append("The full config's fault delay (1 s) and abort (HTTP 418) fire at 0.0001%% (the smallest non-zero "
               "percentage): about %.1f of each over its %d measured requests; its non-2xx count was %d." % (freqs / 1e6, freqs, ferrs))
bgmax = max([float(r["bg_cores"]) for r in rows] or [0])
if bgmax > 0.1:
    summary.append("")
    summary.append("Noisy: bg cores reached %.2f in at least one run (> 0.1 = contaminated); compare within a round." % bgmax)
table = "\n".join(lines + summary)
print(); print(table); print()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
checks_md = "\n".join("- " + c for c in open(tmp + "/checks.txt").read().strip().splitlines())
doc = f"""# $TITLE ({now}, commit $VERSION, $(nproc) cores)

Command: \`SUITE=$SUITE MODE=$MODE ORDER=$ORDER RESTART=$RESTART ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP AA=$AA bash benches/peers/resilience.sh\`
(binary \`target/release/switchyard\` built $BUILT; SUITE=$SUITE). Two gateways run side by side with
\`--threads 1\`, both pinned to CPU $PROXY_CPU; the upstream (peers.sh's bench-upstream, 13-byte
200) and \`wrk -t1 -c$CONNS\` (closed loop, keep-alive) share CPU $LOAD_CPU; nice $NICE.
$( if [[ $MODE == concurrent ]]; then
  echo "MODE=concurrent: both gateways are loaded at the same time (one wrk each), so they share CPU $PROXY_CPU"
  echo "and the machine's noise; the req/s ratio is then about the inverse ratio of CPU per request."
else
  echo "MODE=alternate: only one gateway is loaded at a time; ORDER=$ORDER (ab: plain then full in every"
  echo "round; ba: full then plain; abba: the two alternately)."
fi )
$( [[ $RESTART == 1 ]] && echo "RESTART=1: both gateways are started afresh before every round." )
A ${WARMUP}s warm-up precedes each ${DURATION}s run. Busy before the start: $BG_START. Load phase: ${ELAPSED}s.$( [[ $AA == 1 ]] && printf '\n\n%s' '**AA=1 calibration run: the "full" gateway below ran the plain config.**' )

$(printf '%s' "$CONFIGS" | sed 's/{/{{/g; s/}/}}/g')

Checks before the load (the probe gateway runs the full config with the fault abort at 100%,
to prove the TrafficPolicy attaches to the route; it is stopped before the load):
{checks_md}

{table}

Columns: gateway CPU us/req = the gateway process's CPU time (all threads) / requests in the run;
latency from wrk (\`--latency\`, closed loop at max throughput, so it mostly reflects
queueing); cpu load/proxy % = busy % of CPU $LOAD_CPU / CPU $PROXY_CPU during the run; bg cores =
CPU used by other long-lived processes during the run (> 0.1 = contaminated); steal % = CPU time
the hypervisor gave to other guests (all CPUs), invisible to bg cores.
"""
if "$RESULTS_APPEND" == "1":
    open(md, "a").write("\n---\n\n" + doc.replace("# $TITLE (",
        "## $TITLE, MODE=$MODE ORDER=$ORDER ROUNDS=$ROUNDS%s (" % (" AA=1 (calibration)" if "$AA" == "1" else ""), 1))
else:
    open(md, "w").write(doc)
EOF
log "results: $RESULTS_MD"
