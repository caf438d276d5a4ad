#!/usr/bin/env bash
# flamegraphs/record.sh WORKLOAD MODE -- profile the coordinating node of a local 3-node cluster
# under wrk load and write flamegraphs/<workload>-<mode>.svg (flame graph, opens offline in a
# browser) and flamegraphs/<workload>-<mode>.txt (summary: CPU by area, syscalls, self time).
#
#   WORKLOAD  put | get        (get fills KEYS keys first)
#   MODE      http | binary    (--peer-protocol of the three nodes)
#
# Environment (defaults in brackets):
#   DURATION [16]  wrk run, seconds      PERF_SECONDS [10]  recording, from t=DURATION-PERF-STAT-2
#   STAT_SECONDS [2] syscall count (perf stat) right after the recording
#   FREQ [499]     samples/s             STACK_BYTES [32768] user stack copied per sample
#   KEYS [100000]  key space             VALUE_SIZE [100]    PUT body bytes
#   CONNS [64]     wrk connections       THREADS [1]         node --threads
#   OUT [flamegraphs]  output directory  KEEP_TMP [0]        1 keeps perf.data etc.
#
# Needs: perf (Debian linux-perf), wrk, curl, python3, and make/g++ to build ./node. Only
# loopback ports picked free at start; every process started here is stopped by PID on exit.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -eq 2 ] || usage
WORKLOAD=$1 MODE=$2
case $WORKLOAD in put | get) ;; *) usage ;; esac
case $MODE in http | binary) ;; *) usage ;; esac

DURATION=${DURATION:-16}
PERF_SECONDS=${PERF_SECONDS:-10}
FREQ=${FREQ:-499}
STACK_BYTES=${STACK_BYTES:-32768}
KEYS=${KEYS:-100000}
VALUE_SIZE=${VALUE_SIZE:-100}
CONNS=${CONNS:-64}
THREADS=${THREADS:-1}
KEEP_TMP=${KEEP_TMP:-0}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=${OUT:-$ROOT/flamegraphs}
mkdir -p "$OUT"
NAME="$WORKLOAD-$MODE"

for tool in perf wrk curl python3 make; do
  command -v "$tool" >/dev/null || { echo "record.sh: $tool not found" >&2; exit 1; }
done
if [ "$PERF_SECONDS" -ge "$DURATION" ]; then
  echo "record.sh: PERF_SECONDS must be shorter than DURATION" >&2
  exit 1
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kv-flame.XXXXXX")
PIDS=()
RESTORE_PARANOID=""
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$RESTORE_PARANOID" ]; then
    echo "$RESTORE_PARANOID" >/proc/sys/kernel/perf_event_paranoid &&
      echo "restored kernel.perf_event_paranoid=$RESTORE_PARANOID"
  fi
  if [ "$KEEP_TMP" = 1 ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[record $NAME] $*" >&2; }

# ---- build -------------------------------------------------------------------------------------
log "make -j2 node"
make -j2 node >"$TMP/make.log" 2>&1 || { cat "$TMP/make.log" >&2; exit 1; }

# ---- perf permissions --------------------------------------------------------------------------
# Kernel stacks need perf_event_paranoid <= 1 (or root with CAP_PERFMON/CAP_SYS_ADMIN). If a
# probe with kernel callchains fails and we are root, lower it to -1 for the recording only.
probe_perf() { perf record -q -e cpu-clock -F 99 -g -o "$TMP/probe.data" -- true >/dev/null 2>&1; }
if ! probe_perf; then
  if [ "$(id -u)" = 0 ]; then
    RESTORE_PARANOID=$(cat /proc/sys/kernel/perf_event_paranoid)
    echo -1 >/proc/sys/kernel/perf_event_paranoid
    log "set kernel.perf_event_paranoid=-1 for the recording (was $RESTORE_PARANOID)"
    probe_perf || { echo "record.sh: perf record does not work here" >&2; exit 1; }
  else
    echo "record.sh: perf record -e cpu-clock fails; run as root or lower" \
      "kernel.perf_event_paranoid (currently $(cat /proc/sys/kernel/perf_event_paranoid))" >&2
    exit 1
  fi
fi
if [ "$(cat /proc/sys/kernel/kptr_restrict 2>/dev/null || echo 0)" = 2 ] ||
  { [ "$(id -u)" != 0 ] && [ "$(cat /proc/sys/kernel/kptr_restrict 2>/dev/null || echo 0)" = 1 ]; }; then
  log "warning: kernel.kptr_restrict hides kernel symbols; kernel frames will be unnamed"
fi

# ---- cluster -----------------------------------------------------------------------------------
read -r P0 P1 P2 < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()')
CLUSTER="http://127.0.0.1:$P0,http://127.0.0.1:$P1,http://127.0.0.1:$P2"
NODE_PIDS=()
for p in "$P0" "$P1" "$P2"; do
  ./node --port "$p" --cluster "$CLUSTER" --data "$TMP/data-$p" --peer-protocol "$MODE" \
    --threads "$THREADS" --log-level warn >"$TMP/node-$p.log" 2>&1 &
  PIDS+=($!) NODE_PIDS+=($!)
done
NODE0=${NODE_PIDS[0]}
URL="http://127.0.0.1:$P0"
for p in "$P0" "$P1" "$P2"; do
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$p/v0/status" && break
    sleep 0.1
  done
  curl -sf -o /dev/null "http://127.0.0.1:$p/v0/status" ||
    { echo "record.sh: node on port $p did not start" >&2; cat "$TMP/node-$p.log" >&2; exit 1; }
done
log "cluster up: $CLUSTER (peer protocol $MODE), coordinator pid $NODE0"

requests_total() {  # client requests answered by node 0 so far
  curl -s "$URL/metrics" | awk '/^kv_requests_total/ { s += $NF } END { printf "%d\n", s }'
}

export KV_KEYS=$KEYS KV_VALUE_SIZE=$VALUE_SIZE
if [ "$WORKLOAD" = get ]; then
  log "filling $KEYS keys (${VALUE_SIZE}-byte values)"
  # fill.lua asks wrk to stop after KEYS answers, which Debian's wrk does not always honour:
  # watch the node's request counter instead and stop wrk (by PID) once every key is written.
  FILL_T0=$(date +%s)
  wrk -t1 -c64 -d600s -s loadtest/fill.lua "$URL" >"$TMP/fill.txt" 2>&1 &
  FILL_PID=$!
  PIDS+=("$FILL_PID")
  for _ in $(seq 1 1200); do
    kill -0 "$FILL_PID" 2>/dev/null || break
    [ "$(requests_total)" -ge "$KEYS" ] && break
    sleep 0.1
  done
  kill -TERM "$FILL_PID" 2>/dev/null || true
  wait "$FILL_PID" 2>/dev/null || true
  log "  fill: $(requests_total) requests answered in $(($(date +%s) - FILL_T0)) s"
fi

# ---- load + recording --------------------------------------------------------------------------
# Timeline: wrk runs DURATION s; perf record from t=WARMUP for PERF_SECONDS; then, still under
# load, perf stat counts syscalls for STAT_SECONDS (kept apart from the recording: syscall
# tracepoints cost CPU that would show up in the profile).
STAT_SECONDS=${STAT_SECONDS:-2}
WARMUP=$((DURATION - PERF_SECONDS - STAT_SECONDS - 2))
if [ "$WARMUP" -lt 1 ]; then
  echo "record.sh: DURATION must exceed PERF_SECONDS + STAT_SECONDS + 2" >&2
  exit 1
fi
log "wrk -t1 -c$CONNS -d${DURATION}s -s loadtest/$WORKLOAD.lua; perf record from t=${WARMUP}s for ${PERF_SECONDS}s, then perf stat ${STAT_SECONDS}s"
wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "loadtest/$WORKLOAD.lua" "$URL" >"$TMP/wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
sleep "$WARMUP"

REQ_BEFORE=$(requests_total)
perf record -q -e cpu-clock -F "$FREQ" --call-graph "dwarf,$STACK_BYTES" -p "$NODE0" \
  -o "$TMP/perf.data" -- sleep "$PERF_SECONDS" >"$TMP/perf-record.log" 2>&1 &
REC_PID=$!
PIDS+=("$REC_PID")
wait "$REC_PID" || { cat "$TMP/perf-record.log" >&2; exit 1; }
REQ_AFTER=$(requests_total)
REQUESTS=$((REQ_AFTER - REQ_BEFORE - 1))  # minus the first /metrics request itself

# syscall counts (tracepoints; skipped where tracefs is not available)
STAT_EVENTS=raw_syscalls:sys_enter
for s in read readv write writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait \
  epoll_ctl accept4 close futex fdatasync fsync pwrite64 pread64 openat mmap munmap madvise brk; do
  if [ -d "/sys/kernel/tracing/events/syscalls/sys_enter_$s" ] ||
    [ -d "/sys/kernel/debug/tracing/events/syscalls/sys_enter_$s" ]; then
    STAT_EVENTS+=",syscalls:sys_enter_$s"
  fi
done
STAT_REQUESTS=0
if perf stat -x, -e "$STAT_EVENTS" -p "$NODE0" -o "$TMP/syscalls.csv" -- sleep "$STAT_SECONDS" \
  >/dev/null 2>"$TMP/perf-stat.log"; then
  STAT_REQUESTS=$(($(requests_total) - REQ_AFTER - 1))
else
  log "warning: perf stat (syscall counts) failed"
  : >"$TMP/syscalls.csv"
fi
wait "$WRK_PID"
RPS=$(awk '/Requests\/sec/ { print $2 }' "$TMP/wrk.txt")
ERRS=$(grep -E "Socket errors|Non-2xx" "$TMP/wrk.txt" || true)

# ---- fold + render -----------------------------------------------------------------------------
log "perf script + folding"
perf script -i "$TMP/perf.data" -F comm,tid,period,ip,sym,dso >"$TMP/perf.txt" 2>"$TMP/perf-script.log"
{
  echo "recorded $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(uname -r), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted src changes')"
  echo "3 nodes --threads $THREADS --peer-protocol $MODE on loopback; load: wrk -t1 -c$CONNS -d${DURATION}s loadtest/$WORKLOAD.lua (KV_KEYS=$KEYS, KV_VALUE_SIZE=$VALUE_SIZE) on node 0"
  echo "perf record -e cpu-clock -F $FREQ --call-graph dwarf,$STACK_BYTES -p <node 0> for ${PERF_SECONDS}s from t=${WARMUP}s; syscalls: perf stat ${STAT_SECONDS}s after it"
  echo "wrk throughput over the whole run: $RPS requests/s$([ -n "$ERRS" ] && echo "; $ERRS" | tr '\n' ' ')"
} >"$TMP/header.txt"
python3 "$ROOT/flamegraphs/flamegraph.py" --perf-script "$TMP/perf.txt" \
  --title "kv node 0 (coordinator): $WORKLOAD, $MODE peer protocol" \
  --subtitle "wrk -t1 -c$CONNS $WORKLOAD: $RPS req/s; perf cpu-clock ${FREQ} Hz, ${PERF_SECONDS} s, dwarf stacks; $(date -u +%Y-%m-%d)" \
  --header-file "$TMP/header.txt" --requests "$REQUESTS" --seconds "$PERF_SECONDS" \
  --syscalls "$TMP/syscalls.csv" --syscall-requests "$STAT_REQUESTS" \
  --syscall-seconds "$STAT_SECONDS" --folded "$TMP/$NAME.folded" \
  --svg "$OUT/$NAME.svg" --txt "$OUT/$NAME.txt"
[ "$KEEP_TMP" = 1 ] && cp "$TMP/wrk.txt" "$TMP/$NAME.wrk.txt"

log "wrote $OUT/$NAME.svg ($(du -k "$OUT/$NAME.svg" | cut -f1) KB) and $OUT/$NAME.txt"
sed -n '/^samples:/,/^$/p' "$OUT/$NAME.txt" >&2
echo "$NAME: wrk $RPS requests/s (wrk -t1 -c$CONNS -d${DURATION}s, $WORKLOAD, $MODE peer protocol)"
