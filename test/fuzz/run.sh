#!/usr/bin/env bash
# Fuzz smoke run: each build/fuzz/*_fuzz binary (built by `make fuzz`) runs for a bounded number
# of inputs on a temporary copy of its seed corpus test/fuzz/corpus/<name>/ (the git tree is
# never written). Prints one line per target, then "fuzz: N passed, M failed".
# Environment: FUZZ_RUNS (default 200000), FUZZ_SLOW_RUNS for the targets that drive a real
# connection through a socketpair per input (*http_conn*, *node_app*: default 10000, a few
# seconds), FUZZ_MAX_TIME seconds per target (default 60), FUZZ_DIR (default build/fuzz). A
# crashing input is kept in $FUZZ_DIR/artifacts/<name>/.
set -uo pipefail
cd "$(dirname "$0")/../.."
runs=${FUZZ_RUNS:-200000}
max_time=${FUZZ_MAX_TIME:-60}
dir=${FUZZ_DIR:-build/fuzz}
# UBSan findings stop the run like ASan's instead of scrolling past.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
pass=0; fail=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for bin in "$dir"/*_fuzz; do
  [ -x "$bin" ] || continue
  name=$(basename "$bin")
  target_runs=$runs
  case "$name" in *http_conn* | *node_app*) target_runs=${FUZZ_SLOW_RUNS:-10000} ;; esac
  corpus="$work/$name"
  mkdir -p "$corpus"
  if [ -d "test/fuzz/corpus/$name" ]; then cp -r "test/fuzz/corpus/$name/." "$corpus/"; fi
  artifacts="$dir/artifacts/$name"
  mkdir -p "$artifacts"
  log="$work/$name.log"
  "$bin" -runs="$target_runs" -max_total_time="$max_time" -rss_limit_mb=2048 -max_len=70000 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" >"$log" 2>&1
  rc=$?
  done_runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
  if [ "$rc" -eq 0 ] && grep -q 'runtime error' "$log"; then rc=1; fi
  if [ "$rc" -eq 0 ]; then
    echo "$name: ok (${done_runs:-?} runs, corpus $(ls "$corpus" | wc -l) inputs)"
    pass=$((pass + 1))
  else
    echo "$name: FAILED (exit $rc; crashing input kept in $artifacts/)"
    grep -E 'ERROR|SUMMARY|runtime error|==[0-9]+==' "$log" | head -20
    tail -n 20 "$log"
    fail=$((fail + 1))
  fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
