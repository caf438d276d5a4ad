#!/usr/bin/env bash
# Runs every suite (unit, fuzz smoke, integration, fault checker and short fault suite) and ends
# with one line "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
pass=0; fail=0
add() { # adds the counts of the last "N passed, M failed" in a suite's log
  local l p f
  l=$(grep -oE '[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  p=$(echo "$l" | awk '{print $1}'); f=$(echo "$l" | awk '{print $3}')
  if [ -z "$p" ]; then echo "($2 printed no summary: counted as one failure)"; p=0; f=1; fi
  pass=$((pass + p)); fail=$((fail + f))
}
log=$(mktemp -d)
echo "== unit tests"; bash test/run_unit.sh build | tee "$log/unit"; add "$log/unit" unit
if ls build/fuzz/*_fuzz >/dev/null 2>&1; then
  echo "== fuzz smoke"; bash test/fuzz/run.sh | tee "$log/fuzz"; add "$log/fuzz" fuzz
fi
if [ -f test/integration/run.py ]; then
  echo "== integration tests"; python3 test/integration/run.py | tee "$log/integ"; add "$log/integ" integration
fi
# The fault checker's rules on hand-made histories (no root needed).
if [ -f test/faults/test_checker.py ]; then
  echo "== fault checker rules"; python3 test/faults/test_checker.py | tee "$log/checker"
  add "$log/checker" checker
fi
# Short fault suite (~25 s per peer mode, all modes; needs root and `ip netns`, else it prints
# that it skipped and counts 0 passed, 0 failed). Asserted: lost=0, crashed=0, stale=0 and 504s
# after heals <= 0.1%. Divergence is not asserted (no anti-entropy yet, issue 19); `make
# test-faults` runs the long version. FAULTS_ASSERT_STALE=0 / FAULTS_ASSERT_AVAILABILITY=0 turn
# those two off.
if [ -f test/faults/run.py ]; then
  fflags=(--duration 25 --fault-seconds 2 --quiet-seconds 2.5 --settle-seconds 5)
  [ "${FAULTS_ASSERT_STALE:-1}" = 1 ] || fflags+=(--no-assert-stale)
  [ "${FAULTS_ASSERT_AVAILABILITY:-1}" = 1 ] || fflags+=(--no-assert-availability)
  echo "== fault suite (short)"; python3 test/faults/run.py "${fflags[@]}" | tee "$log/faults"
  add "$log/faults" faults
fi
# What failed, repeated here: CI shows only the tail of this output.
if [ "$fail" -ne 0 ]; then
  echo "== what failed"
  grep -hE '^(FAIL |TEST CASE:|.*: (ERROR|FATAL ERROR):|.*: FAILED \(exit|.*printed no summary|.*crashed or printed)' \
    "$log"/* 2>/dev/null | head -n 40
fi
rm -rf "$log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
