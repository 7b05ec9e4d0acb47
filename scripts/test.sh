#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs (Debian
# packages, pyarrow, npm packages), builds the Rust tree once in the release
# profile (tests, harness, benchmarks and dist share it), and runs every test.
# Prints how long each stage took.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

declare -a stage_names=() stage_secs=()
stage() {
  local name=$1
  shift
  local start=$SECONDS
  echo "=== stage: $name"
  "$@"
  stage_names+=("$name")
  stage_secs+=($((SECONDS - start)))
  echo "=== stage: $name done in $((SECONDS - start)) s"
}
summary() {
  echo "=== stage timings"
  for i in "${!stage_names[@]}"; do
    printf '  %-10s %5d s\n' "${stage_names[$i]}" "${stage_secs[$i]}"
  done
}
trap summary EXIT

install_deps() {
  if [ "$(id -u)" = 0 ]; then
    bash scripts/install-deps.sh
  else
    sudo bash scripts/install-deps.sh
  fi
}

frontend() {
  (cd frontend && npm ci --no-audit --no-fund && npm run typecheck && npm test && npm run build)
}

# Every shell script of the repository: *.sh files and files whose first line runs a
# shell (bench/compare is Python and is left out by its own first line).
shell_scripts() {
  find . \( -name .git -o -name target -o -name node_modules -o -name dist \) -prune -o \
    -type f -print | while IFS= read -r f; do
    case $f in
      *.sh) echo "$f" ;;
      *) if head -n 1 "$f" | grep -qE '^#!.*[/ ](ba|da)?sh( |$)'; then echo "$f"; fi ;;
    esac
  done | sort
}

lint() {
  cargo fmt --check
  cargo clippy --release --all-targets -- -D warnings
  local -a scripts
  mapfile -t scripts < <(shell_scripts)
  echo "shellcheck: ${#scripts[@]} scripts"
  shellcheck -x "${scripts[@]}"
}

build() {
  cargo build --release --all-targets
}

run_tests() {
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --release --no-fail-fast
  else
    cargo test --release --no-fail-fast
  fi
}

dist() {
  bash scripts/dist.sh --layout-only "$root/dist"
}

stage deps install_deps
stage frontend frontend
stage build build
stage lint lint
stage test run_tests
stage dist dist
echo "=== all tests passed"
