#!/usr/bin/env bash
# peers.sh - one-shot, loopback-only benchmark of L7 reverse proxies side by side:
#   direct (no proxy) | nginx | haproxy | envoy | caddy | [our gateway via GATEWAY_URL]
# Every proxy gets 1 worker/thread and (PIN=1, default) exactly one core: CPU ${PROXY_CPU};
# load generator + upstream share CPU ${LOAD_CPU}. All processes are started by this script
# in the background and killed by PID (trap on EXIT/INT/TERM). Every load run is time-bounded.
# Usage, knobs and interpretation: README.md beside this script. Tools: setup.sh beside it.
set -euo pipefail

# ---------------------------------------------------------------- knobs (env) ----
DURATION=${DURATION:-10}          # s, closed-loop max-throughput wrk run per target
WARMUP=${WARMUP:-1}               # s, wrk warm-up before it (not reported)
CONNS=${CONNS:-50}                # client connections (HTTP/1.1 keep-alive)
THREADS=${THREADS:-1}             # wrk threads
RATE=${RATE:-2000}                # req/s for the fixed-rate (open-loop) latency run
RATE_DURATION=${RATE_DURATION:-8} # s
RATE_TOOL=${RATE_TOOL:-auto}      # auto|oha|wrk  (oha = open loop + latency correction; wrk = paced Lua fallback)
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/peers-bench}   # where setup.sh puts oha, envoy and the built upstream
OHA=${OHA:-}                      # path to oha (auto: PATH, then $BENCH_CACHE/bin/oha)
PIN=${PIN:-1}                     # 1: taskset pinning (proxy on PROXY_CPU, wrk/oha/upstream on LOAD_CPU)
NICE=${NICE:--10}                 # nice level of every benchmark process (0 = off); -10 cuts noise from other jobs on a shared box
LOAD_CPU=${LOAD_CPU:-0}
PROXY_CPU=${PROXY_CPU:-1}
PEERS=${PEERS:-"nginx haproxy envoy caddy"}   # peers that are not installed are skipped
IDLE_CONNS=${IDLE_CONNS:-2000}    # idle keep-alive client conns for the memory-per-connection probe (0=off)
RELOAD=${RELOAD:-1}               # 1: config reload under fixed-rate load (nginx HUP, haproxy -W USR2, envoy RDS file swap, caddy reload, gateway)
RELOAD_WINDOW=${RELOAD_WINDOW:-6} # s of load around the reload (reload fired at 2 s)
BASE_PORT=${BASE_PORT:-18080}     # upstream; peers use +1..+4, caddy admin +9, envoy admin +8
BODY_BYTES=${BODY_BYTES:-13}      # upstream response body size
UPSTREAM_DIR=${UPSTREAM_DIR:-$BENCH_CACHE/upstream}
ENVOY_BIN=${ENVOY_BIN:-}          # auto: PATH, then $BENCH_CACHE/bin/envoy
GATEWAY_URL=${GATEWAY_URL:-}      # e.g. http://127.0.0.1:18090/  (must proxy to http://127.0.0.1:$BASE_PORT)
GATEWAY_CMD=${GATEWAY_CMD:-}      # optional: command that starts the gateway (run pinned, killed at the end; $UPSTREAM_ADDR is exported)
GATEWAY_PID=${GATEWAY_PID:-}      # optional: PID of an already running gateway (re-pinned, RSS/CPU sampled)
GATEWAY_RELOAD_CMD=${GATEWAY_RELOAD_CMD:-}  # optional: command that triggers a gateway config reload ($GATEWAY_PID is exported)
KEEP=${KEEP:-1}                   # keep the temp dir (configs, logs, raw results)
OUT_DIR=${OUT_DIR:-}              # where configs, logs and raw results go (default: a new temp dir); created if missing
WAIT_QUIET=${WAIT_QUIET:-0}       # s to wait for the machine to go quiet (<QUIET_MAX % busy per CPU) before starting
QUIET_MAX=${QUIET_MAX:-10}

# ---------------------------------------------------------------- helpers ----
log() { printf '[peers %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
pin() {  # command prefix: optional nice level + optional CPU pinning (both exec, so $! is the real PID)
  local p=""
  if [[ $NICE != 0 ]]; then p="nice -n $NICE"; fi
  if [[ $PIN == 1 ]]; then p="$p taskset -c $1"; fi
  echo "$p"
}

if [[ -n $OUT_DIR ]]; then mkdir -p "$OUT_DIR"; TMP=$(cd "$OUT_DIR" && pwd); else TMP=$(mktemp -d -t peers.XXXXXX); fi
chmod 755 "$TMP"
PIDS=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  for p in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  if [[ $KEEP == 1 ]]; then log "raw results, configs and logs: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_bg NAME CPU CMD... : start in background (pinned), remember PID in $LAST_PID
start_bg() {
  local name=$1 cpu=$2; shift 2
  # shellcheck disable=SC2046
  $(pin "$cpu") "$@" >"$TMP/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
stop_pid() {  # stop one process we started, by PID
  local p=$1
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 1 25); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$p" 2>/dev/null || true
}
wait_ready() {  # wait_ready URL [seconds]
  local url=$1 t=${2:-10} code
  for _ in $(seq 1 $((t * 10))); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
    [[ $code == 200 ]] && return 0
    sleep 0.1
  done
  return 1
}
port_free() { [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
tree_pids() { ps -o pid= -p "$1" --ppid "$1" 2>/dev/null | tr -d ' '; }  # pid + direct children
rss_kib() { ps -o rss= -p "$1" --ppid "$1" 2>/dev/null | awk '{s+=$1} END{print s+0}'; }
cpu_ticks() {  # utime+stime (clock ticks) of pid + direct children
  local s=0 p
  for p in $(tree_pids "$1"); do
    if [[ -r /proc/$p/stat ]]; then
      s=$((s + $(awk '{sub(/^.*\) /,""); print $12+$13}' "/proc/$p/stat")))
    fi
  done
  echo "$s"
}
cpu_snap() { awk '/^cpu[0-9]/{b=0; for(i=2;i<=NF;i++) b+=$i; printf "%s %d %d ", $1, b, $5+$6}' /proc/stat; }
cpu_busy() {  # cpu_busy "SNAP_BEFORE" "SNAP_AFTER" CPU  -> busy % of that cpu
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
def parse(s):
    t = s.split(); return {t[i]: (int(t[i+1]), int(t[i+2])) for i in range(0, len(t), 3)}
a, b, c = parse(sys.argv[1]), parse(sys.argv[2]), "cpu" + sys.argv[3]
tot = b[c][0] - a[c][0]; idle = b[c][1] - a[c][1]
print(round(100.0 * (tot - idle) / tot) if tot > 0 else -1)
EOF
}

# ---------------------------------------------------------------- preflight ----
for c in wrk curl python3 ss awk; do command -v "$c" >/dev/null || die "missing $c"; done
[[ $PIN == 1 ]] && { command -v taskset >/dev/null || die "missing taskset (util-linux)"; }
NCPU=$(nproc)
if [[ $PIN == 1 && $NCPU -lt 2 ]]; then log "only $NCPU CPU: disabling pinning"; PIN=0; fi
if [[ -z $OHA ]]; then OHA=$(command -v oha || true); [[ -z $OHA && -x $BENCH_CACHE/bin/oha ]] && OHA=$BENCH_CACHE/bin/oha; fi
case $RATE_TOOL in
  auto) if [[ -n $OHA ]]; then RATE_TOOL=oha; else RATE_TOOL=wrk; fi ;;
  oha) [[ -n $OHA ]] || die "RATE_TOOL=oha but oha not found (cargo install oha)";;
  wrk) ;;
  *) die "RATE_TOOL must be auto|oha|wrk";;
esac
if [[ -z $ENVOY_BIN ]]; then ENVOY_BIN=$(command -v envoy || true); [[ -z $ENVOY_BIN && -x $BENCH_CACHE/bin/envoy ]] && ENVOY_BIN=$BENCH_CACHE/bin/envoy; fi
for p in $BASE_PORT $((BASE_PORT+1)) $((BASE_PORT+2)) $((BASE_PORT+3)) $((BASE_PORT+4)) $((BASE_PORT+8)) $((BASE_PORT+9)); do
  port_free "$p" || die "port $p on loopback is busy (set BASE_PORT)"
done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- upstream ----
UP_BIN=$UPSTREAM_DIR/target/release/bench-upstream
UP_SRC=$TMP/upstream-src; mkdir -p "$UP_SRC/src"   # reference source; (re)built into UPSTREAM_DIR when it differs
cat >"$UP_SRC/Cargo.toml" <<'EOF'
[package]
name = "bench-upstream"
version = "0.1.0"
edition = "2021"

[dependencies]
hyper = { version = "1", features = ["server", "http1"] }
hyper-util = { version = "0.1", features = ["tokio"] }
http-body-util = "0.1"
bytes = "1"
tokio = { version = "1", features = ["rt", "net", "macros"] }

[profile.release]
opt-level = 3
lto = "fat"
codegen-units = 1
panic = "abort"
EOF
cat >"$UP_SRC/src/main.rs" <<'EOF'
// Minimal benchmark upstream: HTTP/1.1 keep-alive, fixed 200 response.
// Usage: bench-upstream [ADDR=127.0.0.1:18080] [BODY_BYTES=13]
// GET /__bench/conns answers the number of TCP connections accepted so far (connection-reuse probe).
// Single-threaded tokio runtime: pin with taskset to control which core it uses.
use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;

static ACCEPTED: AtomicU64 = AtomicU64::new(0);

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18080".into());
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(13);
    let body = if n == 13 { Bytes::from_static(b"Hello, World!") } else { Bytes::from(vec![b'x'; n]) };
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("bench-upstream listening on {addr}, body {n} bytes");
    loop {
        let (stream, _) = match listener.accept().await { Ok(s) => s, Err(_) => continue };
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::task::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let b = if req.uri().path() == "/__bench/conns" {
                    Bytes::from(ACCEPTED.load(Ordering::Relaxed).to_string())
                } else {
                    body.clone()
                };
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "text/plain")
                            .body(Full::new(b))
                            .unwrap(),
                    )
                }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
EOF
if [[ ! -x $UP_BIN ]] || ! cmp -s "$UP_SRC/src/main.rs" "$UPSTREAM_DIR/src/main.rs" || ! cmp -s "$UP_SRC/Cargo.toml" "$UPSTREAM_DIR/Cargo.toml"; then
  command -v cargo >/dev/null || die "no (current) upstream binary at $UP_BIN and no cargo to build it"
  log "building upstream in $UPSTREAM_DIR (one-off, ~1 min)"
  mkdir -p "$UPSTREAM_DIR/src"
  cp "$UP_SRC/Cargo.toml" "$UPSTREAM_DIR/Cargo.toml"; cp "$UP_SRC/src/main.rs" "$UPSTREAM_DIR/src/main.rs"
  (cd "$UPSTREAM_DIR" && timeout 900 cargo build --release -q) || die "upstream build failed"
fi
UP_ADDR=127.0.0.1:$BASE_PORT
export UPSTREAM_ADDR=$UP_ADDR   # for GATEWAY_CMD
start_bg upstream "$LOAD_CPU" "$UP_BIN" "$UP_ADDR" "$BODY_BYTES"
UP_PID=$LAST_PID
wait_ready "http://$UP_ADDR/" 10 || die "upstream did not come up (see $TMP/upstream.log)"

# ---------------------------------------------------------------- load scripts ----
cat >"$TMP/report.lua" <<'EOF'
-- wrk: machine-readable summary (latencies in microseconds)
local pace = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pace then function delay() return pace end end
done = function(s, lat, req)
  local e = s.errors
  io.write(string.format("RESULT rps=%.1f reqs=%d p50=%d p99=%d p999=%d max=%d sockerr=%d non2xx=%d\n",
    s.requests / (s.duration / 1e6), s.requests, lat:percentile(50), lat:percentile(99),
    lat:percentile(99.9), lat.max, e.connect + e.read + e.write + e.timeout, e.status))
end
EOF
cat >"$TMP/idle.py" <<'EOF'
# open N keep-alive connections, one request each, then hold them idle; signal readiness via a file
import socket, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1]); n = int(sys.argv[2]); ready = sys.argv[3]; hold = float(sys.argv[4])
host, port, path = u.hostname, u.port or 80, (u.path or "/")
req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode()
socks, bad = [], 0
for _ in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(req); buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d: bad += 1; break
        buf += d
    if not buf.startswith(b"HTTP/1.1 200"): bad += 1
    socks.append(s)
open(ready, "w").write("%d %d\n" % (len(socks), bad))
time.sleep(hold)
EOF
cat >"$TMP/procsnap.py" <<'EOF'
# snap: print "pid ppid ticks" for every user-space process; diff A B SECONDS EXCLUDE...: CPU (cores) used by
# processes other than EXCLUDE (and their children) between two snapshots = foreign background load
import os, sys
def snap():
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit(): continue
        try: f = open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()
        except OSError: continue
        if f[1] == "2" or p == "2": continue           # kernel threads (ksoftirqd etc. work for us)
        out[p] = (f[1], int(f[11]) + int(f[12]))       # ppid, utime+stime
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
oha_parse() {  # oha_parse JSON -> "rps reqs p50 p99 p999 max errs" (latencies in microseconds)
  python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
s, lp = d["summary"], d.get("latencyPercentiles", {})
us = lambda x: int(round((x or 0) * 1e6))
codes = d.get("statusCodeDistribution", {}) or {}
ok = sum(v for k, v in codes.items() if str(k).startswith("2"))
errs = {k: v for k, v in (d.get("errorDistribution") or {}).items() if "deadline" not in k}  # in-flight at end != failure
bad = sum(v for k, v in codes.items() if not str(k).startswith("2")) + sum(errs.values())
print("%.1f %d %d %d %d %d %d" % (s.get("requestsPerSec") or 0, ok + bad, us(lp.get("p50")), us(lp.get("p99")),
      us(lp.get("p99.9")), us(s.get("slowest")), bad))
EOF
}
# run_rate URL SECONDS OUTPREFIX -> prints "rps reqs p50 p99 p999 max errs"
run_rate() {
  local url=$1 secs=$2 out=$3 line
  if [[ $RATE_TOOL == oha ]]; then
    # shellcheck disable=SC2046
    timeout $((secs + 20)) $(pin "$LOAD_CPU") "$OHA" -z "${secs}s" -q "$RATE" -c "$CONNS" --latency-correction -w \
      --no-tui --output-format json "$url" >"$out.json" 2>"$out.err" || true
    oha_parse "$out.json" 2>/dev/null || echo "0 0 0 0 0 0 -1"
  else
    local d=$(( CONNS * 1000 / RATE )); (( d < 1 )) && d=1
    # shellcheck disable=SC2046
    WRK_DELAY_MS=$d timeout $((secs + 20)) $(pin "$LOAD_CPU") wrk -t1 -c "$CONNS" -d "${secs}s" -s "$TMP/report.lua" "$url" >"$out.txt" 2>&1 || true
    line=$(grep '^RESULT' "$out.txt" || echo "RESULT rps=0 reqs=0 p50=0 p99=0 p999=0 max=0 sockerr=0 non2xx=-1")
    eval "local ${line#RESULT }"
    echo "$rps $reqs $p50 $p99 $p999 $max $((sockerr + non2xx))"
  fi
}

# ---------------------------------------------------------------- peers: configs + start ----
start_peer() {  # start_peer NAME -> sets PEER_URL PEER_PID PEER_RELOAD (command) ; returns 1 if unavailable
  local name=$1 port
  PEER_RELOAD=""
  case $name in
  nginx)
    command -v nginx >/dev/null || return 1
    port=$((BASE_PORT + 1)); mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
user nobody nogroup;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
worker_rlimit_nofile 16384;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $TMP/nginx/cb; proxy_temp_path $TMP/nginx/px;
  fastcgi_temp_path $TMP/nginx/fc; uwsgi_temp_path $TMP/nginx/uw; scgi_temp_path $TMP/nginx/sc;
  upstream up { server $UP_ADDR; keepalive 1024; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
    start_bg nginx "$PROXY_CPU" nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
    PEER_RELOAD="kill -HUP $LAST_PID" ;;
  haproxy)
    command -v haproxy >/dev/null || return 1
    port=$((BASE_PORT + 2))
    cat >"$TMP/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$port
  default_backend be
backend be
  server s1 $UP_ADDR
EOF
    start_bg haproxy "$PROXY_CPU" haproxy -W -db -f "$TMP/haproxy.cfg"
    PEER_RELOAD="kill -USR2 $LAST_PID" ;;
  envoy)
    [[ -n $ENVOY_BIN ]] || return 1
    port=$((BASE_PORT + 3)); mkdir -p "$TMP/envoy"
    # routes come from a watched file (RDS): "reload" = atomically replace it, Envoy's hitless route update
    envoy_rds() {  # envoy_rds VERSION -> writes rds.yaml via rename
      cat >"$TMP/envoy/rds.tmp" <<EOF
version_info: "$1"
resources:
- "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
  name: local_route
  virtual_hosts:
  - name: all
    domains: ["*"]
    response_headers_to_add: [ { header: { key: x-route-version, value: "$1" } } ]
    routes: [ { match: { prefix: "/" }, route: { cluster: up } } ]
EOF
      mv -f "$TMP/envoy/rds.tmp" "$TMP/envoy/rds.yaml"
    }
    envoy_rds 1
    cat >"$TMP/envoy.yaml" <<EOF
node: { id: bench, cluster: bench }
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $((BASE_PORT + 8)) } }
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          generate_request_id: false
          rds:
            route_config_name: local_route
            config_source: { resource_api_version: V3, path_config_source: { path: $TMP/envoy/rds.yaml } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              dynamic_stats: false
  clusters:
  - name: up
    connect_timeout: 1s
    type: STATIC
    circuit_breakers:
      thresholds: [ { max_connections: 1000000, max_pending_requests: 1000000, max_requests: 1000000, max_retries: 1000000 } ]
    load_assignment:
      cluster_name: up
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $BASE_PORT } } } } ] } ]
EOF
    start_bg envoy "$PROXY_CPU" "$ENVOY_BIN" -c "$TMP/envoy.yaml" --concurrency 1 --disable-hot-restart -l warn
    PEER_RELOAD="sed 's/\"1\"/\"2\"/g' $TMP/envoy/rds.yaml >$TMP/envoy/rds.tmp && mv -f $TMP/envoy/rds.tmp $TMP/envoy/rds.yaml" ;;
  caddy)
    command -v caddy >/dev/null || return 1
    port=$((BASE_PORT + 4)); mkdir -p "$TMP/caddy"
    cat >"$TMP/caddy/Caddyfile" <<EOF
{
  admin 127.0.0.1:$((BASE_PORT + 9))
  auto_https off
}
http://127.0.0.1:$port {
  bind 127.0.0.1
  reverse_proxy $UP_ADDR {
    transport http {
      keepalive 60s
      keepalive_idle_conns 1024
      keepalive_idle_conns_per_host 1024
    }
  }
}
EOF
    start_bg caddy "$PROXY_CPU" env HOME="$TMP/caddy" XDG_DATA_HOME="$TMP/caddy" XDG_CONFIG_HOME="$TMP/caddy" GOMAXPROCS=1 \
      caddy run --adapter caddyfile --config "$TMP/caddy/Caddyfile"
    PEER_RELOAD="env HOME=$TMP/caddy XDG_DATA_HOME=$TMP/caddy XDG_CONFIG_HOME=$TMP/caddy caddy reload --adapter caddyfile --config $TMP/caddy/Caddyfile --address 127.0.0.1:$((BASE_PORT + 9)) --force" ;;
  *) return 1 ;;
  esac
  PEER_URL=http://127.0.0.1:$port/
  PEER_PID=$LAST_PID
  wait_ready "$PEER_URL" 15 || { log "$name did not come up (see $TMP/$name.log)"; stop_pid "$PEER_PID"; return 1; }
}

version_of() {
  case $1 in
    nginx) nginx -v 2>&1 | sed 's/.*nginx\///';;
    haproxy) haproxy -v 2>/dev/null | head -1 | awk '{print $3}';;
    envoy) "$ENVOY_BIN" --version 2>/dev/null | grep -o '/[0-9][0-9.]*/' | tr -d / | head -1;;
    caddy) caddy version 2>/dev/null | awk '{print $1}';;
    *) echo "?";;
  esac
}

# ---------------------------------------------------------------- measure one target ----
RES=$TMP/results.tsv
printf 'target\tversion\tmax_rps\tmax_p50\tmax_p99\tmax_err\tcpu_load\tcpu_proxy\trate_rps\tp50\tp99\tp999\tpmax\trate_err\tvcpu\trss_mib\tkib_per_conn\tidle_bad\treload_err\treload_p999\treload_max\tbg_cores\tup_conns\n' >"$RES"

measure() {  # measure NAME VERSION URL PID(or empty) RELOAD_CMD(or empty)
  local name=$1 ver=$2 url=$3 pid=$4 rcmd=$5 line rps reqs p50 p99 p999 max sockerr non2xx
  local s0 s1 c0 c1 t0 t1 vcpu="-" rss="-" kpc="-" idle_bad="-" rel_err="-" rel_p999="-" rel_max="-"
  log "$name: warm-up ${WARMUP}s, max-throughput ${DURATION}s (wrk -t$THREADS -c$CONNS)"
  # shellcheck disable=SC2046
  timeout $((WARMUP + 15)) $(pin "$LOAD_CPU") wrk -t1 -c "$CONNS" -d "${WARMUP}s" "$url" >/dev/null 2>&1 || true
  local w0=$SECONDS bg="-" uc0 uc1 upc="-"
  uc0=$(curl -s --max-time 2 "http://$UP_ADDR/__bench/conns" || echo "")
  python3 "$TMP/procsnap.py" snap >"$TMP/$name.snap0"
  s0=$(cpu_snap)
  # shellcheck disable=SC2046
  timeout $((DURATION + 20)) $(pin "$LOAD_CPU") wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" -s "$TMP/report.lua" "$url" \
    >"$TMP/$name.max.txt" 2>&1 || true
  s1=$(cpu_snap)
  uc1=$(curl -s --max-time 2 "http://$UP_ADDR/__bench/conns" || echo "")
  [[ $uc0 =~ ^[0-9]+$ && $uc1 =~ ^[0-9]+$ ]] && upc=$((uc1 - uc0 - 1))   # -1: the probe's own connection
  line=$(grep '^RESULT' "$TMP/$name.max.txt" || echo "RESULT rps=0 reqs=0 p50=0 p99=0 p999=0 max=0 sockerr=0 non2xx=-1")
  eval "${line#RESULT }"
  local mrps=$rps mp50=$p50 mp99=$p99 merr=$((sockerr + non2xx))
  if [[ $PIN == 1 ]]; then c0=$(cpu_busy "$s0" "$s1" "$LOAD_CPU"); c1=$(cpu_busy "$s0" "$s1" "$PROXY_CPU"); else c0="-"; c1="-"; fi

  log "$name: fixed rate $RATE req/s for ${RATE_DURATION}s ($RATE_TOOL)"
  [[ -n $pid ]] && t0=$(cpu_ticks "$pid")
  read -r rps reqs p50 p99 p999 max rerr < <(run_rate "$url" "$RATE_DURATION" "$TMP/$name.rate")
  python3 "$TMP/procsnap.py" snap >"$TMP/$name.snap1"
  bg=$(python3 "$TMP/procsnap.py" diff "$TMP/$name.snap0" "$TMP/$name.snap1" "$((SECONDS - w0))" $$ "$UP_PID" ${pid:+$pid})
  if [[ -n $pid ]]; then
    t1=$(cpu_ticks "$pid")
    vcpu=$(awk -v a="$t0" -v b="$t1" -v s="$RATE_DURATION" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz/s}')
  fi

  if [[ -n $pid && $IDLE_CONNS -gt 0 ]]; then
    log "$name: memory probe with $IDLE_CONNS idle keep-alive connections"
    local r0 r1 ready=$TMP/$name.idle.ready ipid
    sleep 0.5; r0=$(rss_kib "$pid"); rss=$(awk -v r="$r0" 'BEGIN{printf "%.1f", r/1024}')
    # shellcheck disable=SC2046
    $(pin "$LOAD_CPU") python3 "$TMP/idle.py" "$url" "$IDLE_CONNS" "$ready" 3 >"$TMP/$name.idle.log" 2>&1 &
    ipid=$!; PIDS+=("$ipid")
    for _ in $(seq 1 200); do [[ -s $ready ]] && break; kill -0 "$ipid" 2>/dev/null || break; sleep 0.1; done
    if [[ -s $ready ]]; then
      sleep 0.5; r1=$(rss_kib "$pid")
      read -r _ idle_bad <"$ready"
      kpc=$(awk -v a="$r0" -v b="$r1" -v n="$IDLE_CONNS" 'BEGIN{printf "%.1f", (b-a)/n}')
    fi
    wait "$ipid" 2>/dev/null || true
  fi

  if [[ $RELOAD == 1 && -n $rcmd ]]; then
    log "$name: reload under ${RATE} req/s (reload at t=2s of ${RELOAD_WINDOW}s)"
    local lp
    run_rate "$url" "$RELOAD_WINDOW" "$TMP/$name.reload" >"$TMP/$name.reload.res" &
    lp=$!; PIDS+=("$lp")
    sleep 2; bash -c "$rcmd" >"$TMP/$name.reload.cmd.log" 2>&1 || log "$name: reload command failed"
    wait "$lp" || true
    read -r _ _ _ _ rel_p999 rel_max rel_err <"$TMP/$name.reload.res"
    curl -s -D - -o /dev/null --max-time 2 "$url" >"$TMP/$name.reload.after.txt" 2>&1 || true  # still serving?
  fi

  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$name" "$ver" "$mrps" "$mp50" "$mp99" "$merr" "$c0" "$c1" "$rps" "$p50" "$p99" "$p999" "$max" "$rerr" \
    "$vcpu" "$rss" "$kpc" "$idle_bad" "$rel_err" "$rel_p999" "$rel_max" "$bg" "$upc" >>"$RES"
}

# ---------------------------------------------------------------- run ----
T_START=$SECONDS
quiet_check() {  # background CPU busy (%) per CPU over 2 s -> "b0 b1"
  local a b; a=$(cpu_snap); sleep 2; b=$(cpu_snap)
  echo "$(cpu_busy "$a" "$b" "$LOAD_CPU") $(cpu_busy "$a" "$b" "$PROXY_CPU")"
}
read -r BG0 BG1 < <(quiet_check)
while (( (BG0 > QUIET_MAX || BG1 > QUIET_MAX) && SECONDS - T_START < WAIT_QUIET )); do
  log "machine busy (cpu$LOAD_CPU ${BG0}%, cpu$PROXY_CPU ${BG1}%), waiting for quiet"; read -r BG0 BG1 < <(quiet_check)
done
log "background load before start: cpu$LOAD_CPU ${BG0}%, cpu$PROXY_CPU ${BG1}% busy"
(( BG0 > QUIET_MAX || BG1 > QUIET_MAX )) && log "WARNING: machine not idle - results will be noisy (see 'cpu load/proxy %' of direct)"
log "tmp=$TMP pin=$PIN (load+upstream on CPU$LOAD_CPU, proxy on CPU$PROXY_CPU) nice=$NICE rate_tool=$RATE_TOOL"
measure direct "$(basename "$UP_BIN")" "http://$UP_ADDR/" "" ""

for peer in $PEERS; do
  if start_peer "$peer"; then
    measure "$peer" "$(version_of "$peer")" "$PEER_URL" "$PEER_PID" "$PEER_RELOAD"
    stop_pid "$PEER_PID"
  else
    log "$peer: not available, skipped"
  fi
done

if [[ -n $GATEWAY_URL ]]; then
  GW_PID=""
  if [[ -n $GATEWAY_CMD ]]; then
    # shellcheck disable=SC2086
    start_bg gateway "$PROXY_CPU" bash -c "exec $GATEWAY_CMD"
    GW_PID=$LAST_PID
  elif [[ -n $GATEWAY_PID ]]; then
    GW_PID=$GATEWAY_PID
    if [[ $PIN == 1 ]]; then taskset -a -p -c "$PROXY_CPU" "$GW_PID" >/dev/null || log "could not pin gateway pid $GW_PID"; fi
    if [[ $NICE != 0 ]]; then
      for t in /proc/"$GW_PID"/task/*; do renice -n "$NICE" -p "${t##*/}" >/dev/null 2>&1 || true; done
    fi
  else
    log "gateway: no GATEWAY_CMD/GATEWAY_PID, so it is neither pinned nor sampled for CPU/RSS"
  fi
  [[ -n $GW_PID ]] && export GATEWAY_PID=$GW_PID   # usable in GATEWAY_RELOAD_CMD, e.g. 'kill -HUP $GATEWAY_PID'
  if wait_ready "$GATEWAY_URL" 15; then
    measure gateway "${GATEWAY_VERSION:-dev}" "$GATEWAY_URL" "$GW_PID" "$GATEWAY_RELOAD_CMD"
  else
    log "gateway at $GATEWAY_URL did not answer 200 (it must proxy to http://$UP_ADDR)"
  fi
  [[ -n $GATEWAY_CMD && -n $GW_PID ]] && stop_pid "$GW_PID"
fi

# ---------------------------------------------------------------- report ----
python3 - "$RES" "$RATE" "$RATE_TOOL" "$CONNS" "$DURATION" "$RATE_DURATION" "$PIN" "$LOAD_CPU" "$PROXY_CPU" "$IDLE_CONNS" "$BG0/$BG1" "$NICE" <<'EOF'
import csv, sys
res, rate, tool, conns, dur, rdur, pin, lcpu, pcpu, idle, bg, nice = sys.argv[1:]
rows = list(csv.DictReader(open(res), delimiter="\t"))
by = {r["target"]: r for r in rows}
f = lambda v: float(v) if v not in ("", "-") else None
ms = lambda us: "%.2f" % (float(us) / 1000.0) if us not in ("", "-") else "-"
ngx = f(by["nginx"]["max_rps"]) if "nginx" in by else None
d = by.get("direct")
print()
print("nice: %s | pinning: %s | wrk -t1 -c%s %ss closed loop (max) | fixed rate %s req/s, %s conns, %ss, %s" % (
    nice, ("proxy on CPU%s, load generator + upstream on CPU%s (taskset)" % (pcpu, lcpu)) if pin == "1" else "none",
    conns, dur, rate, conns, rdur, "oha open loop + latency correction" if tool == "oha" else "wrk paced (closed loop)"))
hdr = ["target", "version", "max req/s", "x nginx", "p50 ms", "p99 ms", "p99.9 ms", "+p50 ms", "+p99 ms",
       "vCPU@rate", "RSS MiB", "KiB/idle conn", "up conns", "cpu load/proxy %", "errors", "bg cores"]
out = []
for r in rows:
    mr = f(r["max_rps"])
    add50 = "%.3f" % ((f(r["p50"]) - f(d["p50"])) / 1000) if d and r is not d else "-"
    add99 = "%.3f" % ((f(r["p99"]) - f(d["p99"])) / 1000) if d and r is not d else "-"
    errs = int(float(r["max_err"])) + int(float(r["rate_err"]))
    out.append([r["target"], r["version"][:10], "%.0f" % mr, ("%.2f" % (mr / ngx)) if ngx else "-",
                ms(r["p50"]), ms(r["p99"]), ms(r["p999"]), add50, add99, r["vcpu"], r["rss_mib"],
                r["kib_per_conn"], r.get("up_conns", "-"), "%s/%s" % (r["cpu_load"], r["cpu_proxy"]), str(errs),
                r["bg_cores"]])
w = [max(len(h), *(len(o[i]) for o in out)) for i, h in enumerate(hdr)]
line = lambda cells: "  ".join(c.rjust(w[i]) if i > 1 else c.ljust(w[i]) for i, c in enumerate(cells))
print(line(hdr)); print("  ".join("-" * x for x in w))
for o in out: print(line(o))
rl = [r for r in rows if r["reload_err"] not in ("", "-")]
if rl:
    print("\nreload under %s req/s: target, failed requests, p99.9 ms, max ms" % rate)
    for r in rl:
        print("  %-8s %6s %10s %10s" % (r["target"], r["reload_err"], ms(r["reload_p999"]), ms(r["reload_max"])))
print("\nlatency columns are from the fixed-rate run; +p50/+p99 = minus direct; 'x nginx' = max req/s / nginx max req/s")
print("cpu load/proxy %% = busy %% of CPU%s/CPU%s during the max run; background busy before start: %s %%" % (lcpu, pcpu, bg))
print("up conns = new upstream TCP connections during the max run (connection reuse; direct = wrk's own)")
print("bg cores = CPU used by other long-lived processes on this machine during the target's max+rate runs; > 0.1 = contaminated")
EOF
log "done in $((SECONDS - T_START)) s"
