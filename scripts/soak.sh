#!/usr/bin/env bash
# Soak run: `gpx_arrowmon serve` and the plugin under the Grafana harness scrape the
# test topology and hostile targets under dashboard query load for SECONDS, while the
# run kills each with SIGKILL, fills their disk and damages a block, every 5 minutes
# (tests/external/soak.rs says what it checks). The suite runs the same test for a
# minute; this runs it as long as asked, in the release profile.
#
# Usage: scripts/soak.sh [SECONDS]        (default 3600)
# Environment:
#   ARROWMON_SOAK_RSS_MB=1024   the RSS bound each process must stay under
#   ARROWMON_SOAK_DIR=DIR       where the logs and report.txt go
#                               (default /tmp/arrowmon-soak-<time>)
# Needs root for the tmpfs of the full-disk events; installs what it needs first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

seconds=${1:-3600}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
dir=${ARROWMON_SOAK_DIR:-/tmp/arrowmon-soak-$(date +%Y%m%dT%H%M%S)}
mkdir -p "$dir"

if [ "$(id -u)" = 0 ]; then
  bash scripts/install-deps.sh
else
  sudo bash scripts/install-deps.sh
fi

echo "soak: $seconds s, logs and report in $dir"
status=0
ARROWMON_SOAK_SECONDS=$seconds ARROWMON_SOAK_DIR=$dir ARROWMON_REQUIRE_ROOT_TESTS=1 \
  cargo test --release --test external soak -- --nocapture --test-threads 1 || status=$?
echo "report: $dir/report.txt"
cat "$dir/report.txt" 2>/dev/null || echo "(no report: the run did not get to its checks)"
exit "$status"
