#!/usr/bin/env bash
# Install the real components that arrowmon's tests and benchmarks run against:
# MariaDB, prometheus-node-exporter, prometheus-mysqld-exporter, prometheus,
# prometheus-alertmanager, victoria-metrics, protoc, curl, shellcheck, openssl and htpasswd (apache2-utils:
# certificates and bcrypt hashes for the web config tests) (Debian packages) and
# pyarrow (PyPI, for the machine's python3).
#
# Idempotent: packages already installed are skipped, `apt-get update` runs only
# when a wanted package has no install candidate (empty or stale lists).
# Packaged services are never started: a temporary /usr/sbin/policy-rc.d that
# exits 101 is in place during the install, and any packaged daemon found
# running afterwards is stopped. The topology scripts start their own copies.
#
# Usage: scripts/install-deps.sh            (as root)
set -euo pipefail

PACKAGES=(
  mariadb-server mariadb-client
  prometheus-node-exporter prometheus-mysqld-exporter
  prometheus prometheus-alertmanager victoria-metrics
  protobuf-compiler python3-pip curl shellcheck openssl apache2-utils
)
PYTHON=${PYTHON:-python3}

start_ts=$(date +%s.%N)
log() { printf '[install-deps] %s\n' "$*"; }
die() { printf '[install-deps] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
  die "must run as root (apt-get install)"
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

is_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}
has_candidate() {
  local c
  c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [[ -n $c && $c != "(none)" ]]
}

# ---- Debian packages -------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  is_installed "$p" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  log "all Debian packages already installed: ${PACKAGES[*]}"
else
  log "to install: ${missing[*]}"
  need_update=0
  for p in "${missing[@]}"; do
    has_candidate "$p" || { need_update=1; break; }
  done
  if ((need_update)); then
    log "apt lists lack a candidate; running apt-get update"
    apt-get update -q
  else
    log "apt lists are usable; skipping apt-get update"
  fi
  for p in "${missing[@]}"; do
    has_candidate "$p" || die "package '$p' has no install candidate in the configured Debian repositories"
  done

  # Keep postinst scripts from starting the packaged services.
  POLICY=/usr/sbin/policy-rc.d
  POLICY_BACKUP=""
  if [[ -e $POLICY ]]; then
    POLICY_BACKUP=$(mktemp /tmp/policy-rc.d.backup.XXXXXX)
    cp -p "$POLICY" "$POLICY_BACKUP"
  fi
  restore_policy() {
    if [[ -n $POLICY_BACKUP ]]; then
      cp -p "$POLICY_BACKUP" "$POLICY" && rm -f "$POLICY_BACKUP"
    else
      rm -f "$POLICY"
    fi
  }
  trap restore_policy EXIT
  printf '#!/bin/sh\n# temporary, written by arrowmon scripts/install-deps.sh\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"

  apt-get install "${APT_OPTS[@]}" --no-install-recommends "${missing[@]}"

  restore_policy
  trap - EXIT
  for p in "${missing[@]}"; do
    is_installed "$p" || die "package '$p' did not install"
  done
  log "installed: ${missing[*]}"
fi

# ---- make sure no packaged daemon is running ---------------------------------
# Packaged services run as their own users; the topology scripts run as root,
# so stopping only processes owned by these users never touches a topology.
stopped_any=0
for svc in mariadb prometheus prometheus-alertmanager prometheus-node-exporter prometheus-mysqld-exporter victoria-metrics; do
  if [[ -x /etc/init.d/$svc ]] && /etc/init.d/"$svc" status >/dev/null 2>&1; then
    log "stopping packaged service $svc"
    /etc/init.d/"$svc" stop >/dev/null 2>&1 || true
    stopped_any=1
  fi
done
for user in mysql prometheus victoria-metrics _victoria-metrics; do
  id "$user" >/dev/null 2>&1 || continue
  pids=$(pgrep -u "$user" || true)
  for pid in $pids; do
    log "stopping packaged daemon pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null || echo '?'), user $user)"
    kill -TERM "$pid" 2>/dev/null || true
    stopped_any=1
  done
done
if ((stopped_any)); then
  sleep 2
  for user in mysql prometheus victoria-metrics _victoria-metrics; do
    id "$user" >/dev/null 2>&1 || continue
    for pid in $(pgrep -u "$user" || true); do kill -KILL "$pid" 2>/dev/null || true; done
  done
fi
log "no packaged daemon running"

# ---- pyarrow ---------------------------------------------------------------
PYARROW_PROBE='import sys, pyarrow; print(sys.executable, pyarrow.__version__)'
if probe=$("$PYTHON" -c "$PYARROW_PROBE" 2>/dev/null); then
  log "pyarrow already present: $probe"
else
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip"
  log "pip install pyarrow for $("$PYTHON" -c 'import sys; print(sys.executable)')"
  pip_log=$(mktemp)
  if ! "$PYTHON" -m pip install -q pyarrow >"$pip_log" 2>&1; then
    if grep -q externally-managed "$pip_log"; then
      log "python is externally managed; retrying with --break-system-packages"
      "$PYTHON" -m pip install -q --break-system-packages pyarrow
    else
      cat "$pip_log" >&2
      rm -f "$pip_log"
      die "pip install pyarrow failed"
    fi
  fi
  rm -f "$pip_log"
  probe=$("$PYTHON" -c "$PYARROW_PROBE") || die "pyarrow does not import after install"
  log "pyarrow installed: $probe"
fi

# ---- summary ---------------------------------------------------------------
ver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
log "versions: mariadb-server $(ver mariadb-server), node-exporter $(ver prometheus-node-exporter)," \
  "mysqld-exporter $(ver prometheus-mysqld-exporter), prometheus $(ver prometheus)," \
  "victoria-metrics $(ver victoria-metrics), protoc $(ver protobuf-compiler), pyarrow ${probe##* }"
end_ts=$(date +%s.%N)
log "done in $(awk -v a="$start_ts" -v b="$end_ts" 'BEGIN { printf "%.1f", b - a }') s"
