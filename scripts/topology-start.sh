#!/usr/bin/env bash
# Start the arrowmon test topology on 127.0.0.1, every port chosen free at start:
#   - two MariaDB servers (own datadirs under DIR, database `loadtest`, monitoring
#     user `exporter` with PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT),
#     with the performance schema on and its statement digests collected,
#   - prometheus-node-exporter,
#   - one prometheus-mysqld-exporter per server (credentials via --config.my-cnf),
#     its default collectors and perf_schema.eventsstatements (query analytics),
#   - a bounded load generator (scripts/topology-loadgen.sh).
# PIDs go to DIR/pids (stop with scripts/topology-stop.sh DIR), logs to DIR/logs/,
# and the addresses to DIR/topology.env (shell KEY=value lines), also printed.
# On any failure everything started so far is stopped and the failing
# component's log tail is shown.
#
# Usage: scripts/topology-start.sh [--only node] DIR
#
# Environment:
#   LOAD_SECONDS=3600      how long the load generator runs (0: no load)
#   LOAD_INTERVAL=0.5      seconds between load rounds
#   TOPOLOGY_TIMEOUT=60    seconds each component may take to come up
#   TOPOLOGY_CACHE=/tmp/arrowmon-topology-cache   initialised MariaDB datadir
#                          template, reused by later starts ("" disables)
#   NODE_EXPORTER_ARGS, MYSQLD_EXPORTER_ARGS  extra flags for the exporters
#
# topology.env keys: TOPOLOGY_DIR NODE_EXPORTER NODE_TEXTFILE_DIR and, unless
# --only node: MYSQLD_EXPORTER_1 MYSQLD_EXPORTER_2 MYSQL_1_PORT MYSQL_2_PORT
# MYSQL_1_SOCKET MYSQL_2_SOCKET MYSQL_USER MYSQL_PASSWORD MYSQL_DATABASE
# (MYSQL_USER is the exporter user, over TCP; root has no password over the sockets).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=topology-lib.sh source-path=SCRIPTDIR
. "$HERE/topology-lib.sh"

usage() { echo "usage: $0 [--only node] DIR" >&2; exit 2; }
ONLY=""
DIR=""
while (($#)); do
  case $1 in
    --only) [[ ${2:-} == node ]] || usage; ONLY=node; shift 2 ;;
    --only=node) ONLY=node; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) usage ;;
    *) [[ -z $DIR ]] || usage; DIR=$1; shift ;;
  esac
done
[[ -n $DIR ]] || usage

LOAD_SECONDS=${LOAD_SECONDS:-3600}
LOAD_INTERVAL=${LOAD_INTERVAL:-0.5}
TOPOLOGY_TIMEOUT=${TOPOLOGY_TIMEOUT:-60}
TOPOLOGY_CACHE=${TOPOLOGY_CACHE-/tmp/arrowmon-topology-cache}
read -ra NODE_EXTRA <<<"${NODE_EXPORTER_ARGS:-}"
read -ra MYSQLD_EXTRA <<<"${MYSQLD_EXPORTER_ARGS:-}"
EXPORTER_USER=exporter
EXPORTER_PASSWORD=exporter-test-pw

t0=$(now_s)
log() { printf '[topology-start] %s\n' "$*"; }

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
LOGS=$DIR/logs
PIDS=$DIR/pids

# ---- refuse to start twice in one DIR ------------------------------------
if [[ -f $PIDS ]]; then
  while read -r pid start name; do
    if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" "$start"; then
      echo "[topology-start] ERROR: $DIR already runs $name (pid $pid); run scripts/topology-stop.sh $DIR first" >&2
      exit 1
    fi
  done <"$PIDS"
fi
rm -f "$PIDS" "$PIDS.stopped" "$DIR/topology.env"
mkdir -p "$LOGS"
: >"$PIDS"

# ---- binaries ----------------------------------------------------------------
find_bin() {
  local b
  for b in "$@"; do
    if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
    if [[ -x /usr/sbin/$b ]]; then echo "/usr/sbin/$b"; return 0; fi
  done
  echo "[topology-start] ERROR: none of '$*' found; run scripts/install-deps.sh" >&2
  return 1
}
NODE_EXPORTER_BIN=$(find_bin prometheus-node-exporter node_exporter)
if [[ -z $ONLY ]]; then
  MARIADBD=$(find_bin mariadbd mysqld)
  MARIADB=$(find_bin mariadb mysql)
  INSTALL_DB=$(find_bin mariadb-install-db mysql_install_db)
  MYSQLD_EXPORTER_BIN=$(find_bin prometheus-mysqld-exporter mysqld_exporter)
  for n in 1 2; do
    sock=$DIR/mysql$n.sock
    if ((${#sock} > 100)); then
      echo "[topology-start] ERROR: socket path $sock is ${#sock} bytes; unix sockets allow 107. Use a shorter DIR." >&2
      exit 1
    fi
  done
fi
command -v curl >/dev/null || { echo "[topology-start] ERROR: curl missing; run scripts/install-deps.sh" >&2; exit 1; }

# ---- clean up on failure -------------------------------------------------------
started_ok=0
on_exit() {
  if ((started_ok == 0)); then
    echo "[topology-start] FAILED: stopping what was started in $DIR" >&2
    "$HERE/topology-stop.sh" "$DIR" >&2 || true
  fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { # fail COMPONENT MESSAGE
  local comp=$1 lf=$LOGS/$1.log
  echo "[topology-start] ERROR: $comp: $2" >&2
  if [[ -f $lf ]]; then
    echo "---- last 30 lines of $lf ----" >&2
    tail -n 30 "$lf" >&2
    echo "----" >&2
  fi
  exit 1
}

# ---- ports ---------------------------------------------------------------------
# Random ports in 20000-31999, below Linux's ephemeral range (32768+), so that
# outgoing connections never hold them; a port is taken when something accepts
# on it. Two topologies starting at once can still pick the same port; the
# loser sees "address already in use" and retries with another port.
declare -A USED_PORTS=()
pick_port() { # sets PICKED_PORT (not a subshell: USED_PORTS must persist)
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12000))
    [[ -z ${USED_PORTS[$p]:-} ]] || continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS[$p]=1
      PICKED_PORT=$p
      return 0
    fi
  done
  fail ports "no free port found in 20000-31999"
}

record_pid() { # record_pid NAME PID
  local st
  st=$(proc_starttime "$2") || st=0
  printf '%s %s %s\n' "$2" "$st" "$1" >>"$PIDS"
}

# ---- components ------------------------------------------------------------------
# Each component NAME has launch_NAME PORT (starts it in the background, sets
# LAUNCHED_PID) and ready_NAME PORT (true once it serves). start_component
# launches with a fresh port; await_component waits, retrying with a new port
# (up to 5 attempts) when the port turned out to be taken.
declare -A PORT=() PID=() TRIES=()

start_component() {
  local name=$1 port
  pick_port
  port=$PICKED_PORT
  TRIES[$name]=$((${TRIES[$name]:-0} + 1))
  if ((TRIES[$name] == 1)); then : >"$LOGS/$name.log"; fi
  printf -- '---- %s attempt %s on port %s\n' "$(date -Is)" "${TRIES[$name]}" "$port" >>"$LOGS/$name.log"
  "launch_${name%[0-9]}" "$port" "$name"
  PORT[$name]=$port
  PID[$name]=$LAUNCHED_PID
  record_pid "$name" "$LAUNCHED_PID"
}

await_component() {
  local name=$1 deadline
  deadline=$(($(date +%s) + TOPOLOGY_TIMEOUT))
  while :; do
    if "ready_${name%[0-9]}" "${PORT[$name]}" "$name"; then
      return 0
    fi
    if ! proc_starttime "${PID[$name]}" >/dev/null; then
      wait "${PID[$name]}" 2>/dev/null || true
      # Only the latest attempt's lines (after the last "---- ... attempt" marker).
      if awk '/^---- .* attempt [0-9]+ on port/ { buf = ""; next } { buf = buf $0 "\n" } END { printf "%s", buf }' \
        "$LOGS/$name.log" | grep -qi 'address already in use' && ((TRIES[$name] < 5)); then
        log "$name: port ${PORT[$name]} was taken, retrying with another"
        start_component "$name"
        deadline=$(($(date +%s) + TOPOLOGY_TIMEOUT))
        continue
      fi
      fail "$name" "exited before it was ready (port ${PORT[$name]})"
    fi
    if (($(date +%s) >= deadline)); then
      fail "$name" "not ready after ${TOPOLOGY_TIMEOUT}s (pid ${PID[$name]}, port ${PORT[$name]})"
    fi
    sleep 0.1
  done
}

metrics_match() { # metrics_match PORT REGEX
  # Read the whole body before matching: `curl | grep -q` would reset the
  # connection mid-body and make the exporter log an error per metric family.
  local body
  body=$(curl -sf --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null) || return 1
  grep -Eq "$2" <<<"$body"
}

# node_exporter. The systemd collector (enabled by Debian's build) needs dbus
# and systemd as PID 1, which this machine has not: it errors on every scrape.
# The textfile directory is the topology's own (empty unless a test adds files).
launch_node() {
  "$NODE_EXPORTER_BIN" --web.listen-address="127.0.0.1:$1" \
    --no-collector.systemd \
    --collector.textfile.directory="$DIR/node-textfile" \
    "${NODE_EXTRA[@]}" \
    </dev/null >>"$LOGS/$2.log" 2>&1 &
  LAUNCHED_PID=$!
}
ready_node() { metrics_match "$1" '^node_exporter_build_info'; }

# MariaDB.
MYSQLD_OPTS=(
  --innodb-buffer-pool-size=32M --innodb-log-file-size=16M
  --innodb-flush-log-at-trx-commit=0 --skip-log-bin
)
# The performance schema, for query analytics: statement digests
# (events_statements_summary_by_digest) need the statement instruments and the
# digest consumer, which MariaDB 10.11 enables once the schema is on; they are
# named so that a changed default does not silently empty the digest table.
PERF_SCHEMA_OPTS=(
  --performance-schema=ON
  --performance-schema-instrument='statement/%=ON'
  --performance-schema-consumer-global-instrumentation=ON
  --performance-schema-consumer-thread-instrumentation=ON
  --performance-schema-consumer-statements-digest=ON
)
launch_mysql() {
  local n=${2#mysql}
  rm -f "$DIR/mysql$n.sock"
  "$MARIADBD" --no-defaults --user=root --datadir="$DIR/mysql$n/data" \
    --tmpdir="$DIR/mysql$n/tmp" --pid-file="$DIR/mysql$n/mariadbd.pid" \
    --skip-networking=0 --bind-address=127.0.0.1 --port="$1" \
    --socket="$DIR/mysql$n.sock" --skip-name-resolve --max-connections=100 \
    "${MYSQLD_OPTS[@]}" "${PERF_SCHEMA_OPTS[@]}" </dev/null >>"$LOGS/$2.log" 2>&1 &
  LAUNCHED_PID=$!
}
ready_mysql() {
  local n=${2#mysql}
  [[ -S $DIR/mysql$n.sock ]] &&
    "$MARIADB" --no-defaults -uroot --socket="$DIR/mysql$n.sock" --connect-timeout=2 \
      -Nse 'SELECT 1' >/dev/null 2>&1
}

# mysqld_exporter 0.14: credentials and address in a my.cnf [client] section.
launch_mysqld_exporter() {
  local n=${2#mysqld_exporter} cnf
  cnf=$DIR/mysql$n/exporter.cnf
  (
    umask 077
    printf '[client]\nuser=%s\npassword=%s\nhost=127.0.0.1\nport=%s\n' \
      "$EXPORTER_USER" "$EXPORTER_PASSWORD" "${PORT[mysql$n]}" >"$cnf"
  )
  "$MYSQLD_EXPORTER_BIN" --config.my-cnf="$cnf" --web.listen-address="127.0.0.1:$1" \
    --collect.perf_schema.eventsstatements "${MYSQLD_EXTRA[@]}" </dev/null >>"$LOGS/$2.log" 2>&1 &
  LAUNCHED_PID=$!
}
ready_mysqld_exporter() { metrics_match "$1" '^mysql_up 1'; }

# ---- MariaDB datadir template ------------------------------------------------------
# mariadb-install-db takes seconds; its result depends only on the MariaDB
# version and the InnoDB options, so it is made once and copied.
make_datadir() { # make_datadir DEST
  local dest=$1 ver key tmpl tmp lockfd
  if [[ -z $TOPOLOGY_CACHE ]]; then
    "$INSTALL_DB" --no-defaults --user=root --datadir="$dest" --skip-test-db \
      --auth-root-authentication-method=normal "${MYSQLD_OPTS[@]}" >"$LOGS/install-db.log" 2>&1 ||
      fail install-db "mariadb-install-db failed"
    return 0
  fi
  ver=$("$MARIADBD" --version | tr -c 'A-Za-z0-9.\n-' _)
  key=$(printf '%s %s' "$ver" "${MYSQLD_OPTS[*]}" | md5sum | cut -c1-12)
  tmpl=$TOPOLOGY_CACHE/mariadb-datadir-$key
  mkdir -p "$TOPOLOGY_CACHE"
  exec {lockfd}>"$TOPOLOGY_CACHE/lock"
  flock "$lockfd"
  if [[ ! -d $tmpl ]]; then
    log "initialising MariaDB datadir template $tmpl"
    tmp=$(mktemp -d "$TOPOLOGY_CACHE/tmp.XXXXXX")
    if ! "$INSTALL_DB" --no-defaults --user=root --datadir="$tmp/data" --skip-test-db \
      --auth-root-authentication-method=normal "${MYSQLD_OPTS[@]}" >"$LOGS/install-db.log" 2>&1; then
      rm -rf "$tmp"
      fail install-db "mariadb-install-db failed"
    fi
    mv "$tmp/data" "$tmpl"
    rm -rf "$tmp"
  fi
  flock -u "$lockfd"
  exec {lockfd}>&-
  cp -a "$tmpl" "$dest"
}

setup_sql() {
  cat <<SQL
CREATE DATABASE IF NOT EXISTS loadtest;
CREATE TABLE IF NOT EXISTS loadtest.events (
  id BIGINT AUTO_INCREMENT PRIMARY KEY,
  k INT NOT NULL,
  v VARCHAR(64) NOT NULL,
  hits INT NOT NULL DEFAULT 0,
  updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
  KEY (k)
) ENGINE=InnoDB;
CREATE USER IF NOT EXISTS '$EXPORTER_USER'@'127.0.0.1' IDENTIFIED BY '$EXPORTER_PASSWORD' WITH MAX_USER_CONNECTIONS 10;
CREATE USER IF NOT EXISTS '$EXPORTER_USER'@'localhost' IDENTIFIED BY '$EXPORTER_PASSWORD' WITH MAX_USER_CONNECTIONS 10;
GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT ON *.* TO '$EXPORTER_USER'@'127.0.0.1';
GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR, SELECT ON *.* TO '$EXPORTER_USER'@'localhost';
SQL
}

# ---- start -------------------------------------------------------------------------
rm -rf "$DIR/node-textfile"
mkdir -p "$DIR/node-textfile"
start_component node

if [[ -z $ONLY ]]; then
  for n in 1 2; do
    rm -rf "$DIR/mysql$n"
    mkdir -p "$DIR/mysql$n/tmp"
    make_datadir "$DIR/mysql$n/data"
    start_component "mysql$n"
  done
fi

await_component node
log "node_exporter up on 127.0.0.1:${PORT[node]} ($(elapsed_since "$t0") s)"

if [[ -z $ONLY ]]; then
  for n in 1 2; do
    await_component "mysql$n"
    if ! setup_sql | "$MARIADB" --no-defaults -uroot --socket="$DIR/mysql$n.sock" >>"$LOGS/mysql$n.log" 2>&1; then
      fail "mysql$n" "setup SQL failed"
    fi
    log "mysql$n up on 127.0.0.1:${PORT[mysql$n]} ($(elapsed_since "$t0") s)"
    start_component "mysqld_exporter$n"
  done
  for n in 1 2; do
    await_component "mysqld_exporter$n"
    log "mysqld_exporter$n up on 127.0.0.1:${PORT[mysqld_exporter$n]}, mysql_up 1 ($(elapsed_since "$t0") s)"
  done

  if ((LOAD_SECONDS > 0)); then
    : >"$LOGS/loadgen.log"
    LOAD_SECONDS=$LOAD_SECONDS LOAD_INTERVAL=$LOAD_INTERVAL MARIADB=$MARIADB \
      "$HERE/topology-loadgen.sh" "$DIR" "$DIR/mysql1.sock" "$DIR/mysql2.sock" \
      </dev/null >>"$LOGS/loadgen.log" 2>&1 &
    record_pid loadgen $!
    log "load generator running for ${LOAD_SECONDS}s"
  fi
fi

# ---- topology.env ----------------------------------------------------------------
{
  echo "TOPOLOGY_DIR=$DIR"
  echo "NODE_EXPORTER=127.0.0.1:${PORT[node]}"
  echo "NODE_TEXTFILE_DIR=$DIR/node-textfile"
  if [[ -z $ONLY ]]; then
    for n in 1 2; do echo "MYSQLD_EXPORTER_$n=127.0.0.1:${PORT[mysqld_exporter$n]}"; done
    for n in 1 2; do echo "MYSQL_${n}_PORT=${PORT[mysql$n]}"; done
    for n in 1 2; do echo "MYSQL_${n}_SOCKET=$DIR/mysql$n.sock"; done
    echo "MYSQL_USER=$EXPORTER_USER"
    echo "MYSQL_PASSWORD=$EXPORTER_PASSWORD"
    echo "MYSQL_DATABASE=loadtest"
  fi
} >"$DIR/topology.env.tmp"
mv "$DIR/topology.env.tmp" "$DIR/topology.env"

started_ok=1
log "topology up in $(elapsed_since "$t0") s; PIDs in $PIDS; stop with: $HERE/topology-stop.sh $DIR"
cat "$DIR/topology.env"
