#!/usr/bin/env bash
# Where a baseline p99 comes from (a diagnostic, not a benchmark): 3 nodes as bench-repair starts
# them (binary peers, hints off, no anti-entropy), KEYS keys filled, then N open-loop kvload runs
# of DUR seconds (mixed, -t1 -c64) at half of the closed-loop saturation (or RATE), with no
# background work at all. Per run: its p99, the nodes' flushes and compactions over it, and per
# second the p99 beside the machine's cores (loadtest/machine_states.py: the nodes, kvload, every
# other process, iowait, steal). At the end the seconds are split into quiet ones, ones where
# steal took >= 0.1 cores and ones where other processes did, with the per-second p99's median,
# 90th percentile and maximum in each.
# Environment: KEYS (1000000), N (8), DUR (10), RATE, NODE_BIN (./node).
set -eEuo pipefail
trap 'echo "p99_noise.sh: line $LINENO: status $? from: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
source loadtest/lib.sh
KEYS=${KEYS:-1000000}
N=${N:-8}
DUR=${DUR:-10}
NODE=${NODE_BIN:-$(pwd)/node}
work=$(mktemp -d /tmp/kvnoise.XXXXXX)
kv_machine
start_nodes "$NODE" 3 --peer-protocol binary --hinted-handoff off --anti-entropy-interval-s 0
url="http://127.0.0.1:${PORTS[0]}"
python3 loadtest/machine_states.py sample "$work/m.txt" 3600 0.25 "$work" &
KV_PIDS+=($!)
KV_ACK=2 KV_FROM=3 kv_fill "$url" "$KEYS" 100
echo "settled in $(kv_settle "${PORTS[@]}") s"
sat=$(./loadtest/kvload -t1 -c64 -d5s --workload mixed --keys "$KEYS" "$url" |
  awk '/Requests\/sec/ { print int($2) }')
rate=${RATE:-$((sat / 2))}
echo "saturation ~$sat req/s (closed loop, mixed); runs at $rate req/s for ${DUR}s"
storage() { # flushes and compactions of each node, from /metrics
  local p
  for p in "${PORTS[@]}"; do
    curl -s "http://127.0.0.1:$p/metrics" |
      awk '/^kv_storage_(flushes|compactions)_total / { printf "%s ", $2 }'
    echo -n "| "
  done
}
echo "# second requests p50_ms p99_ms max_ms | busy nodes kvload other iowait steal (cores) psi_cpu_ms psi_io_ms dirty_kb writeback_kb top" \
  >"$work/all.txt"
for i in $(seq 1 "$N"); do
  s0=$(storage)
  ./loadtest/kvload -t1 -c64 -d"${DUR}s" -R "$rate" --workload mixed --keys "$KEYS" \
    --per-second "$work/s$i.txt" "$url" >"$work/r$i.txt"
  echo "run $i: p99 $(awk '$1 == "99.000%" { print $2 }' "$work/r$i.txt"), $(awk '/Requests\/sec/ { print $2 }' "$work/r$i.txt") req/s; flushes compactions per node before: $s0 after: $(storage)"
  t0=$(awk '/start_unix/ { print $3 }' "$work/s$i.txt")
  # whole seconds of the run only (the last, partial one is left out)
  paste -d' ' <(grep -v '^#' "$work/s$i.txt" | head -n "$DUR") \
    <(python3 loadtest/machine_states.py per-second "$work/m.txt" "$t0" "$DUR" | grep -v '^#' | cut -d' ' -f2-) |
    tee -a "$work/all.txt" | sed 's/^/  /'
done
awk '!/^#/ && NF >= 12 { b = ($11 >= 0.1) ? "steal >= 0.1 cores" : ($9 >= 0.1) ? "other processes >= 0.1 cores" : "quiet"; print b "\t" $4 }' \
  "$work/all.txt" | sort -t$'\t' -k1,1 -k2g |
  awk -F'\t' '{ v[$1, ++n[$1]] = $2 } END { for (k in n) printf "%s: %d s, per-second p99 median %s ms, 90th %s ms, max %s ms\n", k, n[k], v[k, int((n[k] + 1) / 2)], v[k, int(n[k] * 0.9 + 0.5)], v[k, n[k]] }'
stop_nodes
rm -rf "$work/d"
echo "figures in $work"
