#!/usr/bin/env bash
# Runs every unit-test binary in BUILD_DIR (default build) and prints "N passed, M failed"
# counted in doctest test cases. Exit status 1 if any failed.
set -uo pipefail
dir=${1:-build}
pass=0; fail=0
for bin in "$dir"/unit_*; do
  [ -x "$bin" ] || continue
  out=$("$bin" 2>&1); rc=$?
  echo "$out" | tail -n 4
  if [ "$rc" -ne 0 ]; then  # what failed: doctest's test case headers and failed assertions
    echo "$out" | grep -E -B1 -A6 '^TEST CASE:|: (ERROR|FATAL ERROR):' | head -n 80
  fi
  line=$(echo "$out" | grep -E '^\[doctest\] test cases:' | tail -1)
  p=$(echo "$line" | sed -nE 's/.*\| *([0-9]+) passed.*/\1/p'); f=$(echo "$line" | sed -nE 's/.*\| *([0-9]+) failed.*/\1/p')
  if [ -z "$p" ]; then p=0; f=1; echo "$bin: crashed or printed no summary (exit $rc)"; echo "$out" | tail -n 30; fi
  if [ "$rc" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then f=1; echo "$bin: exit $rc"; fi
  echo "$(basename "$bin"): $p passed, $f failed"
  pass=$((pass + p)); fail=$((fail + f))
done
echo "unit: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
