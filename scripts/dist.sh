#!/usr/bin/env bash
# Builds the backend (release) and the frontend, and lays out dist/ as Grafana
# expects a plugin folder: plugin.json, module.js, img/, the executable named
# gpx_arrowmon_<os>_<arch>, README, LICENSE and dashboards.
#   scripts/dist.sh                 build everything, lay out ./dist
#   scripts/dist.sh --layout-only D lay out D from what is already built
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

layout_only=0
out="$root/dist"
if [ "${1:-}" = "--layout-only" ]; then
  layout_only=1
  out="${2:?usage: dist.sh --layout-only OUTDIR}"
fi

if [ "$layout_only" = 0 ]; then
  cargo build --release --bin gpx_arrowmon
  (cd frontend && { [ -d node_modules ] || npm ci; } && npm run build)
fi

bin="${ARROWMON_BIN:-$root/target/release/gpx_arrowmon}"
[ -x "$bin" ] || { echo "dist: $bin is missing; run cargo build --release" >&2; exit 1; }
[ -f frontend/dist/module.js ] || { echo "dist: frontend/dist/module.js is missing; run (cd frontend && npm ci && npm run build)" >&2; exit 1; }

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac

rm -rf "$out"
mkdir -p "$out"
cp plugin.json README.md LICENSE "$out/"
cp -r frontend/dist/. "$out/"
cp "$bin" "$out/gpx_arrowmon_linux_${arch}"
# Cross-built arm64 binary, when that target is installed and built.
arm="$root/target/aarch64-unknown-linux-gnu/release/gpx_arrowmon"
if [ "$arch" != arm64 ] && [ -x "$arm" ]; then
  cp "$arm" "$out/gpx_arrowmon_linux_arm64"
fi
mkdir -p "$out/dashboards"
if compgen -G "provisioning/dashboards/*.json" >/dev/null; then
  cp provisioning/dashboards/*.json "$out/dashboards/"
fi
echo "dist: plugin folder laid out in $out"
