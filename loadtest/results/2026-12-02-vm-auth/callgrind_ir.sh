#!/usr/bin/env bash
# ir.sh none|secret put|get N: instructions (callgrind Ir) per request on the coordinator.
set -u
v=$1 wl=$2 N=$3 mode=${4:-binary}
P1=$((22000+RANDOM%2000)); P2=$((P1+1)); P3=$((P1+2)); C=http://127.0.0.1:$P1,http://127.0.0.1:$P2,http://127.0.0.1:$P3
extra=""; [ $v = secret ] && extra="--cluster-secret-file /tmp/chk/s"
rm -rf d$v$wl; pids=()
for p in $P1 $P2; do valgrind --tool=callgrind --callgrind-out-file=/tmp/chk/cg.$v.$wl.%p /work/wt-auth/node --port $p --cluster $C --data d$v$wl/$p --threads 1 --log-level warn --peer-protocol $mode $extra 2>/dev/null & pids+=($!); done
for p in $P3; do /work/wt-auth/node --peer-protocol $mode --port $p --cluster $C --data d$v$wl/$p --threads 1 --log-level warn $extra 2>/dev/null & pids+=($!); done
for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:$P1/v0/status && break; sleep 0.5; done
python3 - "$P1" "$wl" "$N" <<'PY'
import http.client,sys
port,wl,n=int(sys.argv[1]),sys.argv[2],int(sys.argv[3])
c=http.client.HTTPConnection("127.0.0.1",port)
for i in range(n):
    c.request("PUT" if wl=="put" else "GET", f"/v0/entity?id=k{i%200}&ack=2&from=3", body=b"v"*100 if wl=="put" else None); r=c.getresponse(); r.read()
    assert r.status in (200,201,404), r.status
PY
kill ${pids[@]}; wait 2>/dev/null
ir=$(grep -h "^summary:" /tmp/chk/cg.$v.$wl.${pids[0]} 2>/dev/null | tail -1 | awk '{print $2}')
ir2=$(grep -h "^summary:" /tmp/chk/cg.$v.$wl.${pids[1]} 2>/dev/null | tail -1 | awk '{print $2}')
echo "$mode $v $wl $N coordinator $ir replica $ir2"
rm -f /tmp/chk/cg.$v.$wl.*
