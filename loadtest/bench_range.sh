#!/usr/bin/env bash
# Range benchmark: one node (default flags), fill KEYS keys x VALUE bytes (default 10M x 100 B,
# about 1 GiB of stream; QUICK=1: 1M), then stream the whole range once with
#   curl -s -o /dev/null 'http://127.0.0.1:PORT/v0/entities?start=k'
# and print MB/s (10^6 bytes/s) and the node's peak RSS growth over its RSS just before the
# stream (VmRSS sampled every 50 ms). Targets: >= 300 MB/s on a 2-core machine, growth < 32 MiB.
# Run by bench.sh in its full run (OUT=<results>/raw/range, NODE_BIN=its private copy), or alone:
#   bash loadtest/bench_range.sh            KEYS=2000000 bash loadtest/bench_range.sh
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then KEYS=${KEYS:-1000000}; else KEYS=${KEYS:-10000000}; fi
VALUE=${VALUE:-100}
if [ -z "${NODE_BIN:-}" ]; then
  bash test/deps.sh wrk curl
  make -j2 --no-print-directory node >/dev/null
fi
source loadtest/lib.sh
work=$(mktemp -d /tmp/kvrange.XXXXXX)
# set +e: lib.sh's kv_cleanup `wait`s for killed processes (non-zero status), which under set -e
# would end the trap before the data directory is removed.
trap 'set +e; kv_cleanup; rm -rf "$work"' EXIT
if [ -z "${NODE_BIN:-}" ]; then cp node "$work/node"; NODE_BIN=$work/node; fi
OUT=${OUT:-$work/out}
mkdir -p "$OUT"
FIG=$OUT/figures.tsv
: >"$FIG"
fig() { printf '%s\t%s\n' "$1" "$2" >>"$FIG"; }

port=$(kv_free_port)
url="http://127.0.0.1:$port"
"$NODE_BIN" --port "$port" --data "$work/data" --log-level warn >"$OUT/node.log" 2>&1 &
pid=$!
KV_PIDS+=("$pid")
kv_wait_http "$url/v0/status"
echo "range: node pid $pid on $port; filling $KEYS keys x $VALUE B (wrk -t1 -c64 fill.lua) ..."

# Fill (same method as bench.sh's kv_fill: Debian's wrk 4.1 runs until -d even after fill.lua
# stops its thread, so SIGINT it once the last key answers).
KV_KEYS=$KEYS KV_VALUE_SIZE=$VALUE wrk -t1 -c64 -d1800s -s loadtest/fill.lua "$url" >"$OUT/fill.txt" 2>&1 &
wpid=$!
KV_PIDS+=("$wpid")
t0=$(date +%s.%N)
until curl -sf -o /dev/null "$url/v0/entity?id=k$((KEYS - 1))"; do
  kill -0 "$wpid" 2>/dev/null || break
  sleep 0.5
done
t1=$(date +%s.%N)
sleep 1
kill -INT "$wpid" 2>/dev/null || true
wait "$wpid" || true
fill_rps=$(awk -v n="$KEYS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
echo "range: filled at $fill_rps keys/s; data dir $(du -sh "$work/data" | cut -f1)"
sleep 2   # let a memtable flush triggered by the last writes settle

# RSS sampler (every 50 ms, bounded to 20 min), then the stream.
python3 - "$pid" "$OUT/rss.txt" <<'PY' &
import sys, time
pid, path = sys.argv[1], sys.argv[2]
end = time.time() + 1200
with open(path, "w") as f:
    while time.time() < end:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith(("VmRSS", "RssAnon", "RssFile")):
                    f.write(f"{time.time():.3f} {line.split()[1]} {line.split()[0][:-1]}\n")
            f.flush()
        except OSError:
            break
        time.sleep(0.05)
PY
spl=$!
KV_PIDS+=("$spl")
sleep 0.3
rss_before=$(kv_rss_kb "$pid")
anon_before=$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")
file_before=$(awk '/RssFile/ {print $2}' "/proc/$pid/status")
read -r bytes secs code < <(curl -s -o /dev/null -w '%{size_download} %{time_total} %{http_code}\n' \
  --max-time 600 "$url/v0/entities?start=k" || true)
sleep 0.2
kill "$spl" 2>/dev/null || true
wait "$spl" 2>/dev/null || true

expected=$(python3 -c "import sys; n, v = int(sys.argv[1]), int(sys.argv[2]); print(sum(len(str(i)) + 2 + v for i in range(n)))" "$KEYS" "$VALUE")
read -r peak samples < <(awk '$3 == "VmRSS" { if ($2 > m) m = $2; n++ } END { print m + 0, n + 0 }' "$OUT/rss.txt")
anon_peak=$(awk '$3 == "RssAnon" { if ($2 > m) m = $2 } END { print m + 0 }' "$OUT/rss.txt")
file_peak=$(awk '$3 == "RssFile" { if ($2 > m) m = $2 } END { print m + 0 }' "$OUT/rss.txt")
mb_s=$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.1f", (s > 0 ? b / s / 1e6 : 0) }')
growth=$(awk -v p="$peak" -v b="$rss_before" 'BEGIN { printf "%.1f", (p - b) / 1024 }')
complete=$([ "$bytes" = "$expected" ] && echo yes || echo no)
fig range.keys "$KEYS"; fig range.value_size "$VALUE"; fig range.fill_rps "$fill_rps"
fig range.bytes "$bytes"; fig range.expected_bytes "$expected"; fig range.complete "$complete"
fig range.http_code "$code"; fig range.seconds "$secs"; fig range.mb_s "$mb_s"
fig range.rss_before_mib "$(awk -v b="$rss_before" 'BEGIN { printf "%.1f", b / 1024 }')"
fig range.rss_peak_mib "$(awk -v b="$peak" 'BEGIN { printf "%.1f", b / 1024 }')"
fig range.rss_growth_mib "$growth"; fig range.rss_samples "$samples"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1024 }'; }
fig range.rss_anon_before_mib "$(mib "$anon_before")"; fig range.rss_anon_peak_mib "$(mib "$anon_peak")"
fig range.rss_file_before_mib "$(mib "$file_before")"; fig range.rss_file_peak_mib "$(mib "$file_peak")"
echo "range: HTTP $code, $bytes bytes (expected $expected: complete $complete) in $secs s = $mb_s MB/s" \
  "(target >= 300: $(awk -v v="$mb_s" 'BEGIN { print (v >= 300 ? "MET" : "NOT MET") }'))"
echo "range: RSS $((rss_before / 1024)) MiB before, peak $((peak / 1024)) MiB ($samples samples): growth $growth MiB" \
  "(target < 32: $(awk -v v="$growth" 'BEGIN { print (v < 32 ? "MET" : "NOT MET") }'))"
echo "range: of which anonymous $(mib "$anon_before") -> $(mib "$anon_peak") MiB, file-backed $(mib "$file_before") -> $(mib "$file_peak") MiB"
