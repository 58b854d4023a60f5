#!/usr/bin/env bash
# eastwest.sh - the cost of an east-west hop, in one run on one machine:
#   path "one": wrk -> gw-b (zone-b, HTTP) -> upstream
#   path "two": wrk -> gw-a (zone-a, HTTP) -> mTLS east-west -> gw-b (zone-b) -> upstream
# One route file set: Gateway gw-a (zone-a, HTTP listener), Gateway gw-b (zone-b, HTTP listener +
# switchyard.dev/EastWest listener), both on 127.0.0.1; Backend `upstream` whose only endpoint
# (peers.sh's bench-upstream) is in zone-b; one HTTPRoute `/` attached to both. gw-a has no local
# endpoint, so it fails the Backend over to zone-b through gw-b's east-west listener. Both gateways
# are standalone, `--threads 1`, with mesh certificates from one CA dir (`cert init-ca`).
# Each round loads one path at a time with wrk -t1 -c$CONNS --latency (closed loop), in the order
# ORDER (abba: one,two then two,one, ... to cancel drift), and records req/s and p99.
# CPU placement (PIN) is part of the result:
#   split  (default) each gateway on its own core (gw-a on A_CPU, gw-b on B_CPU), as in production
#          where they are separate machines; wrk and the upstream unpinned. Measures what a hop
#          does to a client's throughput and latency when each gateway has a core of its own.
#   shared both gateways on PROXY_CPU, wrk and the upstream on LOAD_CPU. Path two then pays for
#          both gateways out of one core's budget, so two/one ~ the inverse ratio of gateway CPU
#          per request: the resource cost of the hop.
#   none   nothing pinned.   PIN may list several modes ("split shared"): each runs in turn.
# Loopback only, every load run is time-bounded, every process started here is killed by PID.
# Output: a table on stdout and benches/results/eastwest-<date>.md (RESULTS_MD overrides).
# Knobs (env): ROUNDS=5 DURATION=10 WARMUP=2 CONNS=50 ORDER=abba (ab|ba|abba) PIN=split
#   A_CPU=0 B_CPU=1 (split) PROXY_CPU=1 LOAD_CPU=0 (shared) NICE=-10 RESTART=0 (1: fresh gateways
#   every round) BASE_PORT=18100 (upstream) A_PORT=18110 B_PORT=18111 EW_PORT=18112
#   A_ADMIN=127.0.0.1:18117 B_ADMIN=127.0.0.1:18118 VERIFY_N=200 (requests of the crossing check)
#   RATE=2000 RATE_DURATION=5 (after each max run, a paced run at about RATE req/s, as peers.sh's wrk
#   fallback: each connection waits CONNS*1000/RATE ms between requests; its p50/p99 are the hop's
#   latency without queueing; RATE=0 skips it)
#   TRUST_DOMAIN=switchyard.local SKIP_BUILD=0 SKIP_SETUP=0 GATEWAY_LOG=warn KEEP=1 (keep the run
#   dir) RESULTS_MD=path RESULTS_APPEND=0 (1: append to RESULTS_MD) BENCH_CACHE=~/.cache/peers-bench
#   WAIT_QUIET=0 (s to wait, before each mode, until no CPU is more than QUIET_MAX=10 % busy)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-50}
ORDER=${ORDER:-abba}
PIN=${PIN:-split}
A_CPU=${A_CPU:-0}
B_CPU=${B_CPU:-1}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
NICE=${NICE:--10}
RESTART=${RESTART:-0}
BASE_PORT=${BASE_PORT:-18100}
A_PORT=${A_PORT:-18110}
B_PORT=${B_PORT:-18111}
EW_PORT=${EW_PORT:-18112}
A_ADMIN=${A_ADMIN:-127.0.0.1:18117}
B_ADMIN=${B_ADMIN:-127.0.0.1:18118}
VERIFY_N=${VERIFY_N:-200}
RATE=${RATE:-2000}
RATE_DURATION=${RATE_DURATION:-5}
TRUST_DOMAIN=${TRUST_DOMAIN:-switchyard.local}
WAIT_QUIET=${WAIT_QUIET:-0}
QUIET_MAX=${QUIET_MAX:-10}
GATEWAY_LOG=${GATEWAY_LOG:-warn}
RESULTS_APPEND=${RESULTS_APPEND:-0}
KEEP=${KEEP:-1}
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/peers-bench}
UPSTREAM_DIR=${UPSTREAM_DIR:-$BENCH_CACHE/upstream}
RESULTS_MD=${RESULTS_MD:-$REPO/benches/results/eastwest-$(date -u +%F).md}

log() { printf '[eastwest %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
[[ $VERIFY_N =~ ^[1-9][0-9]*$ ]] || die "VERIFY_N must be a positive integer"
[[ $RATE =~ ^[0-9]+$ && $RATE_DURATION =~ ^[1-9][0-9]*$ ]] || die "RATE must be a number, RATE_DURATION a positive integer"
[[ $ORDER =~ ^(ab|ba|abba)$ ]] || die "ORDER must be ab, ba or abba"
for m in $PIN; do [[ $m =~ ^(split|shared|none)$ ]] || die "PIN must list split, shared or none (got $m)"; done
[[ -n ${PIN// /} ]] || die "PIN is empty"
MODE=split   # the mode being run; set by the loop at the bottom
cpu_of() {  # cpu_of ROLE (a|b|load) -> the CPU list for taskset in MODE, "" = unpinned
  case "$MODE:$1" in
    split:a) echo "$A_CPU" ;; split:b) echo "$B_CPU" ;;
    shared:a | shared:b) echo "$PROXY_CPU" ;; shared:load) echo "$LOAD_CPU" ;;
    *) echo "" ;;
  esac
}
pin() {  # pin ROLE -> command prefix: nice + taskset (both exec, so $! is the real PID)
  local p="" c; c=$(cpu_of "$1")
  if [[ $NICE != 0 ]]; then p="nice -n $NICE"; fi
  if [[ -n $c ]]; then p="$p taskset -c $c"; fi
  echo "$p"
}

# ------------------------------------------------------------------- run dir + cleanup ----
TMP=$(mktemp -d -t switchyard-eastwest.XXXXXX)
chmod 755 "$TMP"
# shellcheck source=lib.sh
. "$HERE/lib.sh"
diagnose() {  # diagnose OUT: what the gateways were doing when requests failed or hung
  {
    date -u +%T.%N; uptime
    for n in a b; do
      local pid adm; if [[ $n == a ]]; then pid=$A_PID adm=$A_ADMIN; else pid=$B_PID adm=$B_ADMIN; fi
      echo "== gw-$n pid $pid: admin /healthz $(curl -s -o /dev/null -w '%{http_code} in %{time_total}s' --max-time 5 "http://$adm/healthz" || true)"
      grep -E '^(State|Threads|voluntary|nonvoluntary)' "/proc/$pid/status" 2>/dev/null || echo "gone"
      for t in /proc/"$pid"/task/*; do echo "task ${t##*/} $(cat "$t/comm" 2>/dev/null) $(cut -d' ' -f3 "$t/stat" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"; done
    done
    echo "== sockets on the east-west port"; ss -Htanp "( dport = :$EW_PORT or sport = :$EW_PORT )" 2>/dev/null | awk '{print $1, $2, $3}' | sort | uniq -c || true
    echo "== sockets on gw-a's and gw-b's HTTP ports"; ss -Htan "( sport = :$A_PORT or sport = :$B_PORT )" 2>/dev/null | awk '{print $1, $2, $3}' | sort | uniq -c || true
  } >"$1" 2>&1 || true
}
proc_ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat" 2>/dev/null || echo 0; }  # utime+stime
served() {  # served ADMIN -> requests the Backend's zone-b endpoint has served per this gateway ("-" if none listed, "?" if no answer)
  { curl -s --max-time 5 "http://$1/backends" || true; } | python3 -c '
import json, sys
try: d = json.load(sys.stdin)
except ValueError: print("?"); sys.exit()
n = [e["requests"] for b in d["backends"] if b["backend"].endswith("/upstream") for e in b["endpoints"]]
print(sum(n) if n else "-")'
}
local_zones() {  # local_zones ADMIN -> zones of the endpoints this gateway balances over itself
  curl -s --max-time 2 "http://$1/backends" | python3 -c '
import json, sys
d = json.load(sys.stdin)
z = sorted({str(e["zone"]) for b in d["backends"] for e in b["endpoints"]})
print(",".join(z) if z else "none")'
}
delta() { if [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]]; then echo $(( $2 - $1 )); else echo "?"; fi; }
ew_conns() {  # ew_conns [PID] -> established TCP connections to gw-b's east-west port (from PID only if given)
  local out; out=$(ss -Htnp state established "( dport = :$EW_PORT )" 2>/dev/null || true)
  if [[ -n ${1:-} ]]; then out=$(grep -F "pid=$1," <<<"$out" || true); fi
  grep -c . <<<"$out" || true
}

# ------------------------------------------------------------------------ preflight ----
for c in curl python3 ss awk; do command -v "$c" >/dev/null || die "missing $c"; done
if [[ ${SKIP_SETUP:-0} != 1 ]] && ! command -v wrk >/dev/null; then
  log "wrk missing: setup.sh (BUILD_OHA=0)"
  BUILD_OHA=0 bash "$HERE/setup.sh"
fi
command -v wrk >/dev/null || die "missing wrk (bash $HERE/setup.sh)"
if [[ $PIN != none ]]; then
  command -v taskset >/dev/null || die "missing taskset (util-linux)"
  (( $(nproc) >= 2 )) || { log "only $(nproc) CPU: no pinning"; PIN=none; }
fi
for p in "$BASE_PORT" "$A_PORT" "$B_PORT" "$EW_PORT" "${A_ADMIN##*:}" "${B_ADMIN##*:}"; do
  port_free "$p" || die "port $p on loopback is busy"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "cargo build --release -p switchyard"
  (cd "$REPO" && cargo build --release -p switchyard) >"$TMP/build.log" 2>&1 || { tail -30 "$TMP/build.log" >&2; die "build failed (log: $TMP/build.log)"; }
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

# ------------------------------------------------------------------------ config + CA ----
CFG=$TMP/config CA=$TMP/ca
mkdir -p "$CFG"
cat >"$CFG/mesh.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw-a
  labels: {switchyard.dev/zone: zone-a}
spec:
  gatewayClassName: switchyard
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners:
  - {name: http, port: $A_PORT, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw-b
  labels: {switchyard.dev/zone: zone-b}
spec:
  gatewayClassName: switchyard
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners:
  - {name: http, port: $B_PORT, protocol: HTTP}
  - {name: east-west, port: $EW_PORT, protocol: switchyard.dev/EastWest}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: upstream}
spec: {endpoints: [{address: "$UP_ADDR", zone: zone-b}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench}
spec:
  parentRefs: [{name: gw-a}, {name: gw-b}]
  rules:
  - backendRefs: [{group: switchyard.dev, kind: Backend, name: upstream}]
EOF
"$BIN" validate "$CFG" >"$TMP/validate.txt" 2>&1 || { sed 's/^/    /' "$TMP/validate.txt" >&2; die "config rejected"; }
"$BIN" cert init-ca --dir "$CA" --trust-domain "$TRUST_DOMAIN" >"$TMP/init-ca.log" 2>&1 || { cat "$TMP/init-ca.log" >&2; die "cert init-ca failed"; }
log "config valid, CA in $CA"

# ------------------------------------------------------------------------ processes ----
A_URL=http://127.0.0.1:$A_PORT/ B_URL=http://127.0.0.1:$B_PORT/
UP_PID="" A_PID="" B_PID=""
gw() {  # gw ZONE-LETTER TAG -> LAST_PID
  local z=$1
  start_bg "gw-$z-$2" "$z" env RUST_LOG="$GATEWAY_LOG" "$BIN" gateway --config-dir "$CFG" \
    --gateway "gw-$z" --zone "zone-$z" --name "gw-$z" --mesh-ca-dir "$CA" \
    --admin "$( [[ $z == a ]] && echo "$A_ADMIN" || echo "$B_ADMIN")" --threads 1 --grace-period 1
}
start_gateways() {  # start_gateways TAG: gw-b (the east-west side) first, then gw-a
  gw b "$1"; B_PID=$LAST_PID
  wait_code 200 "http://$B_ADMIN/ready" 20 || die "gw-b not ready (see $TMP/gw-b-$1.log)"
  gw a "$1"; A_PID=$LAST_PID
  wait_code 200 "http://$A_ADMIN/ready" 20 || die "gw-a not ready (see $TMP/gw-a-$1.log)"
  wait_code 200 "$B_URL" 15 || die "gw-b did not answer 200 (see $TMP/gw-b-$1.log)"
  if ! wait_code 200 "$A_URL" 15; then
    die "gw-a did not answer 200 through the east-west hop: $(curl -s -o /dev/null --max-time 2 -w '%{http_code} %header{x-switchyard-error}' "$A_URL" || true)" \
      "(see $TMP/gw-a-$1.log; 500 no_endpoints = a gateway that does not yet fail over a Backend with no endpoint in its zone)"
  fi
}
stop_gateways() { [[ -n $A_PID ]] && stop_pid "$A_PID"; [[ -n $B_PID ]] && stop_pid "$B_PID"; A_PID="" B_PID=""; }

# ------------------------------------------------------------------------ checks ----
CHECKS=()
check() {  # check DESCRIPTION WANT GOT
  if [[ $2 == "$3" ]]; then CHECKS+=("ok [$MODE]: $1 ($3)"); log "check ok: $1 ($3)"
  else CHECKS+=("FAILED [$MODE]: $1 (want $2, got $3)"); die "check failed: $1: want $2, got $3"; fi
}
burst() {  # burst URL N -> the distinct status codes of N keep-alive GETs (one curl, bounded)
  local args=() i
  for i in $(seq 1 "$2"); do args+=(-o /dev/null "$1"); done
  curl -s --max-time 30 -w '%{http_code}\n' "${args[@]}" | sort -u | paste -sd, -
}
verify() {  # the two paths answer, and path two really crosses gw-b's east-west listener
  local b0 b1 a0 a1
  check "upstream GET / direct" 200 "$(code_of "http://$UP_ADDR/")"
  check "path one: gw-b GET /" 200 "$(code_of "$B_URL")"
  check "path two: gw-a GET /" 200 "$(code_of "$A_URL")"
  LZ=$(local_zones "$A_ADMIN")
  check "gw-a has no endpoint in its own zone (admin /backends lists zones: $LZ)" no \
    "$( [[ ,$LZ, == *,zone-a,* ]] && echo yes || echo no)"
  check "gw-a has a mesh identity (admin /identity)" "spiffe://$TRUST_DOMAIN/zone/zone-a/gateway/gw-a" \
    "$(curl -s --max-time 2 "http://$A_ADMIN/identity" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("spiffe_id", "?"))' 2>/dev/null || echo '?')"
  check "gw-b's east-west listener refuses a client without a certificate" 000 \
    "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "https://127.0.0.1:$EW_PORT/" || true)"
  b0=$(served "$B_ADMIN"); a0=$(served "$A_ADMIN")
  check "path two: $VERIFY_N GETs via gw-a, statuses" 200 "$(burst "$A_URL" "$VERIFY_N")"
  b1=$(served "$B_ADMIN"); a1=$(served "$A_ADMIN")
  check "path two: gw-b served them from its zone-b endpoint (admin /backends requests delta)" "$VERIFY_N" "$(delta "$b0" "$b1")"
  if [[ $a0 =~ ^[0-9]+$ && $a1 =~ ^[0-9]+$ ]]; then
    check "path two: gw-a sent none of them to the endpoint itself (its /backends requests delta)" 0 "$((a1 - a0))"
  fi
  check "path two: gw-a (pid $A_PID) holds pooled connections to gw-b's east-west port" yes \
    "$( (( $(ew_conns "$A_PID") >= 1 )) && echo yes || echo "no ($(ew_conns) in all)")"
  check "gw-a has no connection to the upstream" 0 \
    "$(ss -Htnp state established "( dport = :$BASE_PORT )" 2>/dev/null | grep -cF "pid=$A_PID," || true)"
  b0=$(served "$B_ADMIN")
  check "path one: $VERIFY_N GETs via gw-b, statuses" 200 "$(burst "$B_URL" "$VERIFY_N")"
  b1=$(served "$B_ADMIN")
  check "path one: gw-b served them (admin /backends requests delta)" "$VERIFY_N" "$(delta "$b0" "$b1")"
}

# ------------------------------------------------------------------------ load ----
cat >"$TMP/report.lua" <<'EOF'
-- wrk: machine-readable summary (latencies in microseconds), as in peers.sh (WRK_DELAY_MS: paced)
local pace = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pace then function delay() return pace end end
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
printf 'mode\tround\tpath\trps\treqs\tp50\tp99\tp999\tmax\terrors\tgw_b_served\tew_conns\tcpu0\tcpu1\tsteal\tbg_cores\tload1\ta_us\tb_us\tup_us\trate_rps\trate_p50\trate_p99\trate_errors\tew_time_wait\n' >"$RES"
HZ=$(getconf CLK_TCK)
load() {  # load ROUND PATH(one|two): a warm-up, then one measured wrk run
  local r=$1 path=$2 url tag s0 s1 t0 a0 a1 b0 b1 u0 u1 sv0 sv1 ew=- tw bg c0 c1 st ld line mid
  local rps reqs p50 p99 p999 max sockerr non2xx
  if [[ $path == one ]]; then url=$B_URL; else url=$A_URL; fi
  tag="$MODE-r$r-$path"
  # shellcheck disable=SC2046
  timeout $((WARMUP + 15)) $(pin load) wrk -t1 -c "$CONNS" -d "${WARMUP}s" "$url" >/dev/null 2>&1 || true
  ld=$(cut -d' ' -f1 /proc/loadavg)
  sv0=$(served "$B_ADMIN")
  python3 "$TMP/procsnap.py" snap >"$TMP/$tag.snap0"; s0=$(cpu_snap); t0=$SECONDS
  a0=$(proc_ticks "$A_PID"); b0=$(proc_ticks "$B_PID"); u0=$(proc_ticks "$UP_PID")
  # shellcheck disable=SC2046
  timeout $((DURATION + 20)) $(pin load) wrk -t1 -c "$CONNS" -d "${DURATION}s" --latency -s "$TMP/report.lua" \
    "$url" >"$TMP/$tag.txt" 2>&1 &
  local wp=$!; PIDS+=("$wp")
  mid=$(( DURATION / 2 )); (( mid >= 1 )) || mid=1
  sleep "$mid"
  [[ $path == two ]] && ew=$(ew_conns "$A_PID")
  wait "$wp" || true
  # Connection churn on the hop: TIME-WAIT sockets of gw-b's east-west port (either side closed
  # a connection within the last 60 s; 0 = every request reused a pooled mTLS connection).
  tw=$(ss -Htan state time-wait "( dport = :$EW_PORT or sport = :$EW_PORT )" 2>/dev/null | grep -c . || true)
  a1=$(proc_ticks "$A_PID"); b1=$(proc_ticks "$B_PID"); u1=$(proc_ticks "$UP_PID")
  s1=$(cpu_snap); python3 "$TMP/procsnap.py" snap >"$TMP/$tag.snap1"
  sv1=$(served "$B_ADMIN")
  bg=$(python3 "$TMP/procsnap.py" diff "$TMP/$tag.snap0" "$TMP/$tag.snap1" "$((SECONDS - t0))" $$ "$UP_PID" "$A_PID" "$B_PID")
  c0=$(cpu_busy "$s0" "$s1" 0); c1=$(cpu_busy "$s0" "$s1" 1); st=$(cpu_busy "$s0" "$s1" "")
  line=$(grep '^RESULT' "$TMP/$tag.txt" || echo "RESULT rps=0 reqs=0 p50=0 p99=0 p999=0 max=0 sockerr=0 non2xx=-1")
  eval "${line#RESULT }"
  if (( sockerr + non2xx != 0 )); then diagnose "$TMP/$tag.diag"; log "[$MODE] round $r path $path: $((sockerr + non2xx)) errors; diagnostics in $TMP/$tag.diag"; fi
  local rrps=- rp50=- rp99=- rerr=- d
  if (( RATE > 0 )); then  # the paced run: latency without queueing
    d=$(( CONNS * 1000 / RATE )); (( d >= 1 )) || d=1
    # shellcheck disable=SC2046
    WRK_DELAY_MS=$d timeout $((RATE_DURATION + 20)) $(pin load) wrk -t1 -c "$CONNS" -d "${RATE_DURATION}s" -s "$TMP/report.lua" \
      "$url" >"$TMP/$tag.rate.txt" 2>&1 || true
    line=$(grep '^RESULT' "$TMP/$tag.rate.txt" || echo "RESULT rps=0 reqs=0 p50=0 p99=0 p999=0 max=0 sockerr=0 non2xx=-1")
    read -r rrps rp50 rp99 rerr < <(eval "${line#RESULT }"; echo "$rps $p50 $p99 $((sockerr + non2xx))")
    if [[ $rerr != 0 ]]; then diagnose "$TMP/$tag.rate.diag"; log "[$MODE] round $r path $path paced: $rerr errors; diagnostics in $TMP/$tag.rate.diag"; fi
  fi
  us() { awk -v a="$1" -v b="$2" -v n="$reqs" -v hz="$HZ" 'BEGIN{printf "%.1f", (n > 0 ? (b-a)/hz*1e6/n : 0)}'; }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$MODE" "$r" "$path" \
    "$rps" "$reqs" "$p50" "$p99" "$p999" "$max" "$((sockerr + non2xx))" "$(delta "$sv0" "$sv1")" "$ew" "$c0" "$c1" "$st" "$bg" "$ld" \
    "$( [[ $path == two ]] && us "$a0" "$a1" || echo 0)" "$(us "$b0" "$b1")" "$(us "$u0" "$u1")" "$rrps" "$rp50" "$rp99" "$rerr" "$tw" >>"$RES"
  log "[$MODE] round $r path $path: $rps req/s, p50 $((p50))us p99 $((p99))us, errors $((sockerr + non2xx)), gw-b served $(delta "$sv0" "$sv1"), ew conns $ew (time-wait $tw), cpu0/cpu1 $c0/$c1 %, steal $st %, bg cores $bg, load1 $ld; paced ~$RATE req/s: $rrps req/s p50 ${rp50}us p99 ${rp99}us errors $rerr"
}
quiet_check() {  # busy % of CPU 0 and CPU 1 over 2 s -> "b0 b1"
  local a b; a=$(cpu_snap); sleep 2; b=$(cpu_snap)
  echo "$(cpu_busy "$a" "$b" 0) $(cpu_busy "$a" "$b" 1)"
}

# ------------------------------------------------------------------------ the modes ----
META=$TMP/meta.tsv; : >"$META"
T_ALL=$SECONDS
for MODE in $PIN; do
  start_bg "upstream-$MODE" load "$UP_BIN" "$UP_ADDR" 13; UP_PID=$LAST_PID
  wait_code 200 "http://$UP_ADDR/" 10 || die "upstream did not come up (see $TMP/upstream-$MODE.log)"
  start_gateways "$MODE-0"
  verify
  t_q=$SECONDS
  read -r B0 B1 < <(quiet_check)
  while (( (B0 > QUIET_MAX || B1 > QUIET_MAX) && SECONDS - t_q < WAIT_QUIET )); do
    log "machine busy (cpu0 $B0%, cpu1 $B1%), waiting for quiet"; sleep 8; read -r B0 B1 < <(quiet_check)
  done
  UPTIME=$(uptime | sed 's/^ *//')
  (( B0 > QUIET_MAX || B1 > QUIET_MAX )) && log "WARNING: machine not idle (cpu0 $B0%, cpu1 $B1%): results will be noisy"
  log "[$MODE] before the load: cpu0 $B0%, cpu1 $B1%; uptime: $UPTIME"
  log "[$MODE] $ROUNDS rounds x (one, two) ORDER=$ORDER RESTART=$RESTART, warm-up ${WARMUP}s + ${DURATION}s each, wrk -t1 -c$CONNS"
  T0=$SECONDS
  for r in $(seq 1 "$ROUNDS"); do
    if [[ $ORDER == ba || ( $ORDER == abba && $((r % 2)) == 0 ) ]]; then first=two second=one; else first=one second=two; fi
    if [[ $RESTART == 1 && $r -gt 1 ]]; then stop_gateways; start_gateways "$MODE-$r"; fi
    load "$r" "$first"; load "$r" "$second"
  done
  check "path one GET / after the load" 200 "$(code_of "$B_URL")"
  check "path two GET / after the load" 200 "$(code_of "$A_URL")"
  RSS_A=$(ps -o rss= -p "$A_PID" | awk '{printf "%.1f", $1/1024}')
  RSS_B=$(ps -o rss= -p "$B_PID" | awk '{printf "%.1f", $1/1024}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$MODE" "cpu0 $B0%, cpu1 $B1%" "$UPTIME" "$((SECONDS - T0))" "$RSS_A" "$RSS_B" \
    "$(cpu_of a)" "$(cpu_of b)" "$(cpu_of load)" "$(ew_conns "$A_PID")" >>"$META"
  stop_gateways; stop_pid "$UP_PID"; UP_PID=""
done
ELAPSED=$((SECONDS - T_ALL))

# ------------------------------------------------------------------------ report ----
VERSION=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo dev)
BUILT=$(date -u -r "$BIN" '+%F %T UTC')
printf '%s\n' "${CHECKS[@]}" >"$TMP/checks.txt"
mkdir -p "$(dirname "$RESULTS_MD")"
python3 - "$RES" "$META" "$RESULTS_MD" "$TMP" <<EOF
import csv, statistics, sys, datetime
res, meta, md, tmp = sys.argv[1:]
rows = list(csv.DictReader(open(res), delimiter="\t"))
metas = [l.rstrip("\n").split("\t") for l in open(meta) if l.strip()]
ms = lambda us: "%.2f" % (float(us) / 1000.0)
med = lambda xs: statistics.median(xs) if xs else 0.0
rng = lambda xs: "%.3f-%.3f" % (min(xs), max(xs)) if xs else "-"
out, summary = [], []
summary.append("| PIN | gateways' CPUs (a / b), load | req/s one | req/s two | **two / one** (median, range) | p99 ms one | p99 ms two | p99 two / one (median) | paced ~$RATE req/s p50 / p99 ms one | two | gateway CPU us/req one (b) | two (a + b) | load avg before |")
summary.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for mode, busy, up, secs, rss_a, rss_b, ca, cb, cl, ewc in metas:
    mr = [r for r in rows if r["mode"] == mode]
    by = {}
    for r in mr: by.setdefault(r["round"], {})[r["path"]] = r
    place = "%s / %s, load %s" % (ca or "any", cb or "any", cl or "any")
    t = ["| round | first | req/s one | req/s two | two / one | p50 / p99 ms one | p50 / p99 ms two | p99 two / one | errors 1/2 | gw-b served 1/2 | ew conns (time-wait) | gw CPU us/req one: b | two: a + b | upstream us/req 1/2 | cpu0/cpu1 % one | cpu0/cpu1 % two | steal % 1/2 | bg cores 1/2 | load1 1/2 | paced req/s 1/2 | paced p50 / p99 ms one | paced p50 / p99 ms two | paced errors 1/2 |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios, lratios, r1, r2, p1, p2, cpu1, cpu2 = [], [], [], [], [], [], [], []
    q50a, q50b, q99a, q99b = [], [], [], []
    num = lambda v: v not in ("-", "", None)
    order = [r["round"] + r["path"] for r in mr]
    for k in sorted(by, key=int):
        o, w = by[k].get("one"), by[k].get("two")
        if not o or not w: continue
        a, b = float(o["rps"]), float(w["rps"])
        ratio = b / a if a > 0 else 0.0
        lr = float(w["p99"]) / float(o["p99"]) if float(o["p99"]) > 0 else 0.0
        ratios.append(ratio); lratios.append(lr); r1.append(a); r2.append(b); p1.append(float(o["p99"])); p2.append(float(w["p99"]))
        c1 = float(o["b_us"]); c2 = float(w["a_us"]) + float(w["b_us"]); cpu1.append(c1); cpu2.append(c2)
        if num(o["rate_p99"]) and num(w["rate_p99"]):
            q50a.append(float(o["rate_p50"])); q50b.append(float(w["rate_p50"])); q99a.append(float(o["rate_p99"])); q99b.append(float(w["rate_p99"]))
        pm = lambda r: (ms(r["rate_p50"]) + " / " + ms(r["rate_p99"])) if num(r["rate_p99"]) else "-"
        first = "one" if order.index(k + "one") < order.index(k + "two") else "two"
        t.append("| %s | %s | %.0f | %.0f | %.3f | %s / %s | %s / %s | %.2f | %s / %s | %s / %s | %s | %.1f | %s + %s = %.1f | %s / %s | %s/%s | %s/%s | %s / %s | %s / %s | %s / %s | %s / %s | %s | %s | %s / %s |" % (
            k, first, a, b, ratio, ms(o["p50"]), ms(o["p99"]), ms(w["p50"]), ms(w["p99"]), lr, o["errors"], w["errors"],
            o["gw_b_served"], w["gw_b_served"], "%s (%s)" % (w["ew_conns"], w["ew_time_wait"]), c1, w["a_us"], w["b_us"], c2, o["up_us"], w["up_us"],
            o["cpu0"], o["cpu1"], w["cpu0"], w["cpu1"], o["steal"], w["steal"], o["bg_cores"], w["bg_cores"], o["load1"], w["load1"],
            o["rate_rps"].split(".")[0], w["rate_rps"].split(".")[0], pm(o), pm(w), o["rate_errors"], w["rate_errors"]))
    mratio = med(ratios)
    paced = lambda a, b: (ms(med(a)) + " / " + ms(med(b))) if a else "-"
    summary.append("| %s | %s | %.0f | %.0f | **%.3f** (%s) | %s | %s | %.2f | %s | %s | %.1f | %.1f | %s |" % (
        mode, place, med(r1), med(r2), mratio, rng(ratios), ms(med(p1)), ms(med(p2)), med(lratios),
        paced(q50a, q99a), paced(q50b, q99b), med(cpu1), med(cpu2),
        up.split("load average:")[-1].strip()))
    errs = sum(int(r["errors"]) for r in mr)
    bgmax = max([float(r["bg_cores"]) for r in mr] or [0])
    out.append("## PIN=%s (gw-a on CPU %s, gw-b on CPU %s, wrk + upstream on CPU %s)" % (mode, ca or "any", cb or "any", cl or "any"))
    out.append("")
    out.append("Before the load: %s busy; \`uptime\`: %s. Load phase: %ss. RSS after the load: gw-a %s MiB, gw-b %s MiB; gw-a's connections to gw-b's east-west port after the load: %s." % (busy, up, secs, rss_a, rss_b, ewc))
    out.append("")
    out += t
    out.append("")
    out.append("Median req/s: one %.0f, two %.0f; **median of per-round two / one: %.3f** (range %s; target >= 0.5: **%s**). "
               "Median p99: one %s ms, two %s ms (median per-round ratio %.2f, range %s). Gateway CPU per request: one %.1f us (gw-b), "
               "two %.1f us (gw-a + gw-b), x%.2f.%s Errors (socket + non-2xx) over every run: %d.%s" % (
        med(r1), med(r2), mratio, rng(ratios), "met" if mratio >= 0.5 else "missed", ms(med(p1)), ms(med(p2)), med(lratios), rng(lratios),
        med(cpu1), med(cpu2), (med(cpu2) / med(cpu1)) if med(cpu1) > 0 else 0,
        (" Paced at ~$RATE req/s (no queueing), median p50 / p99: one %s / %s ms, two %s / %s ms: the hop adds %.2f ms at p50 and %.2f ms at p99." % (
            ms(med(q50a)), ms(med(q99a)), ms(med(q50b)), ms(med(q99b)), (med(q50b) - med(q50a)) / 1000.0, (med(q99b) - med(q99a)) / 1000.0)) if q99a else "",
        errs,
        (" Noisy: bg cores reached %.2f in at least one run (> 0.1 = other processes took CPU meanwhile)." % bgmax) if bgmax > 0.1 else ""))
    out.append("")
table = "\n".join(summary)
print(); print(table); print()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
checks_md = "\n".join("- " + c for c in open(tmp + "/checks.txt").read().strip().splitlines())
doc = f"""# East-west hop cost ({now}, commit $VERSION, $(nproc) cores)

Command: \`PIN="$PIN" ORDER=$ORDER ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS RESTART=$RESTART bash benches/peers/eastwest.sh\`
(binary \`target/release/switchyard\` built $BUILT; nice $NICE; total ${ELAPSED}s).

- **one**: \`wrk -t1 -c$CONNS\` -> gw-b (zone-b) HTTP listener -> upstream (peers.sh's bench-upstream, 13-byte 200).
- **two**: \`wrk -t1 -c$CONNS\` -> gw-a (zone-a) HTTP listener -> gw-b's \`switchyard.dev/EastWest\`
  listener (mTLS, pooled HTTP/1.1) -> upstream. gw-a has no endpoint of the Backend in its zone,
  so it fails over to zone-b. Both gateways: standalone, \`--threads 1\`, one route file set,
  mesh certificates from one \`cert init-ca\` dir.

Each round loads one path at a time (ORDER=$ORDER: ab = one then two; abba alternates), a
${WARMUP}s warm-up then ${DURATION}s, closed loop (keep-alive), \`--latency\`.

{table}

PIN=split: each gateway has a core of its own (as in production, where they are separate
machines) and wrk and the upstream float; on this 2-core machine path two's two gateways,
wrk and upstream then share 2 cores where path one's single gateway, wrk and upstream do, so
split slightly favours path one. PIN=shared: both gateways on one core, wrk and the upstream on
the other, so path two pays for both gateways out of one core and two / one approaches the
inverse ratio of gateway CPU per request: the CPU cost of the hop.

Checks (before the load of each mode, and after it):
{checks_md}

""" + "\n".join(out) + f"""
Columns: gw-b served = requests gw-b's admin \`/backends\` counted on the zone-b endpoint during
the run (should equal wrk's count in both paths: in path two every request crossed the hop);
ew conns = gw-a's established connections to gw-b's east-west port in the middle of the run
(time-wait: TIME-WAIT sockets on that port at its end, i.e. connections closed in the last 60 s;
0 = no churn, every request reused a pooled mTLS connection);
gw CPU us/req = a gateway process's CPU time (all threads) / requests in the run (path two:
gw-a + gw-b); cpu0/cpu1 % = busy % of each CPU during the run; steal % = CPU time the hypervisor
gave to other guests; bg cores = CPU used by other long-lived processes during the run (> 0.1 =
contaminated); load1 = 1-min load average just before the run. Latency (req/s, p50, p99) is
wrk's, closed loop at max throughput, so it mostly reflects queueing; the paced columns come from
a run right after it, each of the $CONNS connections waiting a fixed delay between requests
(about $RATE req/s in all, still closed loop, as peers.sh's wrk fallback), so they show the
latency a hop adds without queueing.
"""
if "$RESULTS_APPEND" == "1":
    open(md, "a").write("\n---\n\n" + doc.replace("# East-west hop cost (", "## East-west hop cost, PIN=$PIN (", 1))
else:
    open(md, "w").write(doc)
EOF
log "results: $RESULTS_MD"
