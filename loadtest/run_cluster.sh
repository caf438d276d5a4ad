#!/usr/bin/env bash
# `make run`: a local 3-node cluster on ports 8080-8082 with data under ./data/<port>, in the
# foreground. Ctrl-C (or SIGTERM) stops all three cleanly. PEER_PROTOCOL=http|binary picks the
# node-to-node protocol (default binary); extra node flags can be given in NODE_FLAGS. The nodes
# share a cluster secret: ./data/cluster-secret, created (random, mode 0600) on the first run.
set -u
cd "$(dirname "$0")/.."
peer=${PEER_PROTOCOL:-binary}
ports=(8080 8081 8082)
cluster=$(printf 'http://localhost:%s,' "${ports[@]}")
cluster=${cluster%,}
secret=./data/cluster-secret
if [ ! -s "$secret" ]; then
  mkdir -p ./data
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$secret" && echo >> "$secret")
fi
pids=()
stop() {
  trap - INT TERM
  echo "stopping nodes ${pids[*]}"
  kill -TERM "${pids[@]}" 2>/dev/null
  wait "${pids[@]}" 2>/dev/null
  exit 0
}
trap stop INT TERM
for p in "${ports[@]}"; do
  # shellcheck disable=SC2086
  ./node --port "$p" --cluster "$cluster" --data "./data/$p" --peer-protocol "$peer" \
    --cluster-secret-file "$secret" ${NODE_FLAGS:-} &
  pids+=($!)
done
echo "cluster up: $cluster (peer protocol $peer, secret $secret); try:"
echo "  curl -X PUT --data-binary hello 'http://127.0.0.1:8080/v0/entity?id=k1'"
echo "  curl 'http://127.0.0.1:8081/v0/entity?id=k1&ack=2&from=3'"
echo "Ctrl-C stops all three."
wait -n "${pids[@]}"
echo "a node exited: stopping the others"
stop
