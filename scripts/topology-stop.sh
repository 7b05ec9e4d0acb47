#!/usr/bin/env bash
# Stop a topology started by scripts/topology-start.sh: exactly the processes
# listed in DIR/pids (newest first), SIGTERM, up to STOP_TIMEOUT (10) seconds of
# grace, then SIGKILL. Nothing else is signalled. DIR/pids is then renamed to
# DIR/pids.stopped; data and logs stay in DIR. Exit 1 if something survived.
#
# Usage: scripts/topology-stop.sh DIR
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=topology-lib.sh source-path=SCRIPTDIR
. "$HERE/topology-lib.sh"

[[ $# -eq 1 ]] || { echo "usage: $0 DIR" >&2; exit 2; }
DIR=$1
PIDS=$DIR/pids
STOP_TIMEOUT=${STOP_TIMEOUT:-10}
t0=$(now_s)

if [[ ! -f $PIDS ]]; then
  echo "[topology-stop] no $PIDS: nothing to stop"
  exit 0
fi

pids=() starts=() names=()
while read -r pid start name; do
  [[ $pid =~ ^[0-9]+$ && $start =~ ^[0-9]+$ ]] || continue
  pids+=("$pid") starts+=("$start") names+=("$name")
done <"$PIDS"

# SIGTERM, newest first (load generator, exporters, then the servers).
signalled=0
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
  if alive "${pids[i]}" "${starts[i]}"; then
    kill -TERM "${pids[i]}" 2>/dev/null && signalled=$((signalled + 1))
  fi
done

deadline=$(($(date +%s) + STOP_TIMEOUT))
while :; do
  left=0
  for i in "${!pids[@]}"; do
    alive "${pids[i]}" "${starts[i]}" && left=$((left + 1))
  done
  ((left == 0)) && break
  if (($(date +%s) >= deadline)); then
    for i in "${!pids[@]}"; do
      if alive "${pids[i]}" "${starts[i]}"; then
        echo "[topology-stop] ${names[i]} (pid ${pids[i]}) ignored SIGTERM for ${STOP_TIMEOUT}s: SIGKILL" >&2
        kill -KILL "${pids[i]}" 2>/dev/null || true
      fi
    done
    sleep 0.2
    break
  fi
  sleep 0.1
done

still=()
for i in "${!pids[@]}"; do
  alive "${pids[i]}" "${starts[i]}" && still+=("${names[i]}:${pids[i]}")
done
# Give init up to STOP_REAP_WAIT (2) s to reap the dead, so that `ps` right
# after shows nothing (PID 1 of this machine reaps orphans lazily). Cosmetic.
for ((j = 0; j < ${STOP_REAP_WAIT:-2} * 10; j++)); do
  z=0
  for i in "${!pids[@]}"; do pending_zombie "${pids[i]}" && z=1; done
  ((z)) || break
  sleep 0.1
done
mv -f "$PIDS" "$PIDS.stopped"
if ((${#still[@]})); then
  echo "[topology-stop] ERROR: still running: ${still[*]}" >&2
  exit 1
fi
echo "[topology-stop] stopped $signalled process(es) of $DIR in $(elapsed_since "$t0") s"
