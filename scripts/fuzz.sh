#!/usr/bin/env bash
# Runs arrowmon's coverage-guided fuzz targets (fuzz/fuzz_targets/) under libFuzzer.
#
# Usage: scripts/fuzz.sh [--runs N] [--max-total-time S] [TARGET...]
#   --runs N            executions per target (default 10000000)
#   --max-total-time S  stop a target after S seconds even if N is not reached
#   TARGET...           default: every target in fuzz/Cargo.toml
#
# The stable toolchain builds the targets with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs
# nightly flags); cargo-fuzz is installed from crates.io if missing. Each target
# starts from fuzz/corpus/TARGET (committed) and writes what it finds to
# fuzz/work/TARGET; afterwards inputs that add coverage are merged into
# fuzz/corpus/TARGET, and every crashing input is copied to
# fuzz/regressions/TARGET/, which the normal suite replays
# (tests/in_process/fuzz_corpora.rs) until the bug is fixed. The summary (executions,
# coverage, crashes per target) is printed and kept in fuzz/work/report.txt.
#
# Without a sanitizer (-s none): arrowmon is safe Rust, and the instrumented build
# runs about twice as fast; FUZZ_SANITIZER=address turns AddressSanitizer on.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FUZZ=$ROOT/fuzz

runs=10000000
max_time=0
targets=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=$2; shift 2 ;;
    --max-total-time) max_time=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' "$FUZZ/Cargo.toml" | grep -v '^arrowmon-fuzz$')
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
cd "$FUZZ"
cargo fuzz build -s "$sanitizer"

mkdir -p "$FUZZ/work"
report=$FUZZ/work/report.txt
printf '%-24s %12s %8s %8s %8s %8s  %s\n' target executions exec/s cov ft corpus result >"$report"
failed=0
for t in "${targets[@]}"; do
  work=$FUZZ/work/$t
  artifacts=$FUZZ/work/artifacts/$t
  mkdir -p "$work" "$artifacts" "$FUZZ/corpus/$t"
  log=$FUZZ/work/$t.log
  echo "=== $t: up to $runs executions"
  result=ok
  # -max_len: the committed seeds are under 4 KB except the WAL and block files.
  # -timeout is wall-clock time: 60 s, so that a run sharing a loaded machine (or
  # run under nice) does not report a slow input as a hang; no input takes a
  # second alone.
  if ! cargo fuzz run -s "$sanitizer" "$t" "$work" "$FUZZ/corpus/$t" -- \
      -runs="$runs" -max_total_time="$max_time" -max_len=65536 -timeout=60 \
      -rss_limit_mb=3072 -print_final_stats=1 -artifact_prefix="$artifacts/" \
      >"$log" 2>&1; then
    result=CRASH
    failed=1
    mkdir -p "$FUZZ/regressions/$t"
    for a in "$artifacts"/*; do
      [[ -f $a ]] || continue
      cp "$a" "$FUZZ/regressions/$t/"
      echo "  crashing input kept as fuzz/regressions/$t/$(basename "$a")"
    done
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  # New inputs that add coverage join the committed corpus.
  cargo fuzz run -s "$sanitizer" "$t" "$FUZZ/corpus/$t" "$work" -- -merge=1 -max_len=65536 \
    >>"$log" 2>&1 || true
  corpus=$(find "$FUZZ/corpus/$t" -type f | wc -l)
  printf '%-24s %12s %8s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" \
    "${ft:-?}" "$corpus" "$result" | tee -a "$report"
done
echo "=== summary ($report)"
cat "$report"
exit "$failed"
