#!/usr/bin/env bash
# make bench-repair: anti-entropy repair. 3 nodes (--threads 1 each, --hinted-handoff off,
# --anti-entropy-interval-s 0), KEYS keys k0.. with VSIZE-byte values written through node 1
# (wrk, fill.lua; ack=2 of from=3, so every node holds every key).
# (a) Wiped replica: node 3 stopped, its data directory deleted, restarted; one
#     POST /v0/admin/repair?wait=1 on node 3: seconds, MB/s of restored data, and the repair's
#     bytes on the wire (request + answer bytes of its peer calls, from the summary) against the
#     bytes that differed (every entry as the wire carries it: key, version, flags, value and
#     their lengths = 21 + key + value bytes per key): target <= 1.2x.
# (b) Identical replicas: the same repair again right after: its wire bytes against the data's
#     size (KEYS x (key + value)): target <= 1%.
# (b2) Node 3 stopped while KEYS/10 keys are overwritten, restarted, repaired by itself: wire
#     bytes against the bytes that differed (the digest round costs ~23 B per entry of every
#     leaf that differs).
# (c) Foreground p99: kvload (open loop, -t1 -c64, mixed 90% GET, through node 1) at half of the
#     saturation kvload measured closed-loop, DUR seconds without, then DUR seconds with, for
#     each case in CASES (each against its own run without, right before it):
#     identical: repairs of identical replicas driven by node 1 back to back for the whole run;
#     wiped: node 3 wiped and restored by a repair it drives (its GETs read-repair too);
#     hints: node 1 restarted with --hinted-handoff on; per round, HINTS keys written with every
#       node up and the run without, then node 3 stopped while the same keys are written, and
#       node 3 restarted with a repair it drives started at once, so the hint replay and the
#       repair run together in the run with (also prints bytes on disk per hint, the replay
#       rate and how much of the window the replay and the repair covered). Target: ratio
#       <= 1.5x.
#     replay: the same as hints without the repair (the hint replay's share; not run by default).
#     repair: the same as hints with node 1's --hinted-handoff off (the repair's share; not run
#       by default).
#     stale: node 1's hints off and no repair: node 3 comes back having missed the writes and
#       only read repair mends it (the cost of the situation itself, no background work; not
#       run by default).
# Environment: KEYS (1000000), VSIZE (100), MODE (binary), DUR (15), POLL_S (1: the hints and
# replay cases' poll of node 1's pending hints while the p99 is measured), SETTLE_S (1: the
# pause after the sync and the nodes' settling that precede each run of the hints and replay
# cases), RATE_MB (8: the node's
# default --repair-rate-mb), HINTS (200000), PARTS ("a b b2"; (c) always runs), CASES ("identical wiped hints"),
# NODE_BIN (./node), ROUNDS (1: without/with pairs of the identical, hints and replay cases,
# their median ratio). Every run also prints its p99 per second and the cores that processes
# other than the nodes and kvload used meanwhile (loadtest/machine_states.py): on a shared
# machine they explain most of the spread between runs. CLEAN_CORES (0.2): a round of the
# hints, replay or repair case is clean when, in every second of both of its runs, other
# processes and steal together took less than this many cores; the summary gives the median of
# every round and of the clean ones. RATE (half of the measured saturation, the best of SAT_RUNS
# (3) closed-loop runs): the open-loop rate.
# HINT_RATES ("10000", the node's default): node 1's --hint-replay-rate, one value or several
# alternated round by round (the hints and replay cases), each with its own medians.
set -eEuo pipefail
trap 'echo "bench_repair.sh: line $LINENO: status $? from: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
bash test/deps.sh wrk
source loadtest/lib.sh
KEYS=${KEYS:-1000000}
VSIZE=${VSIZE:-100}
MODE=${MODE:-binary}
DUR=${DUR:-15}
ROUNDS=${ROUNDS:-1}
RATE_MB=${RATE_MB:-8}
HINTS=${HINTS:-200000}
POLL_S=${POLL_S:-1}
SETTLE_S=${SETTLE_S:-1}
CLEAN_CORES=${CLEAN_CORES:-0.2}
HINT_RATES=${HINT_RATES:-10000}
SAT_RUNS=${SAT_RUNS:-3}
CASES=${CASES-identical wiped hints}
PARTS=${PARTS-a b b2}
NODE=${NODE_BIN:-$(pwd)/node}
work=$(mktemp -d /tmp/kvrepair.XXXXXX)
kv_machine
echo "work dir: $work; keys $KEYS x $VSIZE B, $MODE peers, --repair-rate-mb $RATE_MB"

FLAGS=(--peer-protocol "$MODE" --hinted-handoff off --anti-entropy-interval-s 0
  --repair-rate-mb "$RATE_MB")
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get(sys.argv[1], 0))' "$1"; }
repair() {  # repair PORT: runs one repair and waits; prints its JSON summary
  curl -s -m 3600 -X POST "http://127.0.0.1:$1/v0/admin/repair?wait=1"
}
restart3() {  # node 3 again on its port and data
  "$NODE" --port "${PORTS[2]}" --data "$work/d/2" --threads 1 --log-level warn "${FLAGS[@]}" \
    --cluster "$cl" >>"$work/node.log" 2>&1 &
  NODE_PIDS[2]=$!
  KV_PIDS+=($!)
  kv_wait_http "http://127.0.0.1:${PORTS[2]}/v0/status"
}
wipe3() {
  kill -TERM "${NODE_PIDS[2]}" && wait "${NODE_PIDS[2]}" 2>/dev/null || true
  rm -rf "$work/d/2"
  restart3
}

start_nodes "$NODE" 3 "${FLAGS[@]}"
p1=${PORTS[0]} p3=${PORTS[2]}
cl="http://127.0.0.1:${PORTS[0]},http://127.0.0.1:${PORTS[1]},http://127.0.0.1:$p3"
KV_ACK=2 KV_FROM=3 kv_fill "http://127.0.0.1:$p1" "$KEYS" "$VSIZE"
echo "settled in $(kv_settle "${PORTS[@]}") s"
keybytes=$(awk -v n="$KEYS" 'BEGIN { s = 0; for (i = 0; i < n; i++) s += 1 + length(i ""); print s }')
differ=$((21 * KEYS + keybytes + KEYS * VSIZE))
data=$((keybytes + KEYS * VSIZE))

if [[ " $PARTS " == *" a "* ]]; then
  # (a)
  wipe3
  s=$(repair "$p3")
  echo "(a) wiped replica: $s"
  sec=$(echo "$s" | json seconds)
  wire=$(($(echo "$s" | json bytes_sent) + $(echo "$s" | json bytes_received)))
  got=$(echo "$s" | json entries_received)
  awk -v s="$sec" -v w="$wire" -v d="$differ" -v g="$got" -v k="$KEYS" 'BEGIN {
    printf "(a) restored %d of %d keys in %.2f s: %.1f MB/s of entries; wire %d B vs %d B that differed: %.3fx (target <= 1.2x)\n", g, k, s, d / s / 1e6, w, d, w / d }'
fi

if [[ " $PARTS " == *" b "* ]]; then
  # (b)
  s=$(repair "$p3")
  echo "(b) identical replicas: $s"
  sec=$(echo "$s" | json seconds)
  wire=$(($(echo "$s" | json bytes_sent) + $(echo "$s" | json bytes_received)))
  awk -v s="$sec" -v w="$wire" -v d="$data" 'BEGIN {
    printf "(b) identical: %.2f s, wire %d B vs data %d B: %.5f%% (target <= 1%%)\n", s, w, d, 100 * w / d }'
fi

if [[ " $PARTS " == *" b2 "* ]]; then
  # (b2) A replica that missed a tenth of the keys' overwrites while it was down (spread over
  # nearly every leaf): the digest round's cost shows here.
  kill -TERM "${NODE_PIDS[2]}" && wait "${NODE_PIDS[2]}" 2>/dev/null || true
  part=$((KEYS / 10))
  KV_ACK=2 KV_FROM=3 kv_fill "http://127.0.0.1:$p1" "$part" "$VSIZE" >/dev/null
  restart3
  s=$(repair "$p3")
  echo "(b2) missed overwrites: $s"
  pkeys=$(awk -v n="$part" 'BEGIN { s = 0; for (i = 0; i < n; i++) s += 1 + length(i ""); print s }')
  pdiff=$((21 * part + pkeys + part * VSIZE))
  wire=$(($(echo "$s" | json bytes_sent) + $(echo "$s" | json bytes_received)))
  awk -v s="$(echo "$s" | json seconds)" -v w="$wire" -v d="$pdiff" -v g="$(echo "$s" | json entries_received)" -v k="$part" 'BEGIN {
    printf "(b2) %d of %d missed overwrites restored in %.2f s; wire %d B vs %d B that differed: %.3fx (digests of every differing leaf, then the values)\n", g, k, s, w, d, w / d }'
fi

# (c)
url="http://127.0.0.1:$p1"
# The saturation: the best of SAT_RUNS closed-loop runs of 5 s (one run read 59K to 91K req/s
# on the shared machine, moving the operating point of every ratio with it).
sats=()
for _ in $(seq 1 "$SAT_RUNS"); do
  sats+=("$(./loadtest/kvload -t1 -c64 -d5s --workload mixed --keys "$KEYS" "$url" |
    awk '/Requests\/sec/ { print int($2) }')")
done
sat=$(printf '%s\n' "${sats[@]}" | sort -n | tail -1)
rate=${RATE:-$((sat / 2))}
echo "(c) saturation ~$sat req/s (closed loop, mixed; best of ${sats[*]}); runs at $rate req/s for ${DUR}s"
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) printf "%.3f", v / 1000; else if (v ~ /ms$/) printf "%.3f", v + 0; else if (v ~ /s$/) printf "%.3f", v * 1000; else print v }'; }
cpu() {  # CPU seconds (user + system) the nodes running now have used
  local p t=0
  for p in "${NODE_PIDS[@]}"; do
    t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  awk -v t="$t" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
p99() {  # p99 of one open-loop run, in ms; the nodes' CPU seconds over it go to $work/cpu,
  # its per-second figures to $work/ps.txt, the machine's cores over it to $work/machine
  local c0 t0
  c0=$(cpu)
  ./loadtest/kvload -t1 -c64 -d"${DUR}s" -R "$rate" --workload mixed --keys "$KEYS" -L \
    --per-second "$work/ps.txt" "$url" >"$work/run.txt"
  awk -v a="$c0" -v b="$(cpu)" 'BEGIN { printf "%.2f\n", b - a }' >"$work/cpu"
  t0=$(awk '/start_unix/ { print $3 }' "$work/ps.txt")
  python3 loadtest/machine_states.py window "$work/machine.txt" "$t0" \
    "$(awk -v t="$t0" -v d="$DUR" 'BEGIN { printf "%.3f", t + d }')" >"$work/machine"
  to_ms "$(awk '$1 == "99.000%" { print $2 }' "$work/run.txt")"
}
# "other" cores (every process but the nodes and kvload, kernel threads included) and steal over
# the last run, from $work/machine
outside() { awk '{ printf "other %s cores, steal %s", $4, $6 }' "$work/machine"; }
perseconds() {  # the last run's per-second p99s, in ms
  awk '!/^#/ { printf "%s%s", sep, $4; sep = " " }' "$work/ps.txt"
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# The machine's CPU, sampled every 0.25 s for the whole benchmark (bounded: 2 hours).
python3 loadtest/machine_states.py sample "$work/machine.txt" 7200 0.25 "$work" &
KV_PIDS+=($!)
summary=()
./loadtest/kvload -t1 -c64 -d3s -R "$rate" --workload mixed --keys "$KEYS" "$url" >/dev/null
# (c1) Repairs of identical replicas driven by node 1, back to back for the whole run; ROUNDS
# pairs (without, with), each pair's ratio printed, the median of the ratios in the summary.
if [[ " $CASES " == *" identical "* ]]; then
  repair "$p1" >/dev/null # identical from here on (a third replica may have missed fill writes)
  ratios=()
  for round in $(seq 1 "$ROUNDS"); do
    base=$(p99)
    cbase=$(cat "$work/cpu")
    obase=$(outside)
    (
      end=$(($(date +%s) + DUR + 2))
      n=0
      while [ "$(date +%s)" -lt "$end" ] && [ "$n" -lt 1000 ]; do
        repair "$p1" >"$work/identical.json"
        n=$((n + 1))
      done
      echo "$n" >"$work/repairs"
    ) &
    loop=$!
    with=$(p99)
    cwith=$(cat "$work/cpu")
    wait "$loop"
    ratios+=("$(ratio "$with" "$base")")
    echo "(c1) identical replicas, round $round: p99 $base ms without ($obase), $with ms with ($(outside)) $(cat "$work/repairs") repairs back to back: $(ratio "$with" "$base")x (nodes CPU s: $cbase / $cwith; last: $(cat "$work/identical.json"))"
  done
  med=$(printf '%s\n' "${ratios[@]}" | median)
  summary+=("identical-replica repairs back to back: ${med}x (median of $ROUNDS rounds: ${ratios[*]})")
fi
# (c2) Node 3 wiped and restored by a repair it drives (its GETs read-repair too).
if [[ " $CASES " == *" wiped "* ]]; then
  base=$(p99)
  cbase=$(cat "$work/cpu")
  wipe3
  (repair "$p3" >"$work/wiped.json") &
  rp=$!
  with=$(p99)
  cwith=$(cat "$work/cpu")
  wait "$rp"
  echo "(c2) wiped replica: p99 $base ms without, $with ms while restored; repair $(cat "$work/wiped.json")"
  summary+=("wiped replica restored: $(ratio "$with" "$base")x ($with / $base ms; nodes CPU s over the run: $cwith / $cbase)")
fi
# (c3) Hint replay and a repair at once, ROUNDS rounds per case. Node 1 restarted with
# --hinted-handoff on. Each round: (without) HINTS keys written through node 1 with every node
# up, settled (sync, flushes and compactions done, SETTLE_S s), the run without; (with) node 3
# stopped, the same HINTS keys written (ack=2 from=3: node 1 keeps a hint for node 3 per
# write), settled the same way, then node 3 restarted and, at once, a repair driven by node 3
# (case hints) and the measured run: node 3's restart, warm-up, the replay and the repair all
# fall in the "with" window, which prints the share of it they covered. Both windows follow the
# same writes, so the fill's flushes and dirty pages weigh on both alike. The replay rate:
# node 1's hints for node 3 replayed until it keeps none, timed from node 3's start.
metric() {  # metric PORT NAME: the sum of its samples (every label)
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }'
}
settle() {  # settle PORT...: the fill's dirty pages on disk, these nodes' flushes and compactions done
  timeout 60 sync || true
  kv_settle "$@" >/dev/null
  sleep "$SETTLE_S"
}
fill_hints() { KV_ACK=2 KV_FROM=3 kv_fill "$url" "$HINTS" "$VSIZE" >/dev/null; }
covered() {  # covered END: the share of the last run's window [start, start + DUR) before END
  awk -v e="$1" -v t="$(awk '/start_unix/ { print $3 }' "$work/ps.txt")" -v d="$DUR" 'BEGIN {
    c = (e - t) / d; if (c < 0) c = 0; if (c > 1) c = 1; printf "%.0f%%", 100 * c }'
}
for hc in hints replay repair stale; do
  [[ " $CASES " == *" $hc "* ]] || continue
  hh=on
  [ "$hc" = repair ] || [ "$hc" = stale ] && hh=off
  what="hint replay + repair"
  [ "$hc" = replay ] && what="hint replay alone (no repair)"
  [ "$hc" = repair ] && what="repair alone (no hints)"
  [ "$hc" = stale ] && what="node 3 back stale, no replay, no repair (read repair only)"
  rates=($HINT_RATES)
  [ "$hh" = off ] && rates=("${rates[0]}")
  declare -A by_rate=() clean_by_rate=() nclean_by_rate=()
  for round in $(seq 1 "$ROUNDS"); do
    for hr in "${rates[@]}"; do
      # Node 1 restarted for each round (the rates alternate), then a warm-up run.
      kill -TERM "${NODE_PIDS[0]}" && wait "${NODE_PIDS[0]}" 2>/dev/null || true
      "$NODE" --port "$p1" --data "$work/d/0" --threads 1 --log-level warn \
        --peer-protocol "$MODE" --hinted-handoff "$hh" --hint-replay-rate "$hr" \
        --anti-entropy-interval-s 0 --repair-rate-mb "$RATE_MB" --cluster "$cl" >>"$work/node.log" 2>&1 &
      NODE_PIDS[0]=$!
      KV_PIDS+=($!)
      kv_wait_http "$url/v0/status"
      ./loadtest/kvload -t1 -c64 -d3s -R "$rate" --workload mixed --keys "$KEYS" "$url" >/dev/null
      fill_hints
      settle "${PORTS[@]}"
      base=$(p99)
      cbase=$(cat "$work/cpu")
      obase=$(outside)
      mbase=$(cat "$work/machine")
      sbase=$(perseconds)
      kill -TERM "${NODE_PIDS[2]}" && wait "${NODE_PIDS[2]}" 2>/dev/null || true
      h0=$(metric "$p1" kv_hints_written_total)
      fill_hints
      for _ in $(seq 1 600); do # the last failures may follow the last answers (bounded: 60 s)
        [ "$hh" = off ] || [ $(($(metric "$p1" kv_hints_written_total) - h0)) -ge "$HINTS" ] && break
        sleep 0.1
      done
      written=$(($(metric "$p1" kv_hints_written_total) - h0))
      settle "$p1" "${PORTS[1]}"
      hdisk=$(du -sb "$work/d/0/hints" | cut -f1)
      r0=$(metric "$p1" kv_hints_replayed_total)
      t0=$(date +%s.%N)
      restart3
      echo '{}' >"$work/hints-repair.json"
      rp=
      if [ "$hc" = hints ] || [ "$hc" = repair ]; then
        (repair "$p3" >"$work/hints-repair.json") &
        rp=$!
      fi
      tr=$(date +%s.%N)
      (
        # While the p99 is measured, once per POLL_S seconds (each poll forks a subshell, curl and
        # awk and renders node 1's /metrics on its loop); then every 0.05 s. Bounded: 10 minutes.
        end=$(($(date +%s) + DUR))
        for _ in $(seq 1 6000); do
          [ "$(metric "$p1" kv_hints_pending_bytes)" = 0 ] && break
          if [ "$(date +%s)" -lt "$end" ]; then sleep "$POLL_S"; else sleep 0.05; fi
        done
        echo "$(date +%s.%N) $(metric "$p1" kv_hints_replayed_total) $(metric "$p1" kv_hints_pending_bytes)" >"$work/replayed"
      ) &
      hp=$!
      rr0=$(metric "$p1" kv_read_repairs_total)
      with=$(p99)
      rr=$(($(metric "$p1" kv_read_repairs_total) - rr0))
      cwith=$(cat "$work/cpu")
      owith=$(outside)
      swith=$(perseconds)
      wait $rp "$hp"
      read -r t1 r1 left <"$work/replayed"
      rsec=$(json seconds <"$work/hints-repair.json")
      rend=$(awk -v a="$tr" -v s="$rsec" 'BEGIN { printf "%.3f", a + s }')
      cov="replay $(covered "$t1")"
      [ "$hh" = off ] && cov="no replay"
      [ "$hc" = hints ] || [ "$hc" = repair ] && cov+=", repair $(covered "$rend")"
      [ "$hh" = on ] && awk -v w="$written" -v d="$hdisk" -v r="$((r1 - r0))" -v a="$t0" -v b="$t1" -v l="$left" -v n="$round" 'BEGIN {
        printf "(c3) round %d: hints written %d, %d bytes on disk: %.1f bytes per hint (%d-byte values); replayed %d in %.2f s from node 3'"'"'s start: %.0f hints/s; pending bytes left %d\n", n, w, d, d / w, '"$VSIZE"', r, b - a, r / (b - a), l }'
      by_rate[$hr]+=" $(ratio "$with" "$base")"
      # A round is clean when in no second of either window other processes and steal together
      # took CLEAN_CORES or more (the machine's, not the nodes', share of the spread).
      if [ "$(awk -v a="$(awk '{ print $7 }' <<<"$mbase")" -v b="$(awk '{ print $7 }' "$work/machine")" -v c="$CLEAN_CORES" 'BEGIN { print (a < c && b < c) }')" = 1 ]; then
        clean_by_rate[$hr]+=" $(ratio "$with" "$base")"
        nclean_by_rate[$hr]=$((${nclean_by_rate[$hr]:-0} + 1))
        tag=clean
      else
        tag="not clean: other processes and steal took >= $CLEAN_CORES cores in some second"
      fi
      echo "(c3) $what, --hint-replay-rate $hr, round $round: p99 $base ms without, $with ms with: $(ratio "$with" "$base")x ($tag); the with window covered by: $cov; node 1's read repairs in it: $rr; nodes CPU s $cbase / $cwith; without: $obase; with: $owith"
      echo "(c3)   per-second p99 (ms) without: $sbase"
      echo "(c3)   per-second p99 (ms) with:    $swith"
      [ "$hc" = hints ] || [ "$hc" = repair ] && echo "(c3)   repair: $(cat "$work/hints-repair.json")"
    done
  done
  for hr in "${rates[@]}"; do
    med=$(tr ' ' '\n' <<<"${by_rate[$hr]}" | grep . | median)
    cmed=n/a
    [ -n "${clean_by_rate[$hr]:-}" ] && cmed=$(tr ' ' '\n' <<<"${clean_by_rate[$hr]}" | grep . | median)x
    rl=""
    [ "$hh" = on ] && rl=", --hint-replay-rate $hr"
    summary+=("$what ($HINTS keys missed$rl): ${med}x (median of $ROUNDS rounds:${by_rate[$hr]}); clean rounds only: $cmed (${nclean_by_rate[$hr]:-0} of $ROUNDS:${clean_by_rate[$hr]:-})")
  done
  unset by_rate clean_by_rate nclean_by_rate
done
for line in "${summary[@]}"; do echo "(c) p99 at half saturation, with/without: $line (target <= 1.5x)"; done
stop_nodes
rm -rf "$work/d" # the data (GBs); the figures and logs stay in $work
