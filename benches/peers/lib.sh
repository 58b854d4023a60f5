# lib.sh - helpers shared by the load harnesses (resilience.sh, eastwest.sh): background
# processes started under the harness's `pin` prefix and killed by PID on exit, HTTP status
# polling, and CPU snapshots from /proc/stat. Source it after defining log, pin, TMP and KEEP.
PIDS=()
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 25); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$p" 2>/dev/null; then kill -KILL "$p" 2>/dev/null || true; fi
  done
  if [[ $KEEP == 1 ]]; then log "configs, logs and raw wrk output: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start_bg() {  # start_bg NAME PLACE CMD... -> LAST_PID (PLACE: what the harness's pin takes)
  local name=$1 place=$2; shift 2
  # shellcheck disable=SC2046
  $(pin "$place") "$@" >"$TMP/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}
stop_pid() {
  local p=$1
  kill -TERM "$p" 2>/dev/null || return 0
  for _ in $(seq 1 25); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$p" 2>/dev/null || true
}
code_of() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" || true; }
wait_code() {  # wait_code WANT URL [seconds]
  local want=$1 url=$2 t=${3:-15}
  for _ in $(seq 1 $((t * 10))); do [[ $(code_of "$url") == "$want" ]] && return 0; sleep 0.1; done
  return 1
}
port_free() { [[ -z $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
cpu_snap() { awk '/^cpu/{b=0; for(i=2;i<=NF;i++) b+=$i; printf "%s %d %d %d ", $1, b, $5+$6, $9}' /proc/stat; }
cpu_busy() {  # cpu_busy SNAP0 SNAP1 CPU -> busy % of that CPU between the snapshots ("" as CPU: steal % of all)
  python3 - "$1" "$2" "$3" <<'EOF'
import sys
def parse(s):
    t = s.split(); return {t[i]: (int(t[i+1]), int(t[i+2]), int(t[i+3])) for i in range(0, len(t), 4)}
a, b, c = parse(sys.argv[1]), parse(sys.argv[2]), "cpu" + sys.argv[3]
tot = b[c][0] - a[c][0]; idle = b[c][1] - a[c][1]; steal = b[c][2] - a[c][2]
if sys.argv[3] == "": print("%.1f" % (100.0 * steal / tot) if tot > 0 else -1)
else: print(round(100.0 * (tot - idle) / tot) if tot > 0 else -1)
EOF
}
