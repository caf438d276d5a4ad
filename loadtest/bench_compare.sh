#!/usr/bin/env bash
# make bench-compare OLD=/path/to/an/older/node: two comparisons measured in one run, each figure
# against its reference in the same run (absolute numbers drift on shared machines; ratios hold).
#
# 1. new/old: this tree's ./node against OLD, alternated PAIRS times (old, new, old, new, ...) on
#    a single node, and 3-node clusters with binary and with HTTP peers (--threads 1 per node:
#    3 nodes share 2 cores), PUT and GET saturation, wrk -t1 -c64, 100-byte values, KEYS keys.
#    Every run starts from the same copy of the data, filled once by OLD (GETs hit; a PUT replaces
#    an entry of the same version layout for OLD, of the older layout for new: the store keeps
#    the newest version, and a run on data the other binary wrote last could find its writes
#    older than what is stored and skip them). Prints every run and new/old of the means. Peers
#    are named by IP literal (an older binary may not resolve names).
# 2. --fsync always against --fsync periodic (this tree's node): PUT saturation alternated PAIRS
#    times, single node and a 3-node binary cluster with ack 2 of 3 (and OLD with --fsync always
#    when given); then p99 at 50% of each one's saturation, open loop (kvload, coordinated
#    omission corrected); and this disk's floor for --fsync always: 64 / (fdatasync of a
#    64-record append) PUT/s, printed against periodic; whether two files synced at once get
#    more syncs per second than one; and the
#    pipeline's floor: --fsync always with every fdatasync replaced by a sleep of the probed
#    duration that costs no CPU and no disk (loadtest/simulated_fdatasync.c, LD_PRELOAD),
#    alternated with the others; and the machine's floor whatever the design: the smallest
#    group-commit PUT server (loadtest/fsync_floor.c; for 3 nodes a coordinator and two
#    replicas, ack 2 of 3), given the node's CPU per request, without syncs, with one sync at a
#    time, and with 2 and 4 logs synced at once (fsync_floor.c says how), alternated with the
#    others.
#    Each --fsync always run also prints node 1's group commit from /metrics: writes per
#    fdatasync, its mean duration, and per write the wait for its sync and for its answer after.
# 3. --read-repair on against off (this tree's node), and OLD when given: GET saturation on a
#    3-node binary cluster, ack 2 of 3, on replicas that agree (filled with every node up), so
#    the runs measure what read repair costs GETs that find nothing to repair; alternated PAIRS
#    times (off, on, OLD; the order rotates by one each round), each from the same copy of the
#    data. Prints each run's rps, the coordinating node's CPU time per GET (user + sys, less
#    sensitive to other load on a shared machine than rps) and the repairs it counted (0
#    expected), each round's on/off, and on/off, on/OLD of the means.
# Environment: OLD (required for 1; skipped without), PAIRS (3), DUR (wrk seconds, 10),
# KEYS (100000), FIX_DUR (kvload seconds, 10), ONLY=compare|fsync|read-repair (one of them);
# for 1, SETUPS (default "single 1,binary 3,http 3") and WORKLOADS (default "put get").
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/deps.sh wrk
source loadtest/lib.sh
PAIRS=${PAIRS:-3}
DUR=${DUR:-10}
KEYS=${KEYS:-100000}
FIX_DUR=${FIX_DUR:-10}
NEW=$(pwd)/node
OLD=${OLD:-}
work=$(mktemp -d /tmp/kvcompare.XXXXXX)
kv_machine
echo "work dir: $work"

# sat WORKLOAD URL ACK FROM: prints "rps p99_ms" of a wrk -t1 -c64 run.
sat() {
  local wl=$1 url=$2 ack=$3 from=$4 rps p50 p99
  read -r rps p50 p99 < <(KV_KEYS=$KEYS KV_VALUE_SIZE=100 KV_ACK=$ack KV_FROM=$from \
    kv_wrk "$work/wrk.txt" -t1 -c64 -d"${DUR}s" -s "loadtest/$wl.lua" "$url")
  echo "$rps $p99"
}
want() { [ -z "${ONLY:-}" ] || [ "$ONLY" = "$1" ]; }
# group_commit PORT: the node's group commit of --fsync always from /metrics (writes per sync,
# mean fdatasync, and per write the wait for its sync to start and for the loop's answer after
# it); nothing when the node has none (another policy, or an older node without the counters).
group_commit() {
  curl -s "http://127.0.0.1:$1/metrics" | awk '
    $1 == "kv_fsync_syncs_total" { s = $2 } $1 == "kv_fsync_writes_total" { w = $2 }
    $1 == "kv_fsync_sync_seconds_total" { ss = $2 } $1 == "kv_fsync_queue_seconds_total" { q = $2 }
    $1 == "kv_fsync_wake_seconds_total" { k = $2 }
    END { if (s > 0 && w > 0) printf "%.1f writes/sync, sync %.0f us, per write queue %.0f us, wake %.0f us", w / s, ss / s * 1e6, q / w * 1e6, k / w * 1e6 }'
}

PORTS=()
if [ -n "$OLD" ] && want compare; then
  echo "== new/old ($NEW vs $OLD), $PAIRS alternated pairs, wrk -t1 -c64 -d${DUR}s, $KEYS keys"
  summary=()
  IFS=',' read -r -a setups <<<"${SETUPS:-single 1,binary 3,http 3}"
  for setup in "${setups[@]}"; do
    read -r name n <<<"$setup"
    extra=()
    [ "$n" -gt 1 ] && extra=(--peer-protocol "$name")
    ack=1 from=1
    [ "$n" -gt 1 ] && ack=2 from=3
    PORTS=()
    start_nodes "$OLD" "$n" "${extra[@]}"
    kv_fill "http://127.0.0.1:${PORTS[0]}" "$KEYS" 100 >/dev/null
    stop_nodes
    rm -rf "$work/pristine"
    cp -a "$work/d" "$work/pristine"
    for wl in ${WORKLOADS:-put get}; do
      : >"$work/old.$name.$wl"
      : >"$work/new.$name.$wl"
      for pair in $(seq 1 "$PAIRS"); do
        for which in old new; do
          bin=$NEW
          [ "$which" = old ] && bin=$OLD
          rm -rf "$work/d"
          cp -a "$work/pristine" "$work/d"
          start_nodes "$bin" "$n" "${extra[@]}"
          read -r rps p99 < <(sat "$wl" "http://127.0.0.1:${PORTS[0]}" "$ack" "$from")
          stop_nodes
          echo "$rps" >>"$work/$which.$name.$wl"
          echo "  $name $wl pair $pair $which: $rps rps (p99 $p99 ms)"
        done
      done
      o=$(mean <"$work/old.$name.$wl")
      w=$(mean <"$work/new.$name.$wl")
      summary+=("$name $wl: old $o rps, new $w rps, new/old $(ratio "$w" "$o")")
    done
  done
  echo "== new/old means"
  printf '  %s\n' "${summary[@]}"
fi

if want fsync; then
  # The disk's floor for --fsync always: wrk -c64 keeps at most 64 writes waiting, so one
  # fdatasync covers at most 64 of them (the group commit); the disk then allows at most
  # 64 / (fdatasync of a 64-record write) acknowledged PUTs per second, whatever the code does.
  # The node's log is preallocated (zeros written ahead, storage/log_writer.h), so the writes
  # go over zeros already on disk, as here; an append's fdatasync is printed beside it.
  read -r sync_us append_us par1 par2 < <(python3 - "$work" <<'PY'
import os, sys, time
def probe(prealloc):
    path = os.path.join(sys.argv[1], "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    n = 500
    if prealloc:
        os.write(fd, bytes(n * 64 * 125))
        os.fdatasync(fd)
        os.lseek(fd, 0, os.SEEK_SET)
    t = time.perf_counter()
    for i in range(n):
        os.write(fd, b"x" * 64 * 125)  # one batch: 64 log records of a 100-byte value and its key
        os.fdatasync(fd)
    us = (time.perf_counter() - t) / n * 1e6
    os.close(fd)
    os.unlink(path)
    return us
def parallel(k, n=300):
    # k files synced at once, one thread each: does the disk take more syncs per second?
    import threading
    def one(i):
        path = os.path.join(sys.argv[1], f"fsync-par{i}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.write(fd, bytes(n * 8000))
        os.fdatasync(fd)
        os.lseek(fd, 0, os.SEEK_SET)
        for _ in range(n):
            os.write(fd, b"x" * 8000)
            os.fdatasync(fd)
        os.close(fd)
        os.unlink(path)
    th = [threading.Thread(target=one, args=(i,)) for i in range(k)]
    t = time.perf_counter()
    for x in th: x.start()
    for x in th: x.join()
    return k * n / (time.perf_counter() - t)
print(f"{probe(True):.0f} {probe(False):.0f} {parallel(1):.0f} {parallel(2):.0f}")
PY
)
  floor=$((64 * 1000000 / (sync_us > 0 ? sync_us : 1)))
  echo "== disk floor: fdatasync of a 64-record write over preallocated zeros takes $sync_us us on average (500 in a row; an append's: $append_us us): at most $floor acknowledged PUT/s with --fsync always and 64 clients"
  echo "== syncs at once: $par1 fdatasync/s on one file, $par2 in all on two files synced at once by two threads ($(ratio "$par2" "$par1")x)"
  # The pipeline's floor: the same node with each fdatasync replaced by a sleep of the probed
  # duration that costs no CPU and no disk (loadtest/simulated_fdatasync.c, LD_PRELOAD).
  cc -O2 -shared -fPIC -o "$work/simulated_fdatasync.so" loadtest/simulated_fdatasync.c
  # The machine's floor whatever the design: the smallest group-commit PUT server
  # (loadtest/fsync_floor.c), with as much CPU per request as the node (--work-ns, calibrated
  # below so that its rps without syncs matches the node's with --fsync periodic), answering
  # at once (probe-none) or after an fdatasync run off its loop (probe-always; probe-alwaysK:
  # K logs, so that K syncs can overlap).
  cc -O2 -pthread -o "$work/fsync_floor" loadtest/fsync_floor.c
  probe_sat() {  # probe_sat MODE WORK_NS N: rps of wrk against the probe (N 3: ack 2 of 3)
    local port pids=() rps peers="" k
    for k in $(seq 2 "$3"); do
      port=$(kv_free_port)
      "$work/fsync_floor" "$port" "$1" "$work/probe.log.r$k" --work-ns "$2" >>"$work/node.log" 2>&1 &
      pids+=($!)
      peers+="$port,"
    done
    port=$(kv_free_port)
    local cluster=()
    [ -n "$peers" ] && cluster=(--peers "${peers%,}" --ack $(($3 / 2 + 1)))
    "$work/fsync_floor" "$port" "$1" "$work/probe.log" --work-ns "$2" "${cluster[@]}" \
      >>"$work/node.log" 2>&1 &
    pids+=($!)
    KV_PIDS+=("${pids[@]}")
    kv_wait_http "http://127.0.0.1:$port/"
    read -r rps _ < <(sat put "http://127.0.0.1:$port" 1 1)
    kill "${pids[@]}" 2>/dev/null || true
    for k in "${pids[@]}"; do wait "$k" 2>/dev/null || true; done
    rm -f "$work/probe.log" "$work/probe.log".*
    echo "$rps"
  }
  # calibrate N FLAGS...: the node (N nodes) with --fsync periodic (two 3 s runs), then the
  # probe's work per request found by bisection (3 s runs) so that, without syncs, it answers as
  # many PUT/s; sets work_ns.
  calibrate() {
    local n=$1 lo=0 hi=20000 mid r cal="" cal_node
    shift
    rm -rf "$work/d"
    PORTS=()
    start_nodes "$NEW" "$n" "$@" --fsync periodic
    cal_node=$( (for _ in 1 2; do DUR=3 sat put "http://127.0.0.1:${PORTS[0]}" $((n / 2 + 1)) "$n"; done) | mean)
    stop_nodes
    PORTS=()
    for _ in 1 2 3 4 5; do
      mid=$(((lo + hi) / 2))
      r=$(DUR=3 probe_sat none "$mid" "$n")
      cal+=" ${mid}ns:$r"
      if awk -v r="$r" -v n="$cal_node" 'BEGIN { exit !(r > n) }'; then lo=$mid; else hi=$mid; fi
    done
    work_ns=$(((lo + hi) / 2))
    echo "== probe calibration, $n node(s): node periodic $cal_node rps; probe without syncs at each bisection step (work per request: rps):$cal; chosen $work_ns ns"
  }
  echo "== --fsync always vs periodic (this tree's node), $PAIRS alternated pairs, PUT"
  fsum=()
  for setup in "single 1 1 1" "binary 3 2 3"; do
    read -r name n ack from <<<"$setup"
    extra=()
    [ "$n" -gt 1 ] && extra=(--peer-protocol binary)
    calibrate "$n" "${extra[@]}"
    PORTS=()
    : >"$work/periodic.$name"
    : >"$work/always.$name"
    : >"$work/old-always.$name"
    : >"$work/simulated.$name"
    policies="periodic always simulated"
    probes="probe-none probe-always probe-always2 probe-always4"
    policies+=" $probes"
    for policy in $probes; do : >"$work/$policy.$name"; done
    [ -n "$OLD" ] && policies+=" old-always"
    for pair in $(seq 1 "$PAIRS"); do
      for policy in $policies; do
        bin=$NEW
        [ "$policy" = old-always ] && bin=$OLD
        if [[ "$policy" == probe-* ]]; then
          rps=$(probe_sat "${policy#probe-}" "$work_ns" "$n")
          echo "$rps" >>"$work/$policy.$name"
          echo "  $name pair $pair $policy ($work_ns ns of work per request): $rps rps"
          continue
        fi
        rm -rf "$work/d"  # a fresh store each run: see the note on version layouts above
        if [ "$policy" = simulated ]; then
          LD_PRELOAD=$work/simulated_fdatasync.so SIMULATED_SYNC_US=$sync_us \
            start_nodes "$bin" "$n" "${extra[@]}" --fsync always
        else
          start_nodes "$bin" "$n" "${extra[@]}" --fsync "${policy#old-}"
        fi
        read -r rps p99 < <(sat put "http://127.0.0.1:${PORTS[0]}" "$ack" "$from")
        gc=$(group_commit "${PORTS[0]}")
        stop_nodes
        echo "$rps" >>"$work/$policy.$name"
        echo "  $name ack $ack/$from pair $pair $policy: $rps rps (p99 $p99 ms)${gc:+; node 1 $gc}"
      done
    done
    p=$(mean <"$work/periodic.$name")
    a=$(mean <"$work/always.$name")
    sim=$(mean <"$work/simulated.$name")
    line="$name ack $ack/$from: periodic $p rps, always $a rps, always/periodic $(ratio "$a" "$p"), disk floor/periodic $(ratio "$floor" "$p"), always with a simulated $sync_us us sync (no CPU, no disk) $sim rps, simulated/periodic $(ratio "$sim" "$p")"
    pn=$(mean <"$work/probe-none.$name")
    pa=$(mean <"$work/probe-always.$name")
    pa2=$(mean <"$work/probe-always2.$name")
    pa4=$(mean <"$work/probe-always4.$name")
    line+="; the floor whatever the design (loadtest/fsync_floor.c, $work_ns ns of work per request): without syncs $pn rps, with one sync at a time $pa rps ($(ratio "$pa" "$pn")), with 2 logs synced at once $pa2 rps ($(ratio "$pa2" "$pn")), with 4 $pa4 rps ($(ratio "$pa4" "$pn"))"
    if [ -n "$OLD" ]; then
      oa=$(mean <"$work/old-always.$name")
      line+="; OLD always $oa rps (always new/old $(ratio "$a" "$oa"))"
    fi
    # p99 at 50% of each policy's own saturation, open loop
    for policy in periodic always; do
      sat_rps=$p
      [ "$policy" = always ] && sat_rps=$a
      rate=$((sat_rps / 2))
      rm -rf "$work/d"
      start_nodes "$NEW" "$n" "${extra[@]}" --fsync "$policy"
      ./loadtest/kvload -t1 -c64 -d"${FIX_DUR}s" -R "$rate" --workload put --keys "$KEYS" \
        --value-size 100 --ack "$ack" --from "$from" "http://127.0.0.1:${PORTS[0]}" \
        >"$work/kv.$policy.$name" 2>&1 || true
      stop_nodes
      p99=$(awk '$1 == "99.000%" { print $2; exit }' "$work/kv.$policy.$name")
      line+="; $policy p99 at $rate rps: ${p99:-?}"
    done
    fsum+=("$line")
  done
  echo "== fsync means"
  printf '  %s\n' "${fsum[@]}"
fi
if want read-repair; then
  echo "== --read-repair on vs off, 3 nodes, binary peers, GET 2/3, $PAIRS alternated pairs, wrk -t1 -c64 -d${DUR}s, $KEYS keys"
  PORTS=()
  start_nodes "$NEW" 3 --peer-protocol binary
  kv_fill "http://127.0.0.1:${PORTS[0]}" "$KEYS" 100 >/dev/null
  # A fill at saturation leaves some replicas without some keys (their writes failed after
  # ack 2 of 3 were in): one GET 3/3 of every key through node 1 repairs them (read repair),
  # and the nodes' range streams must then be identical, or the runs would measure repairs.
  python3 - "${PORTS[0]}" "$KEYS" <<'PY'
import http.client, sys, threading
port, keys = int(sys.argv[1]), int(sys.argv[2])
def part(t):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(t, keys, 8):
        c.request("GET", f"/v0/entity?id=k{i}&ack=3&from=3")
        c.getresponse().read()
ts = [threading.Thread(target=part, args=(t,)) for t in range(8)]
for t in ts: t.start()
for t in ts: t.join()
PY
  sums=$(for p in "${PORTS[@]}"; do curl -s "http://127.0.0.1:$p/v0/entities?start=k" | md5sum; done | sort -u | wc -l)
  repaired=$(curl -s "http://127.0.0.1:${PORTS[0]}/metrics" | awk '/^kv_read_repairs_total/ { n += $2 } END { print n + 0 }')
  echo "  filled $KEYS keys; $repaired replica copies repaired after the fill; replicas identical: $([ "$sums" = 1 ] && echo yes || echo NO)"
  [ "$sums" = 1 ] || { echo "replicas differ after the repair pass: aborting" >&2; exit 1; }
  stop_nodes
  rm -rf "$work/pristine"
  cp -a "$work/d" "$work/pristine"
  runs="off on"
  [ -n "$OLD" ] && runs+=" old"
  for which in $runs; do : >"$work/rr.$which" && : >"$work/rrcpu.$which"; done
  for pair in $(seq 1 "$PAIRS"); do
    order=$runs
    for _ in $(seq 2 "$pair"); do order="${order#* } ${order%% *}"; done
    for which in $order; do
      bin=$NEW
      flags=(--read-repair "$which")
      [ "$which" = old ] && bin=$OLD && flags=()
      rm -rf "$work/d"
      cp -a "$work/pristine" "$work/d"
      start_nodes "$bin" 3 --peer-protocol binary "${flags[@]}"
      read -r rps p99 < <(sat get "http://127.0.0.1:${PORTS[0]}" 2 3)
      repairs=$(curl -s "http://127.0.0.1:${PORTS[0]}/metrics" |
        awk '/^kv_read_repairs_(total|skipped_total)/ { n += $2 } END { print n + 0 }')
      # CPU ticks (utime + stime) of the coordinating node, per request wrk completed
      ticks=$(awk '{ print $14 + $15 }' "/proc/${NODE_PIDS[0]}/stat")
      reqs=$(awk '/requests in/ { print $1 }' "$work/wrk.txt")
      cpu=$(awk -v t="$ticks" -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print 0 }')
      stop_nodes
      echo "$rps" >>"$work/rr.$which"
      echo "$cpu" >>"$work/rrcpu.$which"
      echo "  binary get pair $pair read-repair $which: $rps rps (p99 $p99 ms, node 1 CPU $cpu us/GET, repairs $repairs)"
    done
    echo "  pair $pair on/off $(ratio "$(tail -1 "$work/rr.on")" "$(tail -1 "$work/rr.off")")"
  done
  off=$(mean <"$work/rr.off")
  on=$(mean <"$work/rr.on")
  coff=$(fmean <"$work/rrcpu.off")
  con=$(fmean <"$work/rrcpu.on")
  line="binary get 2/3: off $off rps, on $on rps, on/off $(ratio "$on" "$off"); node 1 CPU per GET off $coff us, on $con us, on/off $(ratio "$con" "$coff")"
  if [ -n "$OLD" ]; then
    o=$(mean <"$work/rr.old")
    cold=$(fmean <"$work/rrcpu.old")
    line+="; OLD $o rps, $cold us, on/OLD $(ratio "$on" "$o") rps, $(ratio "$con" "$cold") CPU"
  fi
  echo "== read repair means"
  echo "  $line"
fi
echo "raw files: $work"
