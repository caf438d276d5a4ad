# Shared helpers of the benchmark scripts (sourced). Every process started here is tracked by PID
# and stopped by PID on exit.
KV_PIDS=()
kv_cleanup() {
  for p in "${KV_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done  # some have exited
  for p in "${KV_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  KV_PIDS=()
}
trap kv_cleanup EXIT

# kv_machine: one line naming the machine and its load, for the top of a benchmark's output.
kv_machine() {
  echo "machine: $(nproc) cores, $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | sed 's/^ *//'), load $(cut -d' ' -f1-3 /proc/loadavg)"
}

kv_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

kv_wait_http() {  # URL: poll until it answers (bounded: 10 s)
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

# kv_start_nginx PORT DIR: nginx (2 workers) answering 200 with a 100-byte body.
kv_start_nginx() {
  local port=$1 dir=$2 body
  body=$(head -c 100 /dev/zero | tr '\0' 'x')
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<NGX
worker_processes 2;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  server { listen 127.0.0.1:$port; location / { return 200 "$body"; } }
}
NGX
  nginx -c "$dir/nginx.conf" -p "$dir" &
  KV_PIDS+=($!)
  kv_wait_http "http://127.0.0.1:$port/"
}

# kv_wrk OUT ARGS...: runs wrk with --latency, saves its output; prints "rps p50_ms p99_ms".
kv_wrk() {
  local out=$1; shift
  wrk --latency "$@" >"$out" 2>&1
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec/ { rps=$2 }
    $1=="50%" { p50=ms($2) }
    $1=="99%" { p99=ms($2) }
    END { printf "%s %.3f %.3f\n", rps, p50, p99 }' "$out"
}

kv_rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# kv_puts URL: PUTs this node has answered 201 (from /metrics).
kv_puts() {
  curl -s "$1/metrics" | awk -F' ' '/^kv_requests_total\{method="PUT",status="201"\}/ {print $2; f=1} END {if (!f) print 0}'
}

# kv_fill URL KEYS [VALUE_SIZE]: PUTs k0..k(KEYS-1) once each through URL with wrk and fill.lua.
# wrk keeps running until -d even after fill.lua stops sending, so it is stopped by PID once the
# node's /metrics shows KEYS more PUTs answered (bounded: 20 minutes).
kv_fill() {
  local url=$1 keys=$2 vsize=${3:-100} start pid
  start=$(kv_puts "$url")
  KV_KEYS=$keys KV_VALUE_SIZE=$vsize wrk -t1 -c64 -d1200s -s loadtest/fill.lua "$url" >/dev/null &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [ $(($(kv_puts "$url") - start)) -ge "$keys" ]; then break; fi
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "filled $(($(kv_puts "$url") - start)) keys"
}

# kv_settle PORT...: waits (at most 60 s) until no node on these ports has a flush or compaction
# running or pending; prints the seconds waited.
kv_settle() {
  local t0 p busy
  t0=$(date +%s.%N)
  for _ in $(seq 1 600); do
    busy=0
    for p in "$@"; do
      busy=$((busy + $(curl -s "http://127.0.0.1:$p/metrics" |
        awk '/^kv_storage_(background_jobs|frozen_memtables) / { s += $2 } END { print s + 0 }')))
    done
    [ "$busy" = 0 ] && break
    sleep 0.1
  done
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }'
}

# ---- clusters of ./node for the benchmark runners (they set $work) ----------------------------
NODE_PIDS=()
PORTS=()
# start_nodes BIN N FLAGS...: N nodes (1: no --cluster) on fresh ports with data under $work/d;
# sets PORTS. Data persists across restarts of the same N (same ports are reused).
start_nodes() {
  local bin=$1 n=$2 i cl=""
  shift 2
  if [ "${#PORTS[@]}" -ne "$n" ]; then
    PORTS=()
    for i in $(seq 1 "$n"); do PORTS+=("$(kv_free_port)"); done
    rm -rf "$work/d"
  fi
  for p in "${PORTS[@]}"; do cl+="http://127.0.0.1:$p,"; done
  cl=${cl%,}
  NODE_PIDS=()
  for i in $(seq 0 $((n - 1))); do
    local args=(--port "${PORTS[$i]}" --data "$work/d/$i" --threads 1 --log-level warn "$@")
    [ "$n" -gt 1 ] && args+=(--cluster "$cl")
    "$bin" "${args[@]}" >>"$work/node.log" 2>&1 &
    NODE_PIDS+=($!)
    KV_PIDS+=($!)
  done
  for p in "${PORTS[@]}"; do kv_wait_http "http://127.0.0.1:$p/v0/status"; done
}
stop_nodes() {
  for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  NODE_PIDS=()
}
# Means of the first column of stdin (whole, two decimals), and a/b to three decimals.
mean() { awk '{ s += $1; n++ } END { if (n) printf "%.0f", s / n; else print 0 }'; }
fmean() { awk '{ s += $1; n++ } END { if (n) printf "%.2f", s / n; else print 0 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }
