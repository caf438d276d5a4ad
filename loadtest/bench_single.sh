#!/usr/bin/env bash
# make bench-single: one node against nginx, same machine, same run, wrk -t1 -c64.
# Fills KEYS keys (default 1M) with 100-byte values, then GET hits and PUT of random keys; nginx
# answers `return 200` with a 100-byte body. Prints rps, p50/p99 and node/nginx ratios, plus the
# node's idle RSS and the RSS added by 10,000 idle connections.
set -euo pipefail
cd "$(dirname "$0")/.."
bash test/deps.sh wrk nginx-light
source loadtest/lib.sh
KEYS=${KEYS:-1000000}
DUR=${DUR:-10}
# One loop thread: wrk needs one of the two cores of the machine this was written on, and two
# loop threads plus wrk on two cores lose their gain to context switches (2026-11-29, 1M keys:
# GET 143K rps with --threads 1 vs 117K with 2; PUT 114K vs 101K). nginx keeps 2 workers.
THREADS=${THREADS:-1}
work=$(mktemp -d /tmp/kvbench.XXXXXX)
out=${OUT:-$work}
mkdir -p "$out"
port=$(kv_free_port)
nport=$(kv_free_port)

./node --port "$port" --data "$work/data" --threads "$THREADS" --log-level warn &
node_pid=$!
KV_PIDS+=($node_pid)
kv_wait_http "http://127.0.0.1:$port/v0/status"
idle_rss=$(kv_rss_kb "$node_pid")

# 10,000 idle keep-alive connections: RSS before and after, on the fresh node (after the
# load runs, freed heap would absorb them and hide their cost). The python client closes them.
ulimit -n 65536 2>/dev/null || true
before=$(kv_rss_kb "$node_pid")
python3 - "$port" "$node_pid" >"$out/idle.txt" <<'PY'
import socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
socks = []
for i in range(10000):
    s = socket.create_connection(("127.0.0.1", port))
    socks.append(s)
# one request on the last connection proves the node has accepted them all and still serves
s = socks[-1]
s.sendall(b"GET /v0/status HTTP/1.1\r\nHost: x\r\n\r\n")
s.recv(4096)
rss = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS")][0].split()[1]
print(rss)
PY
after=$(cat "$out/idle.txt")

echo "filling $KEYS keys with 100-byte values ..."
kv_fill "http://127.0.0.1:$port" "$KEYS" 100 | tee "$out/fill.txt"

read -r get_rps get_p50 get_p99 < <(KV_KEYS=$KEYS kv_wrk "$out/node-get.txt" -t1 -c64 -d"${DUR}s" -s loadtest/get.lua "http://127.0.0.1:$port")
read -r put_rps put_p50 put_p99 < <(KV_KEYS=$KEYS KV_VALUE_SIZE=100 kv_wrk "$out/node-put.txt" -t1 -c64 -d"${DUR}s" -s loadtest/put.lua "http://127.0.0.1:$port")

kv_start_nginx "$nport" "$work/nginx"
read -r ngx_rps ngx_p50 ngx_p99 < <(kv_wrk "$out/nginx.txt" -t1 -c64 -d"${DUR}s" "http://127.0.0.1:$nport/")



ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
cat <<TABLE | tee "$out/summary.md"
## bench-single ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r))
wrk -t1 -c64 -d${DUR}s; node: --threads $THREADS, $KEYS keys x 100 B; nginx: 2 workers, return 200 (100 B)

| target | rps | p50 ms | p99 ms | vs nginx |
|---|---|---|---|---|
| nginx return 200 | $ngx_rps | $ngx_p50 | $ngx_p99 | 1.00 |
| node GET (hits) | $get_rps | $get_p50 | $get_p99 | $(ratio "$get_rps" "$ngx_rps") |
| node PUT (random keys) | $put_rps | $put_p50 | $put_p99 | $(ratio "$put_rps" "$ngx_rps") |

Targets: GET >= 0.9x nginx, PUT >= 0.8x nginx.
Memory: idle node RSS $((idle_rss / 1024)) MiB (target < 20); 10,000 idle connections add $(((after - before) / 1024)) MiB (target < 80).
TABLE
kill -TERM "$node_pid" 2>/dev/null || true   # stop it (it flushes) before its data goes
wait "$node_pid" 2>/dev/null || true
rm -rf "$work/data"
