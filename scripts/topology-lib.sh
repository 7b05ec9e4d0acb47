# shellcheck shell=bash
# Helpers shared by topology-start.sh and topology-stop.sh (sourced, not run).
#
# DIR/pids holds one line per started process: "PID STARTTIME NAME", where
# STARTTIME is field 22 of /proc/PID/stat. A PID is only ever signalled while
# its start time still matches, so a recycled PID is never touched.

# proc_field PID -> prints "STATE STARTTIME" or fails if the process is gone.
proc_state_start() {
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  # shellcheck disable=SC2086 # deliberate word splitting of the stat fields
  set -- $rest
  # after "pid (comm) ": $1 = state (field 3), $20 = starttime (field 22)
  printf '%s %s\n' "$1" "${20}"
}

# proc_starttime PID -> start time of a live (non-zombie) process.
proc_starttime() {
  local st
  st=$(proc_state_start "$1") || return 1
  [[ ${st%% *} != Z ]] || return 1
  printf '%s\n' "${st#* }"
}

# alive PID STARTTIME -> true while that very process runs (zombies count as dead).
alive() {
  local now
  now=$(proc_starttime "$1") || return 1
  [[ $now == "$2" ]]
}

# pending_zombie PID -> true while PID is a zombie that init has yet to reap.
# (On this machine PID 1 reaps orphans lazily; purely cosmetic for `ps`.)
pending_zombie() {
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  rest=${stat##*) }
  # shellcheck disable=SC2086 # deliberate word splitting of the stat fields
  set -- $rest
  [[ $1 == Z && $2 == 1 ]]
}

now_s() { date +%s.%N; }
elapsed_since() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }
