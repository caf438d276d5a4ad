#!/usr/bin/env bash
# Cluster-wide range benchmark: 3 nodes (binary peers unless MODE=http), fill KEYS keys x VALUE
# bytes (default 1M x 100 B) with from=2 (each node holds two thirds), then stream the whole range
#   curl -s -o /dev/null 'http://127.0.0.1:PORT/v0/entities?start=k'                    (local)
#   curl -s -o /dev/null 'http://127.0.0.1:PORT/v0/entities?start=k&scope=cluster&from=2'
# through the same node, ROUNDS times alternated, and print MB/s (10^6 bytes/s) of each, the
# ratio cluster/local, and every node's RSS growth (VmRSS before and after the cluster streams).
# Targets (issue 20): cluster >= 300 MB/s and >= 0.5 x local.
#   make bench-cluster-range        KEYS=200000 ROUNDS=1 bash loadtest/bench_cluster_range.sh
# SLOW_SECONDS=N adds a client reading the cluster range at 1 MB/s for N seconds (RSS sampled).
# NODE_BIN=path measures that binary instead of this tree's ./node (an A/B against an earlier
# build in one sitting).
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
VALUE=${VALUE:-100}
ROUNDS=${ROUNDS:-3}
MODE=${MODE:-binary}
THREADS=${THREADS:-2}
NODE_BIN=${NODE_BIN:-node}
if [ "$NODE_BIN" = node ]; then make -j2 --no-print-directory node >/dev/null; fi
source loadtest/lib.sh
work=$(mktemp -d /tmp/kvcrange.XXXXXX)
trap 'set +e; kv_cleanup; rm -rf "$work"' EXIT
cp "$NODE_BIN" "$work/node"
kv_machine
echo "cluster range: 3 nodes ($MODE peers, $THREADS threads each), filling $KEYS keys x $VALUE B with from=2 ..."
start_nodes "$work/node" 3 --peer-protocol "$MODE" --threads "$THREADS"
p0=${PORTS[0]}
url="http://127.0.0.1:$p0"
rps=$(python3 loadtest/bulk_put.py "$p0" "$KEYS" "$VALUE" "&ack=2&from=2")
echo "cluster range: filled at $rps keys/s; settled after $(kv_settle "${PORTS[@]}") s"
expected=$(python3 -c "import sys; n, v = int(sys.argv[1]), int(sys.argv[2]); print(sum(len(str(i)) + 2 + v for i in range(n)))" "$KEYS" "$VALUE")

# stream NAME URL: one curl, prints "bytes seconds http_code".
stream() {
  curl -s -o /dev/null -w '%{size_download} %{time_total} %{http_code}\n' --max-time 600 "$1" || true
}
declare -A before
for i in 0 1 2; do before[$i]=$(kv_rss_kb "${NODE_PIDS[$i]}"); done
local_sum=0
cluster_sum=0
for r in $(seq 1 "$ROUNDS"); do
  read -r lb ls lc < <(stream "$url/v0/entities?start=k")
  read -r cb cs cc < <(stream "$url/v0/entities?start=k&scope=cluster&from=2")
  lm=$(awk -v b="$lb" -v s="$ls" 'BEGIN { printf "%.1f", (s > 0 ? b / s / 1e6 : 0) }')
  cm=$(awk -v b="$cb" -v s="$cs" 'BEGIN { printf "%.1f", (s > 0 ? b / s / 1e6 : 0) }')
  complete=$([ "$cb" = "$expected" ] && echo yes || echo "NO ($cb of $expected)")
  echo "round $r: local HTTP $lc $lb B in $ls s = $lm MB/s; cluster HTTP $cc $cb B in $cs s = $cm MB/s (complete: $complete)"
  local_sum=$(awk -v a="$local_sum" -v b="$lm" 'BEGIN { print a + b }')
  cluster_sum=$(awk -v a="$cluster_sum" -v b="$cm" 'BEGIN { print a + b }')
done
lmean=$(awk -v a="$local_sum" -v n="$ROUNDS" 'BEGIN { printf "%.1f", a / n }')
cmean=$(awk -v a="$cluster_sum" -v n="$ROUNDS" 'BEGIN { printf "%.1f", a / n }')
rat=$(ratio "$cmean" "$lmean")
echo "cluster range: local (one node's two thirds) $lmean MB/s, cluster $cmean MB/s, ratio $rat" \
  "(targets: cluster >= 300 MB/s $(awk -v v="$cmean" 'BEGIN { print (v >= 300 ? "MET" : "NOT MET") }')," \
  "ratio >= 0.5 $(awk -v v="$rat" 'BEGIN { print (v >= 0.5 ? "MET" : "NOT MET") }'))"
for i in 0 1 2; do
  after=$(kv_rss_kb "${NODE_PIDS[$i]}")
  echo "node $i: VmRSS $((before[$i] / 1024)) MiB before the streams, $((after / 1024)) MiB after: growth $(awk -v a="$after" -v b="${before[$i]}" 'BEGIN { printf "%.1f", (a - b) / 1024 }') MiB"
done

# SLOW_SECONDS > 0: a client reading the cluster range at 1 MB/s (curl --limit-rate) for that
# long; every node's VmRSS is sampled each second, and its largest growth over the value before
# the slow stream is printed (target: <= 32 MiB; the peers' streams must slow down, not buffer).
if [ "${SLOW_SECONDS:-0}" -gt 0 ]; then
  declare -A base peak
  for i in 0 1 2; do
    base[$i]=$(kv_rss_kb "${NODE_PIDS[$i]}")
    peak[$i]=${base[$i]}
  done
  curl -s -o /dev/null --limit-rate 1M --max-time "$SLOW_SECONDS" \
    "$url/v0/entities?start=k&scope=cluster&from=2" &
  slow=$!
  for _ in $(seq 1 "$SLOW_SECONDS"); do
    sleep 1  # sampling interval of the RSS readings, not a synchronisation
    for i in 0 1 2; do
      r=$(kv_rss_kb "${NODE_PIDS[$i]}")
      [ "$r" -gt "${peak[$i]}" ] && peak[$i]=$r
    done
  done
  wait "$slow" || true
  for i in 0 1 2; do
    echo "slow client (1 MB/s, ${SLOW_SECONDS} s): node $i VmRSS $((base[$i] / 1024)) MiB before, peak $((peak[$i] / 1024)) MiB: growth $(awk -v a="${peak[$i]}" -v b="${base[$i]}" 'BEGIN { printf "%.1f", (a - b) / 1024 }') MiB (target <= 32)"
  done
fi
