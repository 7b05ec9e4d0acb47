#!/usr/bin/env bash
# The arrowmon demo without Docker: the same topology as the docker compose demo,
# as local processes on 127.0.0.1 (two MariaDB servers, node_exporter, one
# mysqld_exporter per server, a load generator; scripts/topology-start.sh), and
# `gpx_arrowmon serve` scraping them (and itself) with the Prometheus HTTP API.
# Point Grafana's stock Prometheus datasource or promtool at it. Runs until Ctrl-C,
# or for --duration SECONDS; then stops everything it started, by PID.
#
# Usage: scripts/demo.sh [--duration SECONDS] [--listen ADDR] [--dir DIR]
#   --listen ADDR   where arrowmon serves the API (default 127.0.0.1:9090)
#   --dir DIR       keep the topology, data and logs in DIR (default: a temporary
#                   folder, removed at the end)
#
# Environment:
#   ARROWMON_BIN     the gpx_arrowmon binary (default target/release/gpx_arrowmon,
#                    built with `cargo build --release` when missing)
#   SCRAPE_INTERVAL  scrape interval of the demo's scrape config (default 5s)
#
# Needs what scripts/install-deps.sh installs (MariaDB, the exporters, curl).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
DURATION=""
LISTEN=127.0.0.1:9090
DIR=""
while (($#)); do
  case $1 in
    --duration) [[ ${2:-} =~ ^[0-9]+$ ]] || usage; DURATION=$2; shift 2 ;;
    --listen) [[ -n ${2:-} ]] || usage; LISTEN=$2; shift 2 ;;
    --dir) [[ -n ${2:-} ]] || usage; DIR=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
  esac
done
SCRAPE_INTERVAL=${SCRAPE_INTERVAL:-5s}
log() { printf '[demo] %s\n' "$*"; }

# ---- the binary ------------------------------------------------------------------
BIN=${ARROWMON_BIN:-$root/target/release/gpx_arrowmon}
if [[ ! -x $BIN ]]; then
  if [[ -n ${ARROWMON_BIN:-} ]]; then
    echo "[demo] ERROR: ARROWMON_BIN=$ARROWMON_BIN is not an executable" >&2
    exit 1
  fi
  log "building gpx_arrowmon (cargo build --release --bin gpx_arrowmon)"
  (cd "$root" && cargo build --release --bin gpx_arrowmon)
fi

host=${LISTEN%:*}
port=${LISTEN##*:}
if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
  echo "[demo] ERROR: $LISTEN is already in use; pick another with --listen" >&2
  exit 1
fi

# ---- folders -----------------------------------------------------------------------
remove_dir=0
if [[ -z $DIR ]]; then
  # Short, since the MariaDB sockets live under it (unix socket paths are limited).
  DIR=$(mktemp -d /tmp/arrowmon-demo.XXXXXX)
  remove_dir=1
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
TOPO=$DIR/topology

# ---- stopping, whatever happens ----------------------------------------------------
serve_pid=""
stopping=0
cleanup() {
  local rc=$?
  ((stopping)) && return
  stopping=1
  trap '' INT TERM
  if [[ -n $serve_pid ]] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$serve_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$serve_pid" 2>/dev/null; then
      log "gpx_arrowmon (pid $serve_pid) ignored SIGTERM: SIGKILL"
      kill -KILL "$serve_pid" 2>/dev/null || true
    fi
    wait "$serve_pid" 2>/dev/null || true
  fi
  if [[ -f $TOPO/pids ]]; then
    "$root/scripts/topology-stop.sh" "$TOPO" || rc=1
  fi
  if ((remove_dir)); then
    rm -rf "$DIR"
  else
    log "data and logs kept in $DIR"
  fi
  log "stopped"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# ---- the topology ------------------------------------------------------------------
if [[ -n $DURATION ]]; then
  export LOAD_SECONDS=$((DURATION + 60))
fi
"$root/scripts/topology-start.sh" "$TOPO" >"$DIR/topology-start.log" || {
  cat "$DIR/topology-start.log" >&2
  exit 1
}
# shellcheck disable=SC1091
. "$TOPO/topology.env"

# ---- arrowmon ----------------------------------------------------------------------
# The demo's scrape config: the same jobs and rules as the compose demo's
# provisioned datasource, plus arrowmon's own /metrics for the self-monitoring
# dashboard.
cat >"$DIR/scrape.yml" <<EOF
global:
  scrape_interval: $SCRAPE_INTERVAL
rule_files:
  - $root/rules/arrowmon.rules.yml
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['$NODE_EXPORTER']
  - job_name: mysql
    static_configs:
      - targets: ['$MYSQLD_EXPORTER_1', '$MYSQLD_EXPORTER_2']
  # The same servers without an exporter: arrowmon reads them over SQL.
  - job_name: mysql-sql
    mysql:
      user: $MYSQL_USER
      password: $MYSQL_PASSWORD
    static_configs:
      - targets: ['127.0.0.1:$MYSQL_1_PORT', '127.0.0.1:$MYSQL_2_PORT']
  - job_name: arrowmon
    static_configs:
      - targets: ['$LISTEN']
EOF
"$BIN" check-config "$DIR/scrape.yml" >/dev/null

"$BIN" serve --config "$DIR/scrape.yml" --data-dir "$DIR/data" --listen "$LISTEN" \
  </dev/null >"$DIR/arrowmon.log" 2>&1 &
serve_pid=$!
for _ in $(seq 300); do
  curl -sf --max-time 1 "http://$LISTEN/-/ready" >/dev/null 2>&1 && break
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "[demo] ERROR: gpx_arrowmon serve exited; last lines of $DIR/arrowmon.log:" >&2
    tail -n 20 "$DIR/arrowmon.log" >&2
    serve_pid=""
    exit 1
  fi
  sleep 0.1
done
curl -sf --max-time 1 "http://$LISTEN/-/ready" >/dev/null || {
  echo "[demo] ERROR: gpx_arrowmon serve is not ready after 30 s" >&2
  exit 1
}

# ---- Grafana files for the stock Prometheus datasource ----------------------------
# The dashboards reference the datasource {type arrowmon-metrics-datasource, uid
# arrowmon}; for a stock Prometheus datasource the type is swapped and the
# datasource provisioned with the same uid. The query model is the same.
GRAFANA=$DIR/grafana-provisioning
mkdir -p "$GRAFANA/datasources" "$GRAFANA/dashboards"
cat >"$GRAFANA/datasources/arrowmon-demo.yaml" <<EOF
apiVersion: 1
datasources:
  - name: arrowmon (demo, Prometheus API)
    type: prometheus
    uid: arrowmon
    access: proxy
    url: http://$LISTEN
    jsonData:
      timeInterval: $SCRAPE_INTERVAL
EOF
for f in "$root"/provisioning/dashboards/*.json; do
  sed 's/"arrowmon-metrics-datasource"/"prometheus"/g' "$f" >"$GRAFANA/dashboards/$(basename "$f")"
done
sed "s#/etc/grafana/provisioning/dashboards#$GRAFANA/dashboards#" \
  "$root/provisioning/dashboards/arrowmon.yaml" >"$GRAFANA/dashboards/arrowmon.yaml"

cat <<EOF

arrowmon demo running (no Docker)
  Prometheus HTTP API   http://$LISTEN      (scrape config: $DIR/scrape.yml)
  targets               node $NODE_EXPORTER, mysql $MYSQLD_EXPORTER_1 $MYSQLD_EXPORTER_2,
                        mysql-sql (no exporter) 127.0.0.1:$MYSQL_1_PORT 127.0.0.1:$MYSQL_2_PORT, arrowmon $LISTEN
  MariaDB               127.0.0.1:$MYSQL_1_PORT and 127.0.0.1:$MYSQL_2_PORT (socket root login: $MYSQL_1_SOCKET)

  Grafana:  add a Prometheus datasource with URL http://$LISTEN, or start Grafana with
            provisioning from $GRAFANA
            (datasource uid arrowmon + the node, MySQL, MySQL query analytics and self-monitoring dashboards), e.g.
              GF_PATHS_PROVISIONING=$GRAFANA grafana server
  promtool: promtool query instant http://$LISTEN 'up'
            promtool query range --start=\$(date -d -5min +%s) http://$LISTEN 'rate(mysql_global_status_queries[1m])'
  curl:     curl -s 'http://$LISTEN/api/v1/query?query=mysql_up'

EOF
if [[ -n $DURATION ]]; then
  log "running for $DURATION s"
else
  log "running; Ctrl-C stops everything"
fi

# ---- run ----------------------------------------------------------------------------
start=$SECONDS
while :; do
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "[demo] ERROR: gpx_arrowmon serve stopped; see $DIR/arrowmon.log" >&2
    serve_pid=""
    exit 1
  fi
  if [[ -n $DURATION ]] && ((SECONDS - start >= DURATION)); then
    break
  fi
  sleep 1 &
  wait $! || true
done
up=$(curl -sf --max-time 5 "http://$LISTEN/api/v1/query?query=sum(up)" |
  sed -n 's/.*"value":\[[^,]*,"\([^"]*\)"\].*/\1/p' || true)
log "after $DURATION s: ${up:-?} of 4 targets up"
