#!/usr/bin/env bash
# run.sh - the peer benchmark with the Switchyard gateway row, in one command from a fresh clone:
#   setup.sh (peers; oha only with BUILD_OHA=1) -> cargo build --release -p switchyard ->
#   the gateway's bench config in a temp dir -> peers.sh RUNS times -> median summary (--md).
# The run dirs (raw results, configs, logs) are listed in last-run.txt beside this script.
# Knobs (env): RUNS=3, BUILD_OHA=0, SKIP_SETUP=0, SKIP_BUILD=0, GATEWAY_PORT=18090,
# GATEWAY_ADMIN=127.0.0.1:18099, GATEWAY_THREADS=1, GATEWAY_LOG=warn (RUST_LOG of the gateway);
# every peers.sh knob (PEERS, DURATION, BASE_PORT, RATE, ...) passes through to it.
# Internal: `run.sh --reload CFG_DIR ADMIN` is the GATEWAY_RELOAD_CMD peers.sh fires under load.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)

log() { printf '[run %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

route_yaml() {  # route_yaml N: the bench route, whose header filter sets x-bench-generation: N
  cat <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-bench-generation, value: "$1"}]
    backendRefs: [{group: switchyard.dev, kind: Backend, name: upstream}]
EOF
}

generation() {  # generation ADMIN_ADDR -> the loaded config generation, or nothing
  curl -s --max-time 1 "http://$1/config" 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["generation"])' 2>/dev/null || true
}

# ------------------------------------------------------- reload (called by peers.sh) ----
if [[ ${1:-} == --reload ]]; then
  # Rewrite route.yaml atomically (dot file in the same dir, then rename: the loader skips dot
  # files) with the next header value, then wait until the gateway reports a new generation.
  [[ $# == 3 ]] || die "usage: run.sh --reload CFG_DIR ADMIN_ADDR"
  cfg=$2 admin=$3
  cur=$(sed -n 's/.*value: "\([0-9]*\)".*/\1/p' "$cfg/route.yaml")
  g0=$(generation "$admin")
  route_yaml $((${cur:-0} + 1)) >"$cfg/.route.yaml.tmp"
  mv -f "$cfg/.route.yaml.tmp" "$cfg/route.yaml"
  for _ in $(seq 1 50); do
    g1=$(generation "$admin")
    if [[ -n $g1 && $g1 != "$g0" ]]; then
      log "gateway reloaded: generation ${g0:-?} -> $g1 (x-bench-generation $((${cur:-0} + 1)))"
      exit 0
    fi
    sleep 0.1
  done
  die "gateway did not load the new route within 5 s (generation still ${g0:-unknown})"
fi
[[ $# == 0 ]] || die "run.sh takes no arguments (knobs are environment variables, see the header)"

# ------------------------------------------------------------------------ knobs ----
RUNS=${RUNS:-3}
BASE_PORT=${BASE_PORT:-18080}
GATEWAY_PORT=${GATEWAY_PORT:-18090}
GATEWAY_ADMIN=${GATEWAY_ADMIN:-127.0.0.1:18099}
GATEWAY_THREADS=${GATEWAY_THREADS:-1}
GATEWAY_LOG=${GATEWAY_LOG:-warn}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
export BASE_PORT

# ------------------------------------------------------------------ setup + build ----
if [[ ${SKIP_SETUP:-0} != 1 ]]; then
  log "installing peers (setup.sh, BUILD_OHA=${BUILD_OHA:-0})"
  BUILD_OHA=${BUILD_OHA:-0} bash "$HERE/setup.sh"
fi
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "cargo build --release -p switchyard"
  (cd "$REPO" && cargo build --release -p switchyard)
fi
BIN=${CARGO_TARGET_DIR:-$REPO/target}/release/switchyard
[[ -x $BIN ]] || die "no gateway binary at $BIN"
for p in "$GATEWAY_PORT" "${GATEWAY_ADMIN##*:}"; do
  [[ -z $(ss -Hltn "sport = :$p" 2>/dev/null) ]] || die "port $p on loopback is busy"
done

# ------------------------------------------------------------------ gateway config ----
ROOT=$(mktemp -d -t switchyard-peers.XXXXXX)
CFG=$ROOT/config
mkdir -p "$CFG"
cat >"$CFG/gateway.yaml" <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench}
spec:
  gatewayClassName: switchyard
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners: [{name: http, port: $GATEWAY_PORT, protocol: HTTP}]
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: upstream}
# peers.sh exports UPSTREAM_ADDR only to GATEWAY_CMD, so the file names the upstream itself
spec: {endpoints: [{address: "127.0.0.1:$BASE_PORT"}]}
EOF
route_yaml 1 >"$CFG/route.yaml"
"$BIN" validate "$CFG" >"$ROOT/validate.txt" 2>&1 || die "bench config rejected: $(cat "$ROOT/validate.txt")"

q() { printf '%q' "$1"; }
GATEWAY_CMD="env RUST_LOG=$(q "$GATEWAY_LOG") $(q "$BIN") gateway --config-dir $(q "$CFG")"
GATEWAY_CMD+=" --admin $(q "$GATEWAY_ADMIN") --threads $(q "$GATEWAY_THREADS")"
GATEWAY_RELOAD_CMD="bash $(q "$HERE/run.sh") --reload $(q "$CFG") $(q "$GATEWAY_ADMIN")"
GATEWAY_VERSION=$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo dev)
export GATEWAY_CMD GATEWAY_RELOAD_CMD GATEWAY_VERSION
export GATEWAY_URL=http://127.0.0.1:$GATEWAY_PORT/

# ------------------------------------------------------------------------ runs ----
dirs=()
for i in $(seq 1 "$RUNS"); do
  out=$ROOT/run-$i
  log "peers.sh run $i/$RUNS -> $out"
  rc=0
  OUT_DIR=$out bash "$HERE/peers.sh" 2>&1 | tee "$ROOT/run-$i.console.txt" || rc=$?
  if [[ ! -s $out/results.tsv ]]; then
    log "WARNING: run $i left no results (exit $rc); see $ROOT/run-$i.console.txt"
    continue
  fi
  dirs+=("$out")
  if ! grep -q '^gateway' "$out/results.tsv"; then
    log "WARNING: run $i has no gateway row; gateway log: $out/gateway.log"
  elif grep -q 'ERROR' "$out/gateway.reload.cmd.log" 2>/dev/null; then
    log "WARNING: run $i: the reload was not observed; see $out/gateway.reload.cmd.log"
  fi
done
(( ${#dirs[@]} > 0 )) || die "no run produced results"
printf '%s\n' "${dirs[@]}" >"$HERE/last-run.txt"
echo
python3 "$HERE/peers-summary.py" "${dirs[@]}" --md
log "run dirs listed in $HERE/last-run.txt (config: $CFG)"
