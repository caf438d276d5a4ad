#!/usr/bin/env bash
# Runs every suite (unit, fuzz smoke, integration) and ends with one line "N passed, M failed".
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
rm -rf "$log"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
