#!/usr/bin/env bash
# loadtest/instructions_per_get.sh BIN [NODE FLAGS...]: instructions (callgrind Ir) a node
# spends per GET 2/3 (or PUT 2/3, OP=put) on a 3-node binary cluster (--threads 1; pass
# --peer-protocol http for the other transport) whose replicas agree: node 1 runs under valgrind
# --tool=callgrind; 1000 keys of 100 bytes are written 3/3 through node 2; N (5000) requests, one
# at a time on one keep-alive connection, go through node 1 (ROLE=coordinator, the default) or
# through node 2 (ROLE=replica: node 1 then answers as a replica) after 1000 for warm-up; the
# counters are zeroed before and dumped after them. Prints "Ir per GET" (or PUT) and leaves the
# profile (callgrind_annotate --inclusive=yes FILE).
# Unlike rps on a shared machine this hardly moves with other load: it compares two builds or
# settings (e.g. --read-repair on and off, or an older binary) to a fraction of a percent.
# Environment: N (5000), OUT (the profile's path; default a new file under /tmp).
set -euo pipefail
bin=$1; shift
N=${N:-5000}
OP=${OP:-get}
ROLE=${ROLE:-coordinator}
d=$(mktemp -d /tmp/kvinstr.XXXXXX)
OUT=${OUT:-$d.callgrind}
ports=($(python3 -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))'))
cl="http://127.0.0.1:${ports[0]},http://127.0.0.1:${ports[1]},http://127.0.0.1:${ports[2]}"
common=(--cluster "$cl" --threads 1 --log-level warn --peer-protocol binary "$@")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$d"' EXIT
for i in 1 2; do
  "$bin" --port "${ports[$i]}" --data "$d/$i" "${common[@]}" >>"$d/log" 2>&1 &
  pids+=($!)
done
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$bin" --port "${ports[0]}" \
  --data "$d/0" "${common[@]}" >>"$d/log" 2>&1 &
vg=$!
pids+=("$vg")
python3 - "${ports[@]}" "$N" "$vg" "$OP" "$ROLE" <<'PY'
import http.client, subprocess, sys, time
p1, p2, p3, n, vg, op, role = sys.argv[1:]
n = int(n)
def wait(port):
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
            c.request("GET", "/v0/status")
            r = c.getresponse(); r.read()
            if r.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"node on port {port} did not start")
for p in (p1, p2, p3):
    wait(p)
c2 = http.client.HTTPConnection("127.0.0.1", int(p2), timeout=30)
for i in range(1000):
    c2.request("PUT", f"/v0/entity?id=k{i}&ack=3&from=3", body=b"v" * 100)
    r = c2.getresponse(); r.read()
    assert r.status == 201, r.status
c1 = http.client.HTTPConnection("127.0.0.1", int(p1 if role == "coordinator" else p2),
                                timeout=30)
def requests(m):
    for i in range(m):
        if op == "put":
            c1.request("PUT", f"/v0/entity?id=k{i % 1000}&ack=2&from=3", body=b"w" * 100)
        else:
            c1.request("GET", f"/v0/entity?id=k{i % 1000}&ack=2&from=3")
        r = c1.getresponse(); r.read()
        assert r.status == (201 if op == "put" else 200), r.status
requests(1000)
subprocess.run(["callgrind_control", "-z", vg], check=True, capture_output=True)
requests(n)
subprocess.run(["callgrind_control", "-d", vg], check=True, capture_output=True)
PY
f=$(ls -t "$OUT".* 2>/dev/null | head -1 || true)
[ -n "$f" ] || f=$OUT
ir=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
what=$(echo "$OP" | tr a-z A-Z)
echo "Ir per $what ($ROLE) $((ir / N)) ($ir for $N ${what}s; profile $f)"
