#!/usr/bin/env bash
# Bounded MySQL load for the test topology (started by topology-start.sh).
# Every LOAD_INTERVAL seconds, on each server: one client connection over the
# unix socket running inserts, point and range selects, updates and a trim
# delete on loadtest.events, so that mysql_global_status_* counters move.
#
# Stops by itself after LOAD_SECONDS, when DIR/pids disappears (topology
# stopped), after 30 consecutive failed rounds (servers gone), or on SIGTERM.
#
# Usage: scripts/topology-loadgen.sh DIR SOCKET [SOCKET...]
set -uo pipefail

DIR=$1
shift
SOCKETS=("$@")
LOAD_SECONDS=${LOAD_SECONDS:-3600}
LOAD_INTERVAL=${LOAD_INTERVAL:-0.5}
MARIADB=${MARIADB:-mariadb}

rounds=0
trap 'echo "loadgen: SIGTERM after ${SECONDS}s, $rounds rounds"; exit 0' TERM
trap 'echo "loadgen: SIGINT after ${SECONDS}s, $rounds rounds"; exit 0' INT

# Sleep without forking: read with a timeout on a pipe nobody writes to.
exec {sleep_fd}<> <(:)
nap() { read -r -t "$1" -u "$sleep_fd" _ || true; }

SQL="
INSERT INTO loadtest.events (k, v) VALUES
  (FLOOR(RAND()*1000), MD5(RAND())), (FLOOR(RAND()*1000), MD5(RAND())),
  (FLOOR(RAND()*1000), MD5(RAND()));
SELECT id, v FROM loadtest.events WHERE k = FLOOR(RAND()*1000) LIMIT 5;
SELECT COUNT(*), MAX(id), SUM(hits) FROM loadtest.events WHERE k < 500;
SELECT * FROM loadtest.events ORDER BY id DESC LIMIT 10;
UPDATE loadtest.events SET v = MD5(RAND()), hits = hits + 1 WHERE k = FLOOR(RAND()*1000) LIMIT 5;
DELETE FROM loadtest.events WHERE id < (SELECT m FROM (SELECT MAX(id) - 5000 AS m FROM loadtest.events) AS x);
"

failures=0
echo "loadgen: ${#SOCKETS[@]} server(s), every ${LOAD_INTERVAL}s for ${LOAD_SECONDS}s"
while ((SECONDS < LOAD_SECONDS)); do
  [[ -f $DIR/pids ]] || { echo "loadgen: $DIR/pids gone, stopping"; exit 0; }
  ok=1
  for s in "${SOCKETS[@]}"; do
    if ! timeout 10 "$MARIADB" --no-defaults -uroot --socket="$s" --connect-timeout=5 \
      --batch --silent -e "$SQL" >/dev/null; then
      ok=0
      echo "loadgen: round $rounds failed on $s"
    fi
  done
  rounds=$((rounds + 1))
  if ((ok)); then failures=0; else failures=$((failures + 1)); fi
  if ((failures >= 30)); then
    echo "loadgen: 30 consecutive failed rounds, stopping"
    exit 1
  fi
  nap "$LOAD_INTERVAL"
done
echo "loadgen: LOAD_SECONDS=$LOAD_SECONDS reached after $rounds rounds"
