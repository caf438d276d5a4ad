#!/bin/bash
# fixed_rate.sh MODE WORKLOAD RATE [SECONDS]: one open-loop latency measurement, for A/B runs.
#   MODE: binary | http | http-pipelined (3 nodes, --threads 1, all traffic to the first) |
#         single (one node, --threads 1) | nginx (2 workers, 100-byte answer)
#   WORKLOAD: put | get (get fills the 100,000 keys first)
# Runs kvload -t1 -c64 -R RATE for SECONDS (default 20) after 3 s of warm-up at the same rate
# and prints its percentiles plus the CPU seconds each node process used during the run.
# Its figures are for comparing two builds or settings in the same minutes, run alternately;
# `make bench` is the report.
# Extra node flags: NODE_EXTRA="..."; a command to wrap kvload in (perf, strace): PRE="...".
# PREP=1 (cluster modes): first the state `make bench` measures in after a saturation run: 300,000
# keys written at 20K/s, 10 s of wrk PUT saturation, then settled (no flush or merge pending);
# the run then uses those 300,000 keys.
set -euo pipefail
mode=$1 wl=$2 rate=$3 dur=${4:-20}
cd "$(dirname "$0")/.."
source loadtest/lib.sh
make -s node loadtest/kvload
work=$(mktemp -d)
trap 'kv_cleanup; rm -rf "$work"' EXIT
if [ "$mode" = nginx ]; then
  port=$(kv_free_port)
  kv_start_nginx "$port" "$work/nginx"
  url=http://127.0.0.1:$port
elif [ "$mode" = single ]; then
  port=$(kv_free_port)
  # shellcheck disable=SC2086
  ./node --port "$port" --data "$work/d" --threads 1 --log-level warn ${NODE_EXTRA:-} &
  KV_PIDS+=($!)
  url=http://127.0.0.1:$port
else
  ports=("$(kv_free_port)" "$(kv_free_port)" "$(kv_free_port)")
  cl=$(printf 'http://127.0.0.1:%s,' "${ports[@]}")
  for p in "${ports[@]}"; do
    # shellcheck disable=SC2086
    ./node --port "$p" --cluster "${cl%,}" --data "$work/$p" --peer-protocol "$mode" \
      --threads 1 --log-level warn ${NODE_EXTRA:-} &
    KV_PIDS+=($!)
  done
  url=http://127.0.0.1:${ports[0]}
fi
kv_wait_http "$url/"
nodes=("${KV_PIDS[@]}")
keys=100000
if [ "${PREP:-0}" = 1 ] && [ "$mode" != nginx ] && [ "$mode" != single ]; then
  keys=300000
  ./loadtest/kvload -t1 -c64 -d15s -R 20000 --workload put --keys "$keys" "$url" >/dev/null
  KV_KEYS=$keys wrk -t1 -c64 -d10s -s loadtest/put.lua "$url" >/dev/null
  echo "settled in $(kv_settle "${ports[@]}") s"
elif [ "$wl" = get ] && [ "$mode" != nginx ]; then
  ./loadtest/kvload -t1 -c64 -d3s -R 20000 --workload put --keys "$keys" "$url" >/dev/null
fi
./loadtest/kvload -t1 -c64 -d3s -R "$rate" --workload "$wl" --keys "$keys" "$url" >/dev/null
cpu() { for p in "${nodes[@]}"; do awk '{ printf "%d ", $14 + $15 }' "/proc/$p/stat"; done; }
before=$(cpu)
# shellcheck disable=SC2086
${PRE:-} ./loadtest/kvload -t1 -c64 -d"${dur}s" -R "$rate" --workload "$wl" --keys "$keys" -L \
  "$url" >"$work/out.txt"
after=$(cpu)
echo "$(date +%T) $mode $wl -R $rate -d${dur}s"
grep -E '^ +(50|75|90|99)[.]000%|^ +99[.]900%|Requests/sec' "$work/out.txt" | tr -s ' ' | tr '\n' ' '
echo
[ "$mode" = nginx ] || echo "node CPU seconds in the run: $(awk -v a="$before" -v b="$after" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { n = split(a, x, " "); split(b, y, " "); for (i = 1; i <= n; i++) printf "%.2f ", (y[i] - x[i]) / hz }')"
