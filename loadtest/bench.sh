#!/usr/bin/env bash
# make bench [QUICK=1]: the cluster benchmark, one command on a fresh machine.
#
# Builds, then for each peer protocol (http, http-pipelined, binary): starts a local 3-node cluster
# (--threads 1 per node: 3 nodes share 2 cores), fills it, finds PUT and GET saturation (closed
# loop, wrk -t1 -c64), runs kvload at fixed rates of 50% and 80% of that saturation (binary mode
# also at 50% of the HTTP-mode saturation), counts peer bytes and syscalls per client request,
# measures GET saturation again with --read-fanout all (every GET asks all 3 replicas), re-measures
# saturation with 2 threads per node (HTTP mode: also at 50% of that saturation),
# stops the cluster (http-pipelined: saturation only). Then (full run) an HTTP and a binary
# cluster side by side for alternating fixed-rate runs at 50% of the HTTP-mode saturation (the
# paired tail comparison). Then the single-node figures and the nginx reference (the method of
# bench_single.sh), and in the full run the range benchmark (bench_range.sh). Writes loadtest/results/<date>-<host>[-quick]/: report.md, charts, raw output.
#
# Knobs (environment): QUICK=1, KEYS (cluster fill), SINGLE_KEYS, SAT_DUR, FIX_DUR, PEER_DUR,
# PEER_RATE, RANGE_KEYS, RANGE=0|1 (run bench_range.sh; default 1 in the full run, 0 in QUICK),
# THREADS2=0|1 (the 2-threads-per-node comparison; default 1 in the full run, 0 in QUICK),
# PAIRS (alternating HTTP/binary fixed-rate runs per workload for the paired tail comparison;
# default 3 in the full run, 0 in QUICK), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
T_START=$(date +%s)

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  KEYS=${KEYS:-50000}; SINGLE_KEYS=${SINGLE_KEYS:-100000}
  SAT_DUR=${SAT_DUR:-4}; FIX_DUR=${FIX_DUR:-5}; PEER_DUR=${PEER_DUR:-3}
  RANGE=${RANGE:-0}; THREADS2=${THREADS2:-0}; PAIRS=${PAIRS:-0}
else
  KEYS=${KEYS:-300000}; SINGLE_KEYS=${SINGLE_KEYS:-1000000}
  SAT_DUR=${SAT_DUR:-10}; FIX_DUR=${FIX_DUR:-20}; PEER_DUR=${PEER_DUR:-5}
  RANGE=${RANGE:-1}; THREADS2=${THREADS2:-1}; PAIRS=${PAIRS:-3}
fi
PEER_RATE=${PEER_RATE:-500}   # low fixed rate for the strace run: strace slows every syscall
VALUE=100
ACK=2; FROM=3                  # the default quorum of a 3-node cluster, spelled out

echo "== deps and build"
bash test/deps.sh wrk nginx-light gnuplot-nox strace curl iproute2
make -j2 --no-print-directory node loadtest/kvload >/dev/null

source loadtest/lib.sh
stamp=$(date -u +%Y-%m-%d-%H%M)
host=$(hostname -s 2>/dev/null || hostname)
suffix=""; [ "$QUICK" = 1 ] && suffix="-quick"
OUT=${OUT:-loadtest/results/$stamp-$host$suffix}
mkdir -p "$OUT/raw"
OUT=$(cd "$OUT" && pwd)
RAW=$OUT/raw
work=$(mktemp -d /tmp/kvbench.XXXXXX)
kv_cleanup_all() { set +e; kv_cleanup; rm -rf "$work"; }  # set +e: kv_cleanup's wait returns 143
trap kv_cleanup_all EXIT
# Private copies: a concurrent rebuild of ./node does not change the binary under test.
mkdir -p "$work/bin"
cp node loadtest/kvload "$work/bin/"
NODE=$work/bin/node
KVLOAD=$work/bin/kvload
echo "results: $OUT"

# ---- bookkeeping -------------------------------------------------------------------------------
FIG=$OUT/raw/figures.tsv     # one line per measured figure: name value, read by report.py
: >"$FIG"
fig() { printf '%s\t%s\n' "$1" "$2" >>"$FIG"; }
CMDS=$OUT/raw/commands.txt
: >"$CMDS"
cmd() { printf '%s\n' "$*" >>"$CMDS"; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

fig machine.cores "$(nproc)"
fig machine.model "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
fig machine.kernel "$(uname -srm)"
fig machine.os "$(. /etc/os-release; echo "$PRETTY_NAME")"
fig machine.mem_gib "$(awk '/MemTotal/ {printf "%.1f", $2/1048576}' /proc/meminfo)"
fig machine.host "$host"
fig run.date "$(date -u +%Y-%m-%dT%H:%MZ)"
fig run.quick "$QUICK"
fig run.keys "$KEYS"
fig run.single_keys "$SINGLE_KEYS"
fig run.sat_dur "$SAT_DUR"
fig run.fix_dur "$FIX_DUR"
fig run.peer_dur "$PEER_DUR"
fig run.peer_rate "$PEER_RATE"
fig run.pairs "$PAIRS"
fig run.git "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src 2>/dev/null || echo '+dirty')"
fig run.loadavg_start "$(loadavg)"
fig tool.wrk "$(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
fig tool.nginx "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
fig tool.strace "$(strace -V | head -1)"

# kv_fill URL KEYS OUTFILE [extra env...]: PUT k0..k(KEYS-1) once each with fill.lua (wrk -t1 -c64).
# Debian's wrk 4.1 keeps running until -d even after fill.lua's thread:stop() (its main thread
# sleeps for the whole duration), so the fill is ended here: once the last key answers (fill.lua
# sends keys in order, at most 63 earlier ones may still be in flight), wait 1 s and send SIGINT,
# on which wrk prints its summary. Sets FILL_RATE (keys/s up to the last key's arrival).
kv_fill() {
  local url=$1 n=$2 out=$3; shift 3
  cmd "KV_KEYS=$n KV_VALUE_SIZE=$VALUE $* wrk -t1 -c64 -d600s -s loadtest/fill.lua $url  # SIGINT once k$((n - 1)) answers"
  env KV_KEYS="$n" KV_VALUE_SIZE="$VALUE" "$@" wrk -t1 -c64 -d600s -s loadtest/fill.lua "$url" >"$out" 2>&1 &
  local wpid=$! t0 t1
  KV_PIDS+=("$wpid")
  t0=$(date +%s.%N)
  until curl -sf -o /dev/null "$url/v0/entity?id=k$((n - 1))"; do
    kill -0 "$wpid" 2>/dev/null || break
    sleep 0.2
  done
  t1=$(date +%s.%N)
  sleep 1
  kill -INT "$wpid" 2>/dev/null || true
  wait "$wpid" || true
  drop_pid "$wpid"
  FILL_RATE=$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
}

drop_pid() {  # PID: no longer ours to stop (it has exited)
  local keep=() k
  for k in "${KV_PIDS[@]}"; do [ "$k" = "$1" ] || keep+=("$k"); done
  KV_PIDS=("${keep[@]}")
}

# Cluster: start_cluster MODE THREADS [ports...] sets PORTS, NODE_PIDS, URL (the coordinator).
PORTS=(); NODE_PIDS=(); URL=""
start_cluster() {
  local mode=$1 threads=$2; shift 2
  if [ $# -gt 0 ]; then PORTS=("$@"); else PORTS=("$(kv_free_port)" "$(kv_free_port)" "$(kv_free_port)"); fi
  local cl p
  cl=$(printf 'http://127.0.0.1:%s,' "${PORTS[@]}"); cl=${cl%,}
  NODE_PIDS=()
  for p in "${PORTS[@]}"; do
    # shellcheck disable=SC2086
    "$NODE" --port "$p" --cluster "$cl" --data "$work/$mode/$p" --peer-protocol "$mode" \
      --threads "$threads" --log-level warn ${NODE_FLAGS:-} >>"$RAW/node-$mode.log" 2>&1 &
    NODE_PIDS+=($!); KV_PIDS+=($!)
  done
  cmd "node --port P --cluster $cl --data DIR --peer-protocol $mode --threads $threads --log-level warn${NODE_FLAGS:+ $NODE_FLAGS}   # x3 (P in ${PORTS[*]})"
  for p in "${PORTS[@]}"; do kv_wait_http "http://127.0.0.1:$p/v0/status"; done
  URL="http://127.0.0.1:${PORTS[0]}"
}
stop_nodes() {
  local p
  for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do drop_pid "$p"; done
  NODE_PIDS=()
}

# io_calls PIDS...: read-like plus write-like syscalls the processes made so far (/proc/PID/io
# syscr + syscw: read, readv, recvmsg, write, writev, sendmsg...; no epoll, no timers).
io_calls() {
  local p n=0
  for p in "$@"; do n=$((n + $(awk '/^sysc[rw]:/ { s += $2 } END { print s + 0 }' "/proc/$p/io"))); done
  echo "$n"
}

# sat NAME WORKLOAD URL: closed loop wrk -t1 -c64 after settle, records NAME.rps/.p50/.p99 and,
# over the nodes in NODE_PIDS, NAME.io_per_req (read+write syscalls per completed request, under
# load, where batching shows); prints rps. (Until 2026-11-29 evening it did not settle: the
# cluster's GET saturation ran while the nodes flushed and merged what the PUT saturation before
# it had written, the single node's GET saturation came first, right after its fill.)
sat() {
  local name=$1 wl=$2 url=$3 rps p50 p99 io0 io1 reqs
  settle "$name" >&2
  cmd "KV_KEYS=$KEYS KV_VALUE_SIZE=$VALUE KV_ACK=$ACK KV_FROM=$FROM wrk --latency -t1 -c64 -d${SAT_DUR}s -s loadtest/$wl.lua $url"
  io0=$(io_calls "${NODE_PIDS[@]}")
  read -r rps p50 p99 < <(KV_KEYS=$KEYS KV_VALUE_SIZE=$VALUE KV_ACK=$ACK KV_FROM=$FROM \
    kv_wrk "$RAW/wrk-$name.txt" -t1 -c64 -d"${SAT_DUR}s" -s "loadtest/$wl.lua" "$url")
  io1=$(io_calls "${NODE_PIDS[@]}")
  reqs=$(awk '/requests in/ { print $1 }' "$RAW/wrk-$name.txt")
  fig "$name.rps" "$rps"; fig "$name.p50" "$p50"; fig "$name.p99" "$p99"
  if [ -n "$reqs" ] && [ "$reqs" -gt 0 ]; then
    fig "$name.io_per_req" "$(awk -v a="$io0" -v b="$io1" -v n="$reqs" 'BEGIN { printf "%.2f", (b - a) / n }')"
  fi
  echo "  $name: $rps rps (wrk p50 $p50 ms, p99 $p99 ms)" >&2
  echo "$rps"
}

# settle: waits (at most 60 s) until no node has a flush or compaction running or pending
# (/metrics kv_storage_background_jobs and kv_storage_frozen_memtables at 0 on every port in
# PORTS), so a fixed-rate run measures its own load, not the merges left by the run before it.
# Records how long it waited.
settle() {
  fig "$1.settle_s" "$(kv_settle "${PORTS[@]}")"
}

# fixed NAME WORKLOAD RATE URL: kvload open loop at RATE, -t1 -c64, JSON + text in raw/, after
# settle.
fixed() {
  local name=$1 wl=$2 rate=$3 url=$4
  settle "$name"
  cmd "kvload -t1 -c64 -d${FIX_DUR}s -R $rate --workload $wl --keys $KEYS --value-size $VALUE --ack $ACK --from $FROM -L --json kv-$name.json $url"
  "$KVLOAD" -t1 -c64 -d"${FIX_DUR}s" -R "$rate" --workload "$wl" --keys "$KEYS" --value-size "$VALUE" \
    --ack "$ACK" --from "$FROM" -L --json "$RAW/kv-$name.json" "$url" >"$RAW/kv-$name.txt" 2>&1 || true
  fig "$name.loadavg1" "$(cut -d' ' -f1 /proc/loadavg)"
  python3 - "$RAW/kv-$name.json" "$name" "$rate" <<'PY' >&2
import json, sys
j = json.load(open(sys.argv[1])); l = j["latency_ms"]
print(f"  {sys.argv[2]}: target {sys.argv[3]} rps, got {j['rps']:.0f}; p50 {l['p50']} p99 {l['p99']} "
      f"p99.9 {l['p99.9']} max {l['max']} ms; errors {j['errors']['total']}, non-2xx {j['non_2xx_3xx']}")
PY
}

# peer_cost NAME WORKLOAD PIDS...: kvload at PEER_RATE for PEER_DUR s against $URL while strace -c
# counts every node's syscalls, with ss byte counters of the node-to-node connections and
# /proc/PID/io before and after. report.py divides by the requests kvload completed.
peer_cost() {
  local name=$1 wl=$2; shift 2
  local pids=("$@") spids=() p i=0
  python3 loadtest/report.py snapshot "$RAW/peer-$name.before.json" "${PORTS[*]}" "${pids[@]}"
  for p in "${pids[@]}"; do
    strace -c -f -q -p "$p" -o "$RAW/strace-$name.$i.txt" 2>/dev/null &
    spids+=($!); KV_PIDS+=($!); i=$((i + 1))
  done
  sleep 1   # let strace attach every thread
  cmd "strace -c -f -q -p NODE_PID -o strace-$name.N.txt   # each node, during:"
  cmd "kvload -t1 -c64 -d${PEER_DUR}s -R $PEER_RATE --workload $wl --keys $KEYS --value-size $VALUE --ack $ACK --from $FROM --json kv-peer-$name.json $URL"
  "$KVLOAD" -t1 -c64 -d"${PEER_DUR}s" -R "$PEER_RATE" --workload "$wl" --keys "$KEYS" --value-size "$VALUE" \
    --ack "$ACK" --from "$FROM" --json "$RAW/kv-peer-$name.json" "$URL" >"$RAW/kv-peer-$name.txt" 2>&1 || true
  for p in "${spids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${spids[@]}"; do wait "$p" 2>/dev/null || true; drop_pid "$p"; done
  python3 loadtest/report.py snapshot "$RAW/peer-$name.after.json" "${PORTS[*]}" "${pids[@]}"
  python3 loadtest/report.py peer "$RAW" "$name" "${#pids[@]}" >&2
}

half() { awk -v r="$1" -v f="$2" 'BEGIN { printf "%d\n", r * f }'; }

# ---- cluster, each peer protocol ---------------------------------------------------------------
# http: the usual HTTP/1.1 client (pooled connections, one request in flight on each), the
# baseline; http-pipelined: our pipelined variant, saturation only; binary: everything.
for mode in http http-pipelined binary; do
  echo "== cluster, peer protocol $mode, --threads 1 per node ($(loadavg))"
  start_cluster "$mode" 1
  kv_fill "$URL" "$KEYS" "$RAW/fill-$mode.txt" KV_ACK=$ACK KV_FROM=$FROM
  fig "$mode.fill_rps" "$FILL_RATE"
  echo "  filled $KEYS keys at $FILL_RATE keys/s"
  put=$(sat "$mode.put" put "$URL")
  get=$(sat "$mode.get" get "$URL")
  if [ "$mode" = http-pipelined ]; then
    stop_nodes
    rm -rf "${work:?}/$mode"
    continue
  fi
  for wl in put get; do
    s=$([ "$wl" = put ] && echo "$put" || echo "$get")
    fixed "$mode.$wl.r50" "$wl" "$(half "$s" 0.5)" "$URL"
    fixed "$mode.$wl.r80" "$wl" "$(half "$s" 0.8)" "$URL"
    if [ "$mode" = binary ]; then
      hs=$(awk -F'\t' -v k="http.$wl.rps" '$1 == k { print $2 }' "$FIG")
      fixed "$mode.$wl.rhttp50" "$wl" "$(half "$hs" 0.5)" "$URL"
    fi
  done
  echo "  peer bytes and syscalls (strace, $PEER_RATE rps for ${PEER_DUR}s)"
  peer_cost "$mode.put" put "${NODE_PIDS[@]}"
  peer_cost "$mode.get" get "${NODE_PIDS[@]}"
  fig "$mode.loadavg" "$(loadavg)"
  # share of the coordinator's GETs (saturation, fixed rates, strace run) that were hedged
  fig "$mode.get.hedged_share" "$(curl -s "$URL/metrics" | awk '/^kv_get_hedges_total / { h = $2 }
    /^kv_requests_total\{method="GET"/ { g += $2 } END { printf "%.5f\n", g ? h / g : 0 }')"
  # GETs ask 2 replicas (hedged, the default) or all 3 (--read-fanout all): the users' request 3
  ports=("${PORTS[@]}")
  stop_nodes
  echo "  same cluster and data, --read-fanout all"
  NODE_FLAGS="--read-fanout all" start_cluster "$mode" 1 "${ports[@]}"
  sat "$mode.all.get" get "$URL" >/dev/null
  if [ "$THREADS2" = 1 ]; then
    ports=("${PORTS[@]}")
    stop_nodes
    echo "  same cluster and data, --threads 2 per node"
    start_cluster "$mode" 2 "${ports[@]}"
    put2=$(sat "$mode.t2.put" put "$URL")
    get2=$(sat "$mode.t2.get" get "$URL")
    if [ "$mode" = http ]; then
      # --threads 2 is the node's default on 2 cores, and HTTP mode's faster setting here: its
      # tails at half of that saturation, for the #4 targets in the default configuration
      fixed "$mode.t2.put.r50" put "$(half "$put2" 0.5)" "$URL"
      fixed "$mode.t2.get.r50" get "$(half "$get2" 0.5)" "$URL"
    fi
  fi
  stop_nodes
  rm -rf "${work:?}/$mode"
done

# ---- paired tails --------------------------------------------------------------------------------
# HTTP vs binary peers at 50% of the HTTP-mode saturation. The single runs of each mode above are
# minutes apart, and at this rate a p99 moves by up to 1.5x between runs of the same code (three nodes and
# kvload scheduled on two cores). Here both clusters run side by side (the idle one takes no CPU),
# each filled the same way, and PAIRS runs of each alternate, the order swapped every pair; every
# run settles both clusters first. report.py compares the medians.
if [ "$PAIRS" -gt 0 ]; then
  echo "== paired tails: http and binary clusters side by side, $PAIRS runs of each per workload ($(loadavg))"
  start_cluster http 1
  h_ports=("${PORTS[@]}"); h_pids=("${NODE_PIDS[@]}"); h_url=$URL
  kv_fill "$h_url" "$KEYS" "$RAW/fill-pair-http.txt" KV_ACK=$ACK KV_FROM=$FROM
  start_cluster binary 1
  b_ports=("${PORTS[@]}"); b_pids=("${NODE_PIDS[@]}"); b_url=$URL
  kv_fill "$b_url" "$KEYS" "$RAW/fill-pair-binary.txt" KV_ACK=$ACK KV_FROM=$FROM
  PORTS=("${h_ports[@]}" "${b_ports[@]}")  # settle waits for both
  for wl in put get; do
    rate=$(half "$(awk -F'\t' -v k="http.$wl.rps" '$1 == k { print $2 }' "$FIG")" 0.5)
    for i in $(seq 1 "$PAIRS"); do
      if [ $((i % 2)) = 1 ]; then order="http binary"; else order="binary http"; fi
      for m in $order; do
        if [ "$m" = http ]; then u=$h_url; else u=$b_url; fi
        fixed "pair.$m.$wl.$i" "$wl" "$rate" "$u"
      done
    done
  done
  NODE_PIDS=("${h_pids[@]}" "${b_pids[@]}")
  stop_nodes
  rm -rf "${work:?}/http" "${work:?}/binary"
fi

# ---- single node and nginx (the method of bench_single.sh) --------------------------------------
# --threads 1 (as bench_single.sh): wrk takes one of the two cores; the same data restarted with
# --threads 2 (the default on 2 cores) is measured after, for comparison.
echo "== single node (--threads 1) and nginx ($(loadavg))"
sport=$(kv_free_port)
"$NODE" --port "$sport" --data "$work/single" --threads 1 --log-level warn >>"$RAW/node-single.log" 2>&1 &
spid=$!; KV_PIDS+=("$spid")
cmd "node --port $sport --data DIR --threads 1 --log-level warn"
kv_wait_http "http://127.0.0.1:$sport/v0/status"
kv_fill "http://127.0.0.1:$sport" "$SINGLE_KEYS" "$RAW/fill-single.txt"
fig single.fill_rps "$FILL_RATE"
echo "  filled $SINGLE_KEYS keys at $FILL_RATE keys/s"
# the same measurements as the cluster's, with the single node's keys and ack 1 of 1
NODE_PIDS=("$spid"); PORTS=("$sport"); URL="http://127.0.0.1:$sport"
KEYS_SAVED=$KEYS; KEYS=$SINGLE_KEYS; ACK=1; FROM=1
for wl in get put; do sat "single.$wl" "$wl" "http://127.0.0.1:$sport" >/dev/null; done
# syscall reference without peers (same strace method as the cluster runs)
peer_cost single.put put "$spid"
peer_cost single.get get "$spid"
kill -TERM "$spid"; wait "$spid" 2>/dev/null || true
drop_pid "$spid"
"$NODE" --port "$sport" --data "$work/single" --threads 2 --log-level warn >>"$RAW/node-single.log" 2>&1 &
spid=$!; KV_PIDS+=("$spid"); NODE_PIDS=("$spid")
cmd "node --port $sport --data DIR --threads 2 --log-level warn   # same data"
kv_wait_http "http://127.0.0.1:$sport/v0/status"
for wl in get put; do sat "single.t2.$wl" "$wl" "http://127.0.0.1:$sport" >/dev/null; done
NODE_PIDS=(); KEYS=$KEYS_SAVED; ACK=2; FROM=3
kill -TERM "$spid"; wait "$spid" 2>/dev/null || true
drop_pid "$spid"
rm -rf "$work/single"
nport=$(kv_free_port)
kv_start_nginx "$nport" "$work/nginx"
cmd "nginx (2 workers, return 200 with a 100-byte body; kv_start_nginx in lib.sh) ; wrk --latency -t1 -c64 -d${SAT_DUR}s http://127.0.0.1:$nport/"
read -r rps p50 p99 < <(kv_wrk "$RAW/wrk-nginx.txt" -t1 -c64 -d"${SAT_DUR}s" "http://127.0.0.1:$nport/")
fig nginx.rps "$rps"; fig nginx.p50 "$p50"; fig nginx.p99 "$p99"
echo "  nginx: $rps rps (p50 $p50 ms, p99 $p99 ms)"
kv_cleanup || true

# ---- range ---------------------------------------------------------------------------------------
if [ "$RANGE" = 1 ]; then
  echo "== range benchmark ($(loadavg))"
  cmd "bash loadtest/bench_range.sh   # OUT=raw/range"
  NODE_BIN=$NODE OUT="$RAW/range" bash loadtest/bench_range.sh || echo "range benchmark failed"
  cat "$RAW/range/figures.tsv" >>"$FIG" || true
fi

fig run.loadavg_end "$(loadavg)"
fig run.seconds "$(($(date +%s) - T_START))"
echo "== report"
python3 loadtest/report.py build "$OUT"
echo "wrote $OUT/report.md ($(($(date +%s) - T_START)) s)"
