#!/usr/bin/env bash
# make bench-hints: hinted handoff's disk cost and replay rate. 2 nodes (--threads 1 each), node 2
# stopped; HINTS PUTs with 100-byte values, ack=1 from=2, through node 1 (wrk -t1 -c64 with
# fill.lua), so node 1 keeps one hint per write. Prints the hints written, the bytes of node 1's
# <data>/hints per hint; then node 2 is started and the time until node 1 holds no hint for it
# gives the replay rate (hints/s, and MB/s of hint file bytes), timed from
# node 2's start (replay begins with its first answer; its startup is included). Repeated for
# each peer mode in MODES.
# Environment: HINTS (200000), MODES ("binary http").
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/deps.sh wrk
source loadtest/lib.sh
HINTS=${HINTS:-200000}
MODES=${MODES:-binary http}
NODE=$(pwd)/node
work=$(mktemp -d /tmp/kvhints.XXXXXX)
kv_machine
echo "work dir: $work"

metric() {  # metric PORT NAME: the value of an unlabelled or first matching sample
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { print $2; exit }'
}
now() { date +%s.%N; }

for mode in $MODES; do
  rm -rf "$work/d"
  PORTS=()
  start_nodes "$NODE" 2 --peer-protocol "$mode"
  p1=${PORTS[0]} p2=${PORTS[1]}
  cl="http://127.0.0.1:$p1,http://127.0.0.1:$p2"
  # Node 2 stopped: every write through node 1 leaves a hint for it.
  kill -TERM "${NODE_PIDS[1]}" && wait "${NODE_PIDS[1]}" 2>/dev/null || true
  t0=$(now)
  KV_ACK=1 KV_FROM=2 kv_fill "http://127.0.0.1:$p1" "$HINTS" 100 >/dev/null
  t1=$(now)
  for _ in $(seq 1 600); do  # the last failures may follow the last answers (bounded: 60 s)
    [ "$(metric "$p1" kv_hints_written_total)" -ge "$HINTS" ] && break
    sleep 0.1
  done
  written=$(metric "$p1" kv_hints_written_total)
  disk=$(du -sb "$work/d/0/hints" | cut -f1)
  files=$(find "$work/d/0/hints" -name '*.hint' | wc -l)
  t2=$(now)  # replay starts as soon as node 2 answers, maybe before kv_wait_http sees it
  "$NODE" --port "$p2" --data "$work/d/1" --threads 1 --log-level warn --peer-protocol "$mode" \
    --cluster "$cl" >>"$work/node.log" 2>&1 &
  NODE_PIDS[1]=$!
  KV_PIDS+=($!)
  kv_wait_http "http://127.0.0.1:$p2/v0/status"
  for _ in $(seq 1 6000); do  # bounded: 10 minutes
    [ "$(metric "$p1" kv_hints_pending_bytes)" = 0 ] && break
    sleep 0.05
  done
  t3=$(now)
  replayed=$(metric "$p1" kv_hints_replayed_total)
  left=$(metric "$p1" kv_hints_pending_bytes)
  stop_nodes
  awk -v m="$mode" -v w="$written" -v d="$disk" -v f="$files" -v r="$replayed" -v l="$left" \
      -v a="$t0" -v b="$t1" -v c="$t2" -v e="$t3" 'BEGIN {
    printf "%s: hints written %d (writes at %.0f/s with node 2 down), %d file(s), %d bytes: %.1f bytes per hint (100-byte values)\n", m, w, w / (b - a), f, d, d / w
    printf "%s: replayed %d in %.2f s from node 2'"'"'s start (its startup included): %.0f hints/s, %.1f MB/s of hint file; pending bytes left %d\n", m, r, e - c, r / (e - c), d / (e - c) / 1e6, l
  }'
done
