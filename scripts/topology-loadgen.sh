#!/usr/bin/env bash
# Bounded MySQL load for the test topology (started by topology-start.sh).
# Every LOAD_INTERVAL seconds, on each server: one client connection over the
# unix socket, in database loadtest, running inserts, point and range selects,
# a full scan, a grouping into a temporary table, updates and a trim delete on
# loadtest.events, then a statement that fails (an unknown column), so that
# mysql_global_status_* counters move and every column of the statement digests
# (query analytics: rows, scans without an index, temporary tables, errors) has
# something to count. That last error is expected; any other fails the round.
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
SELECT COUNT(*) FROM loadtest.events WHERE hits > 3;
SELECT v, COUNT(*) FROM loadtest.events GROUP BY v ORDER BY 2 DESC LIMIT 3;
SELECT no_such_column FROM loadtest.events LIMIT 1;
"
# What the last statement must answer. The client prints the failed statement
# before the error; a round is good when that is its only error.
EXPECTED_ERROR="Unknown column 'no_such_column'"
only_expected_error() {
  local line errors=0 expected=0
  while IFS= read -r line; do
    if [[ $line == ERROR* ]]; then
      errors=$((errors + 1))
      [[ $line != *"$EXPECTED_ERROR"* ]] || expected=1
    fi
  done <<<"$1"
  ((errors == 1 && expected == 1))
}

failures=0
echo "loadgen: ${#SOCKETS[@]} server(s), every ${LOAD_INTERVAL}s for ${LOAD_SECONDS}s"
while ((SECONDS < LOAD_SECONDS)); do
  [[ -f $DIR/pids ]] || { echo "loadgen: $DIR/pids gone, stopping"; exit 0; }
  ok=1
  for s in "${SOCKETS[@]}"; do
    if ! err=$(timeout 10 "$MARIADB" --no-defaults -uroot --socket="$s" --connect-timeout=5 \
      --database=loadtest --batch --silent -e "$SQL" 2>&1 >/dev/null) &&
      ! only_expected_error "$err"; then
      ok=0
      echo "loadgen: round $rounds failed on $s: $err"
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
