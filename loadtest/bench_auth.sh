#!/usr/bin/env bash
# make bench-auth: what peer authentication (--cluster-secret-file, proto_spec section 11) costs.
# 3-node clusters (--threads 1 per node: 3 nodes share the cores) with binary and with HTTP peers,
# PUT and GET saturation (wrk -t1 -c64, 100-byte values, KEYS keys, ack 2 of 3), each run with a
# secret against one without, alternated PAIRS times (none, secret, secret, none, none, ...) in the
# same run; every run starts from the same copy of the data (filled once). Prints every run and
# secret/none of the means, of throughput and of the nodes' CPU time per request (user + system
# of the three processes during the run / requests answered: on a shared machine, where other
# processes take the cores in bursts, the CPU a request costs varies far less than throughput).
# Environment: PAIRS (3), DUR (wrk seconds, 10), KEYS (100000), MODES ("binary http"),
# WORKLOADS ("put get").
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/deps.sh wrk
source loadtest/lib.sh
PAIRS=${PAIRS:-3}
DUR=${DUR:-10}
KEYS=${KEYS:-100000}
MODES=${MODES:-binary http}
NODE=$(pwd)/node
work=$(mktemp -d /tmp/kvauth.XXXXXX)
kv_machine
echo "work dir: $work"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/secret" && echo >>"$work/secret")

# cpu_ticks: user + system clock ticks of the running nodes so far.
cpu_ticks() {
  local p t=0
  for p in "${NODE_PIDS[@]}"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}
# sat WORKLOAD URL: prints "rps p99_ms cpu_us_per_request" of a wrk -t1 -c64 run.
sat() {
  local wl=$1 url=$2 rps p50 p99 t0 t1 n
  t0=$(cpu_ticks)
  read -r rps p50 p99 < <(KV_KEYS=$KEYS KV_VALUE_SIZE=100 KV_ACK=2 KV_FROM=3 \
    kv_wrk "$work/wrk.txt" -t1 -c64 -d"${DUR}s" -s "loadtest/$wl.lua" "$url")
  t1=$(cpu_ticks)
  n=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
  echo "$rps $p99 $(awk -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }')"
}

echo "== secret/none, 3 nodes, $PAIRS alternated pairs, wrk -t1 -c64 -d${DUR}s, $KEYS keys, ack 2/3"
summary=()
for mode in $MODES; do
  rm -rf "$work/d"
  start_nodes "$NODE" 3 --peer-protocol "$mode" --cluster-secret-file "$work/secret"
  kv_fill "http://127.0.0.1:${PORTS[0]}" "$KEYS" 100 >/dev/null
  stop_nodes
  rm -rf "$work/pristine"
  cp -a "$work/d" "$work/pristine"
  for wl in ${WORKLOADS:-put get}; do
    : >"$work/none.$mode.$wl"
    : >"$work/secret.$mode.$wl"
    : >"$work/none.$mode.$wl.cpu"
    : >"$work/secret.$mode.$wl.cpu"
    for pair in $(seq 1 "$PAIRS"); do
      order="none secret"
      [ $((pair % 2)) -eq 0 ] && order="secret none"  # ABBA: a drifting load cancels out
      for which in $order; do
        flags=(--peer-protocol "$mode")
        [ "$which" = secret ] && flags+=(--cluster-secret-file "$work/secret")
        rm -rf "$work/d"
        cp -a "$work/pristine" "$work/d"
        start_nodes "$NODE" 3 "${flags[@]}"
        read -r rps p99 cpu < <(sat "$wl" "http://127.0.0.1:${PORTS[0]}")
        stop_nodes
        echo "$rps" >>"$work/$which.$mode.$wl"
        echo "$cpu" >>"$work/$which.$mode.$wl.cpu"
        echo "  $mode $wl pair $pair $which: $rps rps (p99 $p99 ms), $cpu us CPU/request"
      done
    done
    n=$(mean <"$work/none.$mode.$wl")
    s=$(mean <"$work/secret.$mode.$wl")
    nc=$(fmean <"$work/none.$mode.$wl.cpu")
    sc=$(fmean <"$work/secret.$mode.$wl.cpu")
    summary+=("$mode $wl: none $n rps, secret $s rps, secret/none $(ratio "$s" "$n"); CPU/request none $nc us, secret $sc us, none/secret $(ratio "$nc" "$sc")")
  done
done
echo "== secret/none means"
printf '  %s\n' "${summary[@]}"
