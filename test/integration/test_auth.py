"""Authenticated peers (--cluster-secret-file, proto_spec section 11), in every peer mode.

Three nodes named `localhost`, each with its own secret file:
  - a common secret: the cluster works (3/3 writes and reads through every node);
  - forged internal requests from a plain client (X-KV-Internal without X-KV-Auth, with a
    malformed one, a stale one, one made with another secret) answer 401 and write nothing; one
    made with the right secret by this file's own implementation of the MAC is accepted (the
    spec's algorithm, computed independently, matches the node's);
  - repair requests (POST /v0/internal/repair/*) are authenticated like the others, and a repair
    between the nodes completes;
  - a node restarted with another secret cannot act as a replica: requests that need it
    (ack=3) answer 504, ack=2 works, and its own store holds none of those keys; the refusals are
    counted in kv_peer_auth_failures_total;
  - rotation A -> A+B -> B, restarting one node at a time, while a client thread writes and reads
    throughout through the nodes that are up, with ack=2 (never needing the restarting node):
    every request succeeds, and no node ever refuses a peer.
"""
import hashlib
import json
import os
import threading
import time

from harness import (Group, Node, check, check_eq, entities, get, get_metrics, metric, mkdtemp,
                     poll, put, q, request, start_nodes, wait_healthy)

SECRET_A = "integration-secret-A-" + "a" * 32
SECRET_B = "integration-secret-B-" + "b" * 32


def key_of(secret):
    return hashlib.blake2b(secret.encode(), digest_size=32).digest()


def auth_header(secret, method, target, version, body, t_ms):
    msg = b"\n".join([b"kvhttp-v1", method.encode(), target.encode(), version.encode(),
                      str(t_ms).encode(), body])
    mac = hashlib.blake2b(msg, digest_size=32, key=key_of(secret)).hexdigest()
    return f"t={t_ms},m={mac}"


def auth_failures(port, reason=None):
    samples = get_metrics(port)
    if reason is None:
        return metric(samples, "kv_peer_auth_failures_total") or 0
    return metric(samples, "kv_peer_auth_failures_total", reason=reason) or 0


def stored_keys(port, prefix):
    """The keys under prefix in this node's own store (its range stream reads only itself)."""
    r = entities(port, prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
    check_eq(r.status, 200, f"GET /v0/entities on {port}")
    return r.body.count(b"\n")  # one "key\nvalue" record per key (values here have no \n)


class Auth(Group):
    abstract = True
    mode = "binary"
    test_timeout = 300

    def setup_group(self):
        self.dir = mkdtemp("kvit-secrets")

        def make(ports):
            nodes = []
            for p in ports:
                path = os.path.join(self.dir, f"secret-{p}")
                self.write_secret(path, SECRET_A)
                nodes.append(Node(p, cluster_ports=ports, mode=self.mode,
                                  extra=["--cluster-secret-file", path,
                                         "--request-timeout-ms", "1000"]))
            return nodes

        self.ns = self.track(start_nodes(3, make))
        wait_healthy(self.ns)

    @staticmethod
    def write_secret(path, text):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")

    def secret_path(self, node):
        return node.extra[node.extra.index("--cluster-secret-file") + 1]

    def restart_with(self, node, text):
        node.stop()
        self.write_secret(self.secret_path(node), text)
        node.start()

    def test_common_secret_works(self):
        for i, nd in enumerate(self.ns):
            key, value = f"{self.mode}/common/{i}", f"value {i}".encode()
            check_eq(put(nd.port, key, value, ack=3, frm=3).status, 201, f"PUT 3/3 via {nd.port}")
            for other in self.ns:
                r = get(other.port, key, ack=3, frm=3)
                check_eq((r.status, r.body), (200, value), f"GET 3/3 via {other.port}")

    def test_forged_internal_requests_are_refused(self):
        a = self.ns[0]
        before = {r: auth_failures(a.port, r) for r in
                  ("http_missing", "http_malformed", "http_stale", "http_mismatch")}
        prefix = f"{self.mode}/forged/"
        target = "/v0/entity?id=" + q(prefix + "k")
        version = str(2**64 - 600)  # far in the future: would pin the key forever
        now = int(time.time() * 1000)
        cases = [
            ("missing", {}),
            ("malformed", {"X-KV-Auth": "t=1,m=zz"}),
            ("stale", {"X-KV-Auth": auth_header(SECRET_A, "PUT", target, version, b"poisoned",
                                                now - 120000)}),
            ("mismatch", {"X-KV-Auth": auth_header(SECRET_B, "PUT", target, version,
                                                   b"poisoned", now)}),
            ("mismatch", {"X-KV-Auth": "t=%d,m=%s" % (now, "0" * 64)}),
        ]
        for reason, extra in cases:
            headers = {"X-KV-Internal": "1", "X-KV-Version": version, **extra}
            r = request(a.port, "PUT", target, body=b"poisoned", headers=headers)
            check_eq(r.status, 401, f"forged PUT ({reason})")
            r = request(a.port, "DELETE", target, headers=headers)
            check_eq(r.status, 401, f"forged DELETE ({reason})")
            r = request(a.port, "GET", target, headers={"X-KV-Internal": "1", **extra})
            check_eq(r.status, 401, f"forged GET ({reason})")
        check_eq(stored_keys(a.port, prefix), 0, "keys the forged requests wrote")
        check_eq(get(a.port, prefix + "k", ack=3, frm=3).status, 404, "GET of the forged key")
        for reason, was in before.items():
            check(auth_failures(a.port, reason) > was, f"kv_peer_auth_failures_total {reason} "
                                                       f"moved (was {was})")
        # A MAC computed here, independently, with the right secret is accepted: this is the
        # spec's algorithm. A client writing it directly is a peer, by definition.
        good_version = str((1 << 63) | (int(time.time() * 1e6) << 10) | 1023)
        h = auth_header(SECRET_A, "PUT", target, good_version, b"good", now)
        r = request(a.port, "PUT", target, body=b"good",
                    headers={"X-KV-Internal": "1", "X-KV-Version": good_version, "X-KV-Auth": h})
        check_eq(r.status, 201, "PUT with a valid X-KV-Auth")
        # Its replay within the window stores the same version again: no change.
        r = request(a.port, "PUT", target, body=b"good",
                    headers={"X-KV-Internal": "1", "X-KV-Version": good_version, "X-KV-Auth": h})
        check_eq(r.status, 201, "replayed PUT")
        check_eq(r.header("X-KV-Version"), good_version, "version after the replay")
        # The MAC covers the body: the same header with another body is refused.
        r = request(a.port, "PUT", target, body=b"evil",
                    headers={"X-KV-Internal": "1", "X-KV-Version": good_version, "X-KV-Auth": h})
        check_eq(r.status, 401, "valid header, other body")
        r = request(a.port, "GET", target, headers={"X-KV-Internal": "1", "X-KV-Auth": auth_header(
            SECRET_A, "GET", target, "", b"", int(time.time() * 1000))})
        check_eq((r.status, r.body), (200, b"good"), "internal GET with a valid X-KV-Auth")

    def test_cluster_range_pages_are_authenticated(self):
        prefix = f"{self.mode}/crange/"
        items = [(f"{prefix}{i:03d}", f"v{i}".encode()) for i in range(60)]
        for i, (k, v) in enumerate(items):
            check_eq(put(self.ns[i % 3].port, k, v, ack=2, frm=2).status, 201, f"PUT {k}")
        want = b"".join(k.encode() + b"\n" + v for k, v in items)
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        for nd in self.ns:
            r = request(nd.port, "GET", "/v0/entities?start=" + q(prefix) + "&end=" + q(end) +
                        "&scope=cluster&from=2")
            check_eq((r.status, r.body), (200, want), f"cluster range via {nd.port}")
        # A page request without a valid proof is refused; with one (this file's MAC) it is a
        # peer's and gets the page.
        target = "/v0/entities?start=" + q(prefix) + "&max_keys=10&max_bytes=65536"
        r = request(self.ns[0].port, "GET", target, headers={"X-KV-Internal": "1"})
        check_eq(r.status, 401, "page request without X-KV-Auth")
        r = request(self.ns[0].port, "GET", target, headers={
            "X-KV-Internal": "1",
            "X-KV-Auth": auth_header(SECRET_B, "GET", target, "", b"", int(time.time() * 1000))})
        check_eq(r.status, 401, "page request with another secret's MAC")
        r = request(self.ns[0].port, "GET", target, headers={
            "X-KV-Internal": "1",
            "X-KV-Auth": auth_header(SECRET_A, "GET", target, "", b"", int(time.time() * 1000))})
        check_eq(r.status, 200, "page request with a valid X-KV-Auth")
        check(r.body[:1] == b"\x01" and prefix.encode() in r.body, f"a page: {r.body[:40]!r}")

    def test_repair_requests_are_authenticated(self):
        a = self.ns[0]
        r = request(a.port, "POST", "/v0/admin/repair?wait=1", timeout=120)
        check_eq(r.status, 200, f"repair between authenticated peers: {r.body!r}")
        check_eq(json.loads(r.body)["state"], "done", f"repair summary {r.body!r}")
        target = "/v0/internal/repair/tree"
        body = b"\x11" * 8 + b"\x00" * 7 + b"\x01" + b"\x00" + b"\x00\x00\x00\x01" + b"\x00" * 4
        internal = {"X-KV-Internal": "1"}
        check_eq(request(a.port, "POST", target, body=body, headers=internal).status, 401,
                 "repair request without X-KV-Auth")
        check_eq(request(a.port, "POST", "/v0/internal/hints", body=b"\x01" * 40,
                         headers=internal).status, 401, "HINTS request without X-KV-Auth")
        wrong = auth_header(SECRET_B, "POST", target, "", body, int(time.time() * 1000))
        check_eq(request(a.port, "POST", target, body=body,
                         headers={**internal, "X-KV-Auth": wrong}).status, 401,
                 "repair request with another secret's MAC")
        good = auth_header(SECRET_A, "POST", target, "", body, int(time.time() * 1000))
        r = request(a.port, "POST", target, body=body, headers={**internal, "X-KV-Auth": good})
        check_eq(r.status, 200, f"repair request with a valid MAC: {r.body[:80]!r}")
        check_eq((r.body[0], len(r.body)), (1, 1 + 8 + 4 + 16 * 8), "a tree answer of 16 hashes")

    def test_node_with_another_secret_is_no_replica(self):
        a, b, c = self.ns
        before = sum(auth_failures(nd.port) for nd in (a, b))
        self.restart_with(c, SECRET_B)
        prefix = f"{self.mode}/impostor/"
        for i in range(20):
            coord = (a, b)[i % 2]
            key = f"{prefix}{i}"
            check_eq(put(coord.port, key, b"x", ack=3, frm=3).status, 504,
                     f"PUT {key} 3/3 via {coord.port} (needs the impostor)")
            check_eq(put(coord.port, key, b"y", ack=2, frm=3).status, 201,
                     f"PUT {key} 2/3 via {coord.port}")
            r = get(coord.port, key, ack=2, frm=3)
            check_eq((r.status, r.body), (200, b"y"), f"GET {key} 2/3 via {coord.port}")
            check_eq(get(coord.port, key, ack=3, frm=3).status, 504, f"GET {key} 3/3")
        check_eq(stored_keys(c.port, prefix), 0, "keys the node with another secret stored")
        check_eq(stored_keys(a.port, prefix), 20, "keys the honest node stored")
        after = sum(auth_failures(nd.port) for nd in (a, b)) + auth_failures(c.port)
        check(after > before, f"kv_peer_auth_failures_total moved ({before} -> {after})")
        # Every refusal is counted, but logged once a minute per peer address and reason.
        for nd in self.ns:
            with open(nd.log_path) as f:
                lines = [l for l in f if "peer authentication refused:" in l]
            reasons = [l.split("refused: ")[1].split(" (")[0] for l in lines]
            check_eq(sorted(set(reasons)), sorted(reasons), f"refusals logged by {nd.port}")
        # Back with the common secret: it is a replica again.
        self.restart_with(c, SECRET_A)
        wait_healthy(self.ns)
        check_eq(put(a.port, prefix + "back", b"z", ack=3, frm=3).status, 201, "PUT 3/3 again")

    def test_rotation_one_node_at_a_time(self):
        """A -> A+B -> B with a client writing and reading throughout (ack=2 of 3 through a node
        that is up: never needing the restarting one)."""
        ns = self.ns
        lock = threading.Lock()
        state = {"down": None, "done": 0, "stop": False}
        failures = []

        def client():
            i = 0
            while True:
                with lock:
                    if state["stop"]:
                        return
                    up = [nd for nd in ns if nd is not state["down"]]
                    coord = up[i % len(up)]
                    key, value = f"{self.mode}/rotation/{i}", f"v{i}".encode()
                    try:
                        r = put(coord.port, key, value, ack=2, frm=3)
                        if r.status != 201:
                            failures.append(f"PUT {key} via {coord.port}: {r.status}")
                        r = get(coord.port, key, ack=2, frm=3)
                        if (r.status, r.body) != (200, value):
                            failures.append(f"GET {key} via {coord.port}: {r.status}")
                    except OSError as e:
                        failures.append(f"{key} via {coord.port}: {e}")
                    state["done"] += 1
                i += 1

        def requests_done():
            with lock:
                return state["done"]

        # Every process of every node must refuse no peer during the rotation: its counter is
        # read when the test starts (old process) or right before it stops.
        baseline = {nd.port: auth_failures(nd.port) for nd in ns}
        refusals = []
        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        try:
            steps = [[SECRET_A + "\n" + SECRET_B, SECRET_B + "\n" + SECRET_A,
                      SECRET_A + "\n" + SECRET_B], [SECRET_B] * 3]
            for step in steps:
                for nd, text in zip(ns, step):
                    mark = requests_done()
                    poll(lambda: requests_done() >= mark + 5, 60, "requests before a restart")
                    got = auth_failures(nd.port) - baseline.get(nd.port, 0)
                    if got:
                        refusals.append(f"node {nd.port}: {got}")
                    baseline[nd.port] = 0  # the new process starts from 0
                    with lock:  # no request is in flight through it from here on
                        state["down"] = nd
                    nd.stop()
                    mark = requests_done()
                    poll(lambda: requests_done() >= mark + 5, 60, "requests while a node is down")
                    self.write_secret(self.secret_path(nd), text)
                    nd.start()
                    with lock:
                        state["down"] = None
            mark = requests_done()
            poll(lambda: requests_done() >= mark + 5, 60, "requests after the rotation")
        finally:
            with lock:
                state["stop"] = True
            thread.join(60)
        check_eq(failures, [], "requests during the rotation")
        for nd in ns:
            got = auth_failures(nd.port)
            if got:
                refusals.append(f"node {nd.port}: {got}")
        check_eq(refusals, [], "peers refused during the rotation")
        wait_healthy(ns)
        key = f"{self.mode}/rotation/final"
        check_eq(put(ns[0].port, key, b"B", ack=3, frm=3).status, 201, "PUT 3/3 with B")


class AuthBinary(Auth):
    mode = "binary"


class AuthHttp(Auth):
    mode = "http"


class AuthHttpPipelined(Auth):
    mode = "http-pipelined"
