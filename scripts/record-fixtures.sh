#!/usr/bin/env bash
# Record exposition bodies from the real exporters for the parser benchmarks.
# Starts a private topology, lets the load generator run FIXTURE_WARMUP (5)
# seconds, saves one /metrics body of node_exporter and of each mysqld_exporter
# (uncompressed, as served to Prometheus's Accept header), then stops it.
#
# Output in OUTDIR: node_exporter.prom, mysqld_exporter.prom (server 1),
# mysqld_exporter_2.prom, and fixtures.txt (versions, content types, sizes).
# Note: the Debian builds of node_exporter 1.5.0 and mysqld_exporter 0.14.0
# answer text format 0.0.4 even when OpenMetrics is offered.
#
# Usage: scripts/record-fixtures.sh OUTDIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
OUT=$1
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
FIXTURE_WARMUP=${FIXTURE_WARMUP:-5}
# Prometheus 3's default scrape_protocols, as its Accept header.
ACCEPT='application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1'

TOPO=$(mktemp -d /tmp/arrowmon-fixtures.XXXXXX)
cleanup() { "$HERE/topology-stop.sh" "$TOPO" >/dev/null || true; rm -rf "$TOPO"; }
trap cleanup EXIT

LOAD_SECONDS=$((FIXTURE_WARMUP + 60)) "$HERE/topology-start.sh" "$TOPO" >/dev/null
# shellcheck disable=SC1091
. "$TOPO/topology.env"
sleep "$FIXTURE_WARMUP"

meta=$OUT/fixtures.txt
{
  echo "recorded $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/record-fixtures.sh"
  for p in prometheus-node-exporter prometheus-mysqld-exporter mariadb-server; do
    echo "$p $(dpkg-query -W -f='${Version}' "$p" 2>/dev/null || echo '?')"
  done
} >"$meta"

fetch() { # fetch ADDR FILE
  local info
  info=$(curl -sf --max-time 10 -H "Accept: $ACCEPT" -o "$OUT/$2" \
    -w '%{content_type}|%{size_download}' "http://$1/metrics") || {
    echo "[record-fixtures] ERROR: GET http://$1/metrics failed" >&2
    exit 1
  }
  echo "$2: ${info%%|*}; ${info##*|} bytes; $(grep -vc '^#' "$OUT/$2") samples" >>"$meta"
}
fetch "$NODE_EXPORTER" node_exporter.prom
fetch "$MYSQLD_EXPORTER_1" mysqld_exporter.prom
fetch "$MYSQLD_EXPORTER_2" mysqld_exporter_2.prom
grep -q '^mysql_up 1' "$OUT/mysqld_exporter.prom" || { echo "[record-fixtures] ERROR: mysql_up is not 1" >&2; exit 1; }
cat "$meta"
